"""Complaints (投诉, R17): filing against a project, the complaints in the viewer's scope, one complaint, withdrawal,
and the public list of published complaint decisions.

The regulator's steps (accept or refuse, investigate, decide) are ordinary tasks of
the ``complaint`` process in the inbox; this page only files, shows and withdraws.
Who sees what is decided in ``engine.complaints`` (the project's supervising
department, the centre, the complainant, the project's tenderer and agency).
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import complaints, notices, scope
from engine.actors import Actor
from engine.errors import FormValidationError
from engine.models import AuditEvent, InboxTask, Notice, Organisation, Project, User
from web import db, formrender
from web.access import PUBLIC, allow
from web.auth import current_actor
from web.forms_flow import attempt
from web.pages import NavItem

bp = Blueprint("complaints", __name__)
FILERS = complaints.COMPLAINANT_ROLES
VIEWERS = (*FILERS, "staff", "regulator", "auditor", "admin")
NAV = [NavItem(50, "complaints.index", _l("投诉"), VIEWERS)]
PER_PAGE = 20
STATUSES = {"filed": _l("待受理"), "accepted": _l("已受理"), "refused": _l("不予受理"), "decided": _l("已处理"),
            "withdrawn": _l("已撤回")}
MATTERS = {"prequalification_documents": _l("资格预审文件"), "tender_documents": _l("招标文件"), "opening": _l("开标"),
           "evaluation_result": _l("评标结果"), "other": _l("其他违法违规行为")}
OUTCOMES = {"upheld": _l("投诉成立"), "dismissed": _l("投诉不成立，驳回"), "rejected": _l("驳回投诉")}
ACTIONS = {"complaint.file": _l("提出投诉"), "complaint.accepted": _l("受理"), "complaint.refused": _l("不予受理"),
           "complaint.decided": _l("作出处理决定"), "complaint.withdrawn": _l("撤回投诉"),
           "complaint.pause_skipped": _l("无需暂停"), "instance.suspend": _l("暂停招标投标活动"),
           "instance.resume": _l("恢复招标投标活动")}


@bp.route("/complaints")
@allow(*VIEWERS)
def index():
    """List the complaints in the viewer's scope (of one project with ``?project=ID``), newest first."""
    s, actor = db.session(), current_actor()
    project_id = request.args.get("project", type=int)
    project = s.get(Project, project_id) if project_id else None
    rows = complaints.list_complaints(s, actor, project_id=project.id if project else None)
    return render_template("complaints/index.html", rows=rows, project=project, projects=_projects(s, rows),
                           statuses=STATUSES, matters=MATTERS, outcomes=OUTCOMES,
                           may_file=any(actor.has_role(r) for r in FILERS))


@bp.route("/complaints/new", methods=["GET", "POST"])
@allow(*FILERS)
def new():
    """Show the complaint form; file the complaint (refused with the reason next to the field) and show it."""
    s, actor = db.session(), current_actor()
    schema = complaints.filing_schema(s)
    if request.method == "GET":
        return _render_form(schema, formrender.raw_of(schema, _defaults(s, actor)), {})
    parsed = formrender.parse(schema, request.form, request.files,
                              formrender.FileIntake(s, actor, db.context().config))
    s.commit()  # uploads are kept (and audited) even when the form goes back to the user
    for action in (formrender.ADD, formrender.REMOVE):
        if action in request.form:
            formrender.apply_action(schema, parsed.raw, action, request.form[action])
            return _render_form(schema, parsed.raw, parsed.problems)
    problems = {**formrender.messages(schema, parsed.data), **parsed.problems}
    if problems:
        return _render_form(schema, parsed.raw, problems), 400
    outcome = attempt(lambda s, a: complaints.file_complaint(s, a, parsed.data), refused=FormValidationError)
    if outcome.error is not None:
        return _render_form(schema, parsed.raw, formrender.explain(schema, parsed.data, outcome.error.errors)), 400
    complaint = outcome.result
    flash(_("投诉已提交，编号 %(number)s。行政监督部门应当在 3 个工作日内决定是否受理。", number=complaint.number))
    return redirect(url_for("complaints.show", complaint_id=complaint.id))


@bp.route("/complaints/<int:complaint_id>")
@allow(*VIEWERS)
def show(complaint_id: int):
    """Show one complaint: its facts and evidence, status, deadlines, open steps, decision and history."""
    s, actor = db.session(), current_actor()
    complaint = complaints.get_complaint(s, actor, complaint_id)
    tasks = s.execute(scope.scoped_inbox(select(InboxTask).where(InboxTask.instance_id == complaint.instance_id),
                                         actor).order_by(InboxTask.created_at)).scalars().all()
    events = s.execute(select(AuditEvent).where(AuditEvent.project_id == complaint.project_id,
                                                AuditEvent.action.in_(list(ACTIONS)))
                       .order_by(AuditEvent.seq)).scalars().all()
    history = [e for e in events if _about(e, complaint)]
    return render_template(
        "complaints/show.html", complaint=complaint, project=s.get(Project, complaint.project_id),
        department=s.get(Organisation, complaint.department_id) if complaint.department_id else None,
        notice=s.get(Notice, complaint.notice_id) if complaint.notice_id else None, tasks=tasks, history=history,
        users=_users(s, history), details=complaint.details, statuses=STATUSES, matters=MATTERS, outcomes=OUTCOMES,
        actions=ACTIONS, may_open_tasks=not actor.has_role("auditor"),
        may_withdraw=complaints.is_complainant(actor, complaint) and complaint.status in complaints.OPEN)


@bp.route("/complaints/<int:complaint_id>/withdraw", methods=["POST"])
@allow(*FILERS)
def withdraw(complaint_id: int):
    """Withdraw an open complaint as its complainant, with a reason."""
    s = db.session()
    complaint = complaints.withdraw_complaint(s, complaint_id, current_actor(), request.form.get("reason", ""))
    s.commit()
    flash(_("投诉 %(number)s 已撤回。", number=complaint.number))
    return redirect(url_for("complaints.show", complaint_id=complaint_id))


@bp.route("/complaints/decisions")
@allow(PUBLIC)
def decisions():
    """List the published complaint decisions (public, newest first)."""
    found = notices.list_notices(db.session(), kind="complaint_decision",
                                 page=request.args.get("page", 1, type=int), per_page=PER_PAGE)
    return render_template("complaints/decisions.html", found=found)


def _render_form(schema: dict[str, Any], raw: dict[str, Any], errors: dict[str, list[str]]) -> str:
    used: set[str] = set()
    fields = formrender.build(schema, raw, errors, used=used)
    return render_template("complaints/new.html", fields=fields, errors=errors,
                           general=formrender.general_errors(errors, used), description=schema.get("description"),
                           size_text=formrender.size_text, upload_limits=formrender.upload_limits)


def _defaults(s: Session, actor: Actor) -> dict[str, Any]:
    org = s.get(Organisation, actor.organisation_id) if actor.organisation_id else None
    user = s.get(User, actor.user_id) if actor.user_id else None
    defaults = {"complainant_name": org.name if org else (user.display_name if user else actor.username)}
    code = request.args.get("project", "").strip()
    if code:
        defaults["project_code"] = code
    return defaults


def _projects(s: Session, rows: list[complaints.Complaint]) -> dict[int, Project]:
    ids = sorted({r.project_id for r in rows})
    return {p.id: p for p in s.execute(select(Project).where(Project.id.in_(ids))).scalars()} if ids else {}


def _users(s: Session, events: list[AuditEvent]) -> dict[str, str]:
    names = sorted({e.actor for e in events})
    rows = s.execute(select(User.username, User.display_name).where(User.username.in_(names))).all() if names else []
    return {username: display for username, display in rows}


def _about(event: AuditEvent, complaint: complaints.Complaint) -> bool:
    """Tell whether an event of the project belongs to this complaint (its own, or the pause it ordered)."""
    payload = json.loads(event.payload)
    if not isinstance(payload, dict):
        return False
    if event.action.startswith("instance."):
        return f"投诉 {complaint.number}" in str(payload.get("reason", ""))
    return payload.get("complaint_id") == complaint.id
