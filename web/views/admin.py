"""Administration of definitions: deploy files, browse and diff versions, edit BPMN/DMN/forms in the browser.

Admins and regulators deploy (the engine's ``scope.check_deploy`` limits regulators to
their department's keys); auditors may read versions, diagrams, sources and diffs.
"""

from __future__ import annotations

import difflib
import io
import json
import re
from collections import defaultdict
from pathlib import PurePosixPath

from flask import Blueprint, jsonify, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, defer

from engine import scope
from engine.actors import Actor
from engine.deploy import Outcome, Upload, deploy
from engine.errors import DeploymentError, EngineError, NotFound, PermissionDenied
from engine.models import DefinitionVersion, Instance, Organisation
from web import db
from web.access import allow
from web.auth import current_actor
from web.errors import status_of
from web.pages import NavItem

bp = Blueprint("admin", __name__, url_prefix="/admin")
NAV = [
    NavItem(60, "admin.versions", _l("流程与规则"), ("admin", "regulator", "auditor")),
    NavItem(61, "admin.deploy", _l("部署"), ("admin", "regulator")),
]
DEPLOYERS = ("admin", "regulator")
READERS = ("admin", "regulator", "auditor")
KINDS = ("process", "decision", "form")
RUNNING = ("running", "waiting", "suspended", "error")
MEDIA = {"process": "application/xml", "decision": "application/xml", "form": "application/json"}
PROBLEM = re.compile(r"^(?P<file>.+?):(?P<line>\d+): (?:element (?P<element>\S+): )?(?P<reason>.*)$", re.S)


def problem_rows(problems: list[str]) -> list[dict[str, str]]:
    """Split ``FILE:LINE: element ID: reason`` lines into table cells (unparsable lines keep only a reason)."""
    rows = []
    for line in problems:
        match = PROBLEM.match(line)
        parts = match.groupdict() if match else {"file": "", "line": "", "element": "", "reason": line}
        rows.append({k: v or "" for k, v in parts.items()})
    return rows


def basename(filename: str) -> str:
    """Return a file name without its folders (as deployed from the CLI, or sent by a browser)."""
    return PurePosixPath(filename.replace("\\", "/")).name


def may_deploy(actor: Actor, department_id: int | None) -> bool:
    """Tell whether the actor may deploy a new version of a key owned by ``department_id``."""
    try:
        scope.check_deploy(actor, department_id)
    except PermissionDenied:
        return False
    return True


def running_counts(s: Session) -> dict[int, int]:
    """Count the unfinished instances per definition version, following process bindings.

    A process version counts its own instances; a decision, form or called process
    counts the instances of every process version bound to it (directly or through
    called processes).
    """
    direct = dict(s.execute(
        select(Instance.process_version_id, func.count()).where(Instance.status.in_(RUNNING))
        .group_by(Instance.process_version_id)).all())
    deps = dict(s.execute(select(DefinitionVersion.id, DefinitionVersion.dependencies)
                          .where(DefinitionVersion.kind == "process")).all())
    counts: dict[int, int] = defaultdict(int)
    for process_id, n in direct.items():
        counts[process_id] += n
        seen, pending = {process_id}, list(deps.get(process_id) or [])
        while pending:
            dep = pending.pop()
            if dep in seen:
                continue
            seen.add(dep)
            if dep not in deps:
                counts[dep] += n
            pending.extend(deps.get(dep) or [])
    return counts


def _rows(s: Session, *where) -> list[DefinitionVersion]:
    query = select(DefinitionVersion).options(defer(DefinitionVersion.source)).where(*where)
    return list(s.execute(query.order_by(DefinitionVersion.kind, DefinitionVersion.key,
                                         DefinitionVersion.version.desc())).scalars())


def _bound(s: Session, ids) -> dict[int, DefinitionVersion]:
    return {r.id: r for r in _rows(s, DefinitionVersion.id.in_(sorted(set(ids))))}


def _departments(s: Session) -> dict[int, str]:
    return dict(s.execute(select(Organisation.id, Organisation.name)).all())


def _version(s: Session, version_id: int) -> DefinitionVersion:
    row = s.get(DefinitionVersion, version_id)
    if row is None:
        raise NotFound(f"no definition version {version_id}")
    return row


def _numbered(s: Session, kind: str, key: str, number: int) -> DefinitionVersion:
    row = s.execute(select(DefinitionVersion).where(DefinitionVersion.kind == kind, DefinitionVersion.key == key,
                                                    DefinitionVersion.version == number)).scalar_one_or_none()
    if row is None:
        raise NotFound(f"{kind} {key!r} has no version {number}")
    return row


def outcome_rows(s: Session, outcomes: list[Outcome]) -> list[dict]:
    """Return the outcomes as dicts carrying the id and page of the version each one names."""
    if not outcomes:
        return []
    wanted = or_(*(and_(DefinitionVersion.kind == o.kind, DefinitionVersion.key == o.key,
                        DefinitionVersion.version == o.version) for o in outcomes))
    ids = {(k, key, v): i for i, k, key, v in s.execute(
        select(DefinitionVersion.id, DefinitionVersion.kind, DefinitionVersion.key, DefinitionVersion.version)
        .where(wanted)).all()}
    rows = []
    for o in outcomes:
        version_id = ids.get((o.kind, o.key, o.version))
        rows.append({**o.as_dict(), "id": version_id, "history_url": url_for("admin.history", kind=o.kind, key=o.key),
                     "url": url_for("admin.show", version_id=version_id) if version_id else None})
    return rows


@bp.route("/deploy", methods=["GET", "POST"], endpoint="deploy")
@allow(*DEPLOYERS)
def deploy_files():
    """Upload BPMN, DMN and form files; show every problem, or what was deployed."""
    if request.method == "GET":
        return render_template("admin/deploy.html")
    uploads = [Upload(basename(f.filename), f.read()) for f in request.files.getlist("files") if f.filename]
    if not uploads:
        return render_template("admin/deploy.html", error=_("请选择要部署的文件")), 400
    s = db.session()
    try:
        outcomes = deploy(s, uploads, current_actor(), max_bytes=db.context().config.max_xml_bytes)
    except DeploymentError as err:
        return render_template("admin/deploy.html", problems=problem_rows(err.problems)), 400
    rows = outcome_rows(s, outcomes)
    s.commit()
    return render_template("admin/deploy.html", outcomes=rows)


@bp.route("/versions")
@allow(*READERS)
def versions():
    """List every key with its latest version, owner and unfinished instances per version."""
    s = db.session()
    counts = running_counts(s)
    keys: dict[str, dict[str, list[DefinitionVersion]]] = {kind: {} for kind in KINDS}
    for row in _rows(s):
        keys[row.kind].setdefault(row.key, []).append(row)
    return render_template("admin/versions.html", keys=keys, counts=counts, departments=_departments(s),
                           may_deploy=lambda row: may_deploy(current_actor(), row.department_id))


@bp.route("/versions/<kind>/<key>")
@allow(*READERS)
def history(kind: str, key: str):
    """List all versions of one key: who deployed them and when, and what they are bound to."""
    s = db.session()
    rows = _rows(s, DefinitionVersion.kind == kind, DefinitionVersion.key == key)
    if kind not in KINDS or not rows:
        raise NotFound(f"nothing deployed as {kind} {key!r}")
    bound = _bound(s, [d for r in rows for d in r.dependencies or []])
    return render_template("admin/history.html", kind=kind, key=key, rows=rows, bound=bound, basename=basename,
                           counts=running_counts(s), departments=_departments(s),
                           editable=may_deploy(current_actor(), rows[0].department_id))


@bp.route("/versions/<int:version_id>")
@allow(*READERS)
def show(version_id: int):
    """Show one version: a BPMN or DMN diagram, or a form's JSON Schema."""
    s = db.session()
    row = _version(s, version_id)
    department = s.get(Organisation, row.department_id) if row.department_id else None
    return render_template("admin/version.html", row=row, department=department, source=_pretty(row),
                           counts=running_counts(s), editable=may_deploy(current_actor(), row.department_id))


def _pretty(row: DefinitionVersion) -> str:
    return json.dumps(json.loads(row.source), ensure_ascii=False, indent=2) if row.kind == "form" else row.source


@bp.route("/versions/<int:version_id>/source")
@allow(*READERS)
def source(version_id: int):
    """Download a version's source exactly as deployed."""
    row = _version(db.session(), version_id)
    return send_file(io.BytesIO(row.source.encode("utf-8")), mimetype=MEDIA[row.kind] + "; charset=utf-8",
                     as_attachment=True, download_name=basename(row.filename))


@bp.route("/versions/<kind>/<key>/diff")
@allow(*READERS)
def diff(kind: str, key: str):
    """Show a unified diff between two versions of a key (default: the latest against the one before)."""
    s = db.session()
    numbers = list(s.execute(select(DefinitionVersion.version).where(
        DefinitionVersion.kind == kind, DefinitionVersion.key == key).order_by(DefinitionVersion.version.desc())
    ).scalars())
    if kind not in KINDS or not numbers:
        raise NotFound(f"nothing deployed as {kind} {key!r}")
    b = request.args.get("b", numbers[0], type=int)
    a = request.args.get("a", max(b - 1, 1), type=int)
    old, new = _numbered(s, kind, key, a), _numbered(s, kind, key, b)
    name = basename(new.filename)
    lines = list(difflib.unified_diff(old.source.splitlines(), new.source.splitlines(), f"a/{name}", f"b/{name}",
                                      lineterm=""))
    bound = _bound(s, [*(old.dependencies or []), *(new.dependencies or [])])
    return render_template("admin/diff.html", kind=kind, key=key, old=old, new=new, lines=lines, bound=bound,
                           numbers=numbers)


@bp.route("/versions/<int:version_id>/edit")
@allow(*DEPLOYERS)
def edit(version_id: int):
    """Open a version in the BPMN modeler, the DMN decision-table editor or a JSON text area."""
    row = _version(db.session(), version_id)
    scope.check_deploy(current_actor(), row.department_id)
    return render_template("admin/edit.html", row=row)


@bp.route("/versions/<int:version_id>/deploy", methods=["POST"])
@allow(*DEPLOYERS)
def deploy_edited(version_id: int):
    """Deploy an edited source (JSON body ``{"xml": text}``) as the next version; answer JSON."""
    s = db.session()
    row = _version(s, version_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("xml"), str):
        return jsonify({"error": _("请求体须为 JSON 对象 {\"xml\": \"…\"}")}), 400
    upload = Upload(basename(row.filename), body["xml"].encode("utf-8"))
    try:
        outcomes = deploy(s, [upload], current_actor(), max_bytes=db.context().config.max_xml_bytes)
    except DeploymentError as err:
        return jsonify({"problems": problem_rows(err.problems)}), 400
    except EngineError as err:
        return jsonify({"error": str(err)}), status_of(err)
    rows = outcome_rows(s, outcomes)
    s.commit()
    return jsonify({"outcomes": rows})
