"""Award and result letters (中标通知书 / 中标结果通知书, 招标投标法 §45): the bidder's and the project's pages.

A bidder sees only the letters addressed to its own organisation (``/letters``); another
organisation's letter is "not found". Staff, regulators, the tenderer, its agency, auditors and
admins see every letter of a project in their scope (``/projects/<id>/letters``); staff, the
tenderer and its agency deliver them: the platform signs each letter (``engine.award.seal_letters``).
A delivered letter downloads as a JSON document with the signed text, the signature and the
platform's public key, verifiable offline (docs/award.md).
"""

from __future__ import annotations

from flask import Blueprint, Response, flash, redirect, render_template, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from engine import award, projects
from engine.models import Project
from engine.pki_platform import platform_public_pem
from web import db
from web.access import allow
from web.auth import current_actor
from web.pages import NavItem

bp = Blueprint("letters", __name__)
READERS = award.READERS
SENDERS = award.SENDERS
NAV = [NavItem(36, "letters.index", _l("中标通知书"), ("bidder",))]
KINDS = {"award": _l("中标通知书"), "result": _l("中标结果通知书")}


def _page(template: str, **context):
    return render_template(template, kinds=KINDS, **context)


@bp.route("/letters")
@allow("bidder")
def index():
    """The letters addressed to the bidder's organisation, newest first."""
    s, actor = db.session(), current_actor()
    rows = award.my_letters(s, actor)
    return _page("letters/index.html", letters=rows, seals=award.seals_of(s, [r.id for r in rows]),
                 has_org=actor.organisation_id is not None)


@bp.route("/projects/<int:project_id>/letters")
@allow(*READERS)
def project(project_id: int):
    """Every letter of a project, with the delivery button for staff, the tenderer and its agency."""
    s, actor = db.session(), current_actor()
    rows = award.letters_of_project(s, actor, project_id)
    project = projects.get_project(s, actor, project_id)
    seals = award.seals_of(s, [r.id for r in rows])
    return _page("letters/project.html", project=project, letters=rows, seals=seals,
                 may_send=any(actor.has_role(r) for r in SENDERS), pending=len(rows) - len(seals))


@bp.route("/projects/<int:project_id>/letters/send", methods=["POST"])
@allow(*SENDERS)
def send(project_id: int):
    """Deliver the project's letters: the platform signs every letter not signed yet."""
    s = db.session()
    made = award.seal_letters(s, project_id, current_actor(), config=db.context().config)
    s.commit()
    if made:
        flash(_("已由平台签章并送达 %(n)s 封通知书。", n=len(made)))
    else:
        flash(_("全部通知书均已送达，无需重复签章。"))
    return redirect(url_for("letters.project", project_id=project_id), code=303)


@bp.route("/letters/<int:letter_id>")
@allow("bidder", *READERS)
def show(letter_id: int):
    """One letter: its text, the winner, its sha256 and whether the platform has signed it."""
    s, actor = db.session(), current_actor()
    row = award.get_letter(s, actor, letter_id)
    seal = award.seals_of(s, [row.id]).get(row.id)
    public = platform_public_pem(db.context().config)
    return _page("letters/show.html", letter=row, data=row.data, seal=seal, project=s.get(Project, row.project_id),
                 fingerprint=award.key_sha256(public), readers=any(actor.has_role(r) for r in READERS))


@bp.route("/letters/<int:letter_id>.json")
@allow("bidder", *READERS)
def download(letter_id: int):
    """Download the signed letter (JSON: exact signed text, signature, platform key); refused before delivery."""
    s, actor = db.session(), current_actor()
    row = award.get_letter(s, actor, letter_id)
    document = award.document_of(s, row, config=db.context().config)
    code = row.data["project"]["code"]
    response = Response(award.document_bytes(document), mimetype="application/json")
    response.headers["Content-Disposition"] = f'attachment; filename="{code}-letter-{row.id}.json"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-cache"
    return response
