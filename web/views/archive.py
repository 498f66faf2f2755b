"""The project's electronic archive (电子档案): past builds, build and download a verifiable zip.

Reached from the project page (``/projects/<id>/archive``). Building records the
build and audits it (``engine.archive.build_archive``); the zip is streamed from
``GGZY_HOME/archives``. Scope and role are checked in the engine.
"""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, send_file, url_for
from flask_babel import lazy_gettext as _l

from engine import archive
from engine.archive_verify import key_fingerprint
from engine.pki_platform import platform_public_pem
from web import db
from web.access import allow
from web.auth import current_actor

bp = Blueprint("archive", __name__)
READERS = archive.READERS
KINDS = {"zip": _l("电子档案"), "seal": _l("归档封存")}


@bp.route("/projects/<int:project_id>/archive")
@allow(*READERS)
def index(project_id: int):
    """List a project's archive builds and seals, newest first, with the build button."""
    s, actor = db.session(), current_actor()
    project = archive.archive_project_of(s, actor, project_id)
    builds = archive.list_builds(s, actor, project_id)
    key = platform_public_pem(db.context().config)
    return render_template("archive/index.html", project=project, builds=builds, kinds=KINDS,
                           fingerprint=key_fingerprint(key))


@bp.route("/projects/<int:project_id>/archive", methods=["POST"])
@allow(*READERS)
def build(project_id: int):
    """Build the project's archive now, then download it."""
    s = db.session()
    row = archive.build_archive(s, project_id, current_actor(), config=db.context().config)
    s.commit()
    return redirect(url_for("archive.download", project_id=project_id, build_id=row.id), code=303)


@bp.route("/projects/<int:project_id>/archive/<int:build_id>.zip")
@allow(*READERS)
def download(project_id: int, build_id: int):
    """Stream one build's zip as an attachment."""
    s, actor = db.session(), current_actor()
    row = archive.get_build(s, actor, project_id, build_id)
    project = archive.archive_project_of(s, actor, project_id)
    path = archive.archive_path(db.context().config, row)
    response = send_file(path, mimetype="application/zip", as_attachment=True,
                         download_name=archive.download_name(project, row), etag=row.archive_sha256, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-cache"
    return response
