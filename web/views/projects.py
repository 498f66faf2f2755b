"""Trading projects: registration (tenderers, agencies), the list in the viewer's scope, and one project's page.

The page shows the catalog's decision, the three stages (交易受理 / 交易组织 /
交易见证) with their steps as the engine sees them, open tasks, the project's
notices and its audit trail; a project the catalog does not require on the
platform can be closed there as traded elsewhere.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage

from engine import credit, files, projects, runtime, scope
from engine.actors import Actor
from engine.errors import FormValidationError, PermissionDenied
from engine.models import InboxTask, Notice, Organisation, StoredFile
from engine.orgs import list_organisations
from engine.progress import Progress, progress, trail_for
from web import db, formrender
from web.access import AUTHENTICATED, PUBLIC, access_of, allow
from web.auth import current_actor
from web.pages import NavItem
from web.views.instances import ACTIONS as INSTANCE_ACTIONS
from web.views.instances import STATUSES as INSTANCE_STATUSES
from web.views.people import ROLE_LABELS

bp = Blueprint("projects", __name__)
VIEWERS = ("staff", "regulator", "tenderer", "agency", "auditor", "admin")
REGISTRANTS = ("tenderer", "agency")
CLOSERS = ("tenderer", "agency", "staff", "admin")
NAV = [NavItem(30, "projects.index", _l("交易项目"), VIEWERS)]
PER_PAGE = 20
STATUSES = {"registered": _l("已登记"), "closed_elsewhere": _l("已在平台外交易")}
CATEGORIES = {"construction": _l("工程建设项目招标投标")}
SUB_TYPES = {"works": _l("施工"), "goods": _l("货物"), "services": _l("服务")}
FUNDING = {"state": _l("国有资金"), "mixed": _l("部分国有资金"), "private": _l("非国有资金")}
LEVELS = {"city": _l("市级"), "county": _l("县级")}
PROCESSES = {"construction_tender": _l("工程建设项目招标投标流程")}
STAGE_LABELS = {"acceptance": _l("交易受理"), "organisation": _l("交易组织"), "witness": _l("交易见证")}
STEP_STATUSES = {"pending": _l("未开始"), "open": _l("办理中"), "done": _l("已完成"), "error": _l("出错"),
                 "cancelled": _l("已取消")}
ACTIONS = {**INSTANCE_ACTIONS, "project.register": _l("登记项目"), "project.close_elsewhere": _l("平台外交易"),
           "notice.publish": _l("发布公告")}


def money(amount: Decimal | None) -> str:
    """Return an amount in CNY for people: 4,000,000.00 元（400 万元）."""
    if amount is None:
        return "—"
    text = _("%(amount)s 元", amount=f"{amount:,.2f}")
    if amount >= 10000:
        wan = (amount / 10000).normalize()
        text += _("（%(wan)s 万元）", wan=f"{wan:f}")
    return text


@bp.route("/projects")
@allow(*VIEWERS)
def index():
    """List the projects in the viewer's scope, newest first."""
    s, actor = db.session(), current_actor()
    status = request.args.get("status", "")
    page = max(request.args.get("page", 1, type=int), 1)
    rows, total = projects.list_projects(s, actor, status=status or None, page=page, per_page=PER_PAGE)
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    return render_template("projects/index.html", rows=rows, total=total, page=page, pages=pages, status=status,
                           orgs=_orgs(s), statuses=STATUSES, sub_types=SUB_TYPES, money=money,
                           may_register=any(actor.has_role(r) for r in REGISTRANTS))


@bp.route("/projects/new", methods=["GET", "POST"])
@allow(*REGISTRANTS)
def new():
    """Show the registration form; register the project and go to its page."""
    s, actor = db.session(), current_actor()
    schema = _form_schema(s, actor)
    if request.method == "GET":
        return _render_form(schema, formrender.raw_of(schema, _defaults(s, actor)), {})
    parsed = formrender.parse(schema, request.form, request.files, _file_taker(s, actor))
    s.commit()  # uploads are kept (and audited) even when the form goes back to the user
    for action in (formrender.ADD, formrender.REMOVE):
        if action in request.form:
            formrender.apply_action(schema, parsed.raw, action, request.form[action])
            return _render_form(schema, parsed.raw, parsed.problems)
    problems = {**formrender.messages(schema, parsed.data), **parsed.problems}
    if problems:
        return _render_form(schema, parsed.raw, problems), 400
    data = parsed.data
    try:
        project = projects.register_project(
            s, actor, name=data.get("name", ""), location_code=data.get("location_code", ""),
            category=data.get("category", ""), sub_type=data.get("sub_type", ""), estimate=data.get("estimate", ""),
            funding=data.get("funding", ""), tenderer_code=data.get("tenderer_code", ""),
            agency_code=data.get("agency_code"), contacts=data.get("contacts", {}),
            documents=data.get("documents", []))
    except FormValidationError as err:
        s.rollback()
        return _render_form(schema, parsed.raw, formrender.explain(schema, data, err.errors)), 400
    except credit.SanctionedError as err:
        # 一处失信、处处受限: shown next to the party that is sanctioned, the form kept as it was filled in.
        s.rollback()
        field = "agency_code" if err.context.get("organisation") == _organisation_id(s, data.get("agency_code")) \
            else "tenderer_code"
        return _render_form(schema, parsed.raw, {field: [str(err)]}), 400
    s.commit()
    flash(_("项目已登记，交易编码 %(code)s，已进入交易受理。", code=project.code))
    return redirect(url_for("projects.show", project_id=project.id))


@bp.route("/projects/<int:project_id>")
@allow(*VIEWERS)
def show(project_id: int):
    """Show one project: catalog decision, stages and steps, open tasks, notices, audit trail."""
    s, actor = db.session(), current_actor()
    project = projects.get_project(s, actor, project_id)
    loaded = runtime.load(s, project.instance_id) if project.instance_id else None
    state = progress(loaded) if loaded else None
    events = projects.project_trail(s, project)
    trail = [(entry, _summary(entry.payload)) for entry in trail_for(state or _EMPTY, actor, events)]
    tasks = s.execute(scope.scoped_inbox(select(InboxTask).where(InboxTask.instance_id == project.instance_id),
                                         actor).order_by(InboxTask.created_at, InboxTask.task_id)).scalars().all()
    notices = s.execute(select(Notice).where(Notice.project_id == project.id)
                        .order_by(Notice.published_at, Notice.id)).scalars().all()
    return render_template(
        "projects/show.html", project=project, instance=loaded.instance if loaded else None,
        stages=projects.project_stages(s, loaded) if loaded else [], tasks=tasks, notices=notices, trail=trail,
        decision=project.details.get("catalog", {}), orgs=_orgs(s), may_close=_may_close(actor, project),
        related=_related(actor, project),
        files=_files(s, project), money=money, statuses=STATUSES, instance_statuses=INSTANCE_STATUSES,
        categories=CATEGORIES, sub_types=SUB_TYPES, funding=FUNDING, levels=LEVELS, processes=PROCESSES,
        stage_labels=STAGE_LABELS, step_statuses=STEP_STATUSES, actions=ACTIONS, role_labels=ROLE_LABELS)


@bp.route("/projects/<int:project_id>/close", methods=["POST"])
@allow(*CLOSERS)
def close(project_id: int):
    """Close a project as traded elsewhere, with a reason (refused when the catalog requires the platform)."""
    s = db.session()
    project = projects.close_as_traded_elsewhere(s, project_id, request.form.get("reason", ""), current_actor())
    s.commit()
    flash(_("项目 %(code)s 已登记为平台外交易。", code=project.code))
    return redirect(url_for("projects.show", project_id=project_id))


_EMPTY = Progress((), (), (), (), (), (), {})


def _summary(payload: dict[str, Any]) -> str:
    def text(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, default=str) if isinstance(value, dict | list) else str(value)

    return "；".join(f"{key}: {text(value)}" for key, value in payload.items())


def _orgs(s: Session) -> dict[int, Organisation]:
    return {o.id: o for o in list_organisations(s)}


def _files(s: Session, project) -> dict[str, StoredFile]:
    shas = [(d.get("file") or {}).get("sha256") for d in project.documents if isinstance(d, dict)]
    rows = s.execute(select(StoredFile).where(StoredFile.sha256.in_([x for x in shas if x]))).scalars()
    return {row.sha256: row for row in rows}


# The project's pages in other areas: (label, endpoint, URL arguments from the project). A link is shown only when
# its endpoint exists and its own access declaration admits one of the viewer's roles; the page itself still
# checks the organisation scope.
RELATED = (
    (_l("开标"), "bids.opening", lambda p: {"project_id": p.id}),
    (_l("投标保证金"), "bonds.project", lambda p: {"project_id": p.id}),
    (_l("专家抽取"), "experts.draws", lambda p: {}),
    (_l("评标"), "evaluation.index", lambda p: {}),
    (_l("投诉"), "complaints.index", lambda p: {"project": p.id}),
    (_l("电子档案"), "archive.index", lambda p: {"project_id": p.id}),
    (_l("中标通知书"), "letters.project", lambda p: {"project_id": p.id}),
)


def _related(actor: Actor, project) -> list[tuple[str, str]]:
    links = []
    for label, endpoint, arguments in RELATED:
        declared = access_of(endpoint)
        if declared is None:
            continue
        if PUBLIC in declared or AUTHENTICATED in declared or any(actor.has_role(r) for r in declared):
            links.append((str(label), url_for(endpoint, **arguments(project))))
    return links


def _organisation_id(s: Session, code: str | None) -> int | None:
    return s.execute(select(Organisation.id).where(Organisation.code == code)).scalar_one_or_none() if code else None


def _may_close(actor: Actor, project) -> bool:
    if project.must_trade or project.status != "registered":
        return False
    try:
        projects.check_close(actor, project)
    except PermissionDenied:
        return False
    return True


def _form_schema(s: Session, actor: Actor) -> dict[str, Any]:
    """Return the registration form with the organisations the actor may choose filled in."""
    schema = copy.deepcopy(projects.registration_schema(s))
    props = schema.get("properties", {})
    counties = [o for o in list_organisations(s, "centre") if o.level == "county"]
    tenderers = [o for kind in projects.TENDERER_KINDS for o in list_organisations(s, kind)]
    agencies = list_organisations(s, "agency")
    if actor.has_role("agency"):
        agencies = [o for o in agencies if o.id == actor.organisation_id]
        schema["required"] = sorted({*schema.get("required", []), "agency_code"})
    else:
        tenderers = [o for o in tenderers if o.id == actor.organisation_id]
    for key, choices in (("location_code", counties), ("tenderer_code", tenderers), ("agency_code", agencies)):
        if isinstance(props.get(key), dict):
            props[key]["enum"] = [o.code for o in choices]
            props[key]["x-enumNames"] = [o.name for o in choices]
    return schema


def _defaults(s: Session, actor: Actor) -> dict[str, Any]:
    own = s.get(Organisation, actor.organisation_id) if actor.organisation_id else None
    if own is None:
        return {}
    return {"agency_code": own.code} if actor.has_role("agency") else {"tenderer_code": own.code}


def _render_form(schema: dict[str, Any], raw: dict[str, Any], errors: dict[str, list[str]]) -> str:
    used: set[str] = set()
    fields = formrender.build(schema, raw, errors, used=used)
    return render_template("projects/new.html", fields=fields, errors=errors,
                           general=formrender.general_errors(errors, used), description=schema.get("description"),
                           size_text=formrender.size_text, upload_limits=formrender.upload_limits)


def _file_taker(s: Session, actor: Actor) -> formrender.FileTaker:
    """Store new uploads; keep earlier ones only when this user uploaded them and the field accepts them."""
    config = db.context().config

    def take(item: formrender.Field, upload: FileStorage | None, kept: str | None) -> dict[str, Any] | None:
        max_bytes, allowed = formrender.upload_limits(item.schema)
        if upload is not None:
            stored = files.store(s, upload.read(), upload.filename or "", upload.mimetype, actor, config=config,
                                 max_bytes=max_bytes, allowed_types=allowed)
            return files.value_of(stored, files.clean_name(upload.filename or ""))
        sha256, _sep, name = (kept or "").partition(":")
        row = s.get(StoredFile, sha256) if sha256 else None
        if row is None or row.uploaded_by != actor.username or not files.is_allowed(row.media_type, allowed):
            return None
        return files.value_of(row, files.clean_name(name) if name else None)

    return take
