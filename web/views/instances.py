"""Process instances: the list in the viewer's scope, and one instance's page.

The page shows the diagram of the instance's own (pinned) version with its
progress marked, waiting timers, open tasks, the data the viewer's role may
see, and the audit trail; staff, regulators and admins suspend, resume and
terminate there, staff and admins retry failed instances.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit, runtime, scope
from engine.actors import Actor
from engine.errors import EngineError, NotFound
from engine.models import ROLES, DefinitionVersion, InboxTask, Instance
from engine.progress import Progress, progress, trail_for
from web import db
from web.access import allow
from web.auth import current_actor
from web.filters import shanghai
from web.pages import NavItem
from web.views.people import ROLE_LABELS

bp = Blueprint("instances", __name__)
NAV = [NavItem(20, "instances.index", _l("流程实例"),
               ("staff", "regulator", "tenderer", "agency", "auditor", "admin"))]
MANAGERS = ("staff", "regulator", "admin")
RETRIERS = ("staff", "admin")
PER_PAGE = 20
STATUSES = {"running": _l("办理中"), "waiting": _l("等待中"), "suspended": _l("已暂停"), "error": _l("出错"),
            "completed": _l("已完成"), "terminated": _l("已终止")}
ACTIONS = {"instance.start": _l("启动"), "task.complete": _l("完成任务"), "timer.fire": _l("定时器触发"),
           "instance.error": _l("出错"), "instance.retry": _l("重试"), "instance.suspend": _l("暂停"),
           "instance.resume": _l("恢复"), "instance.terminate": _l("终止"), "task.claim": _l("领取任务"),
           "task.unclaim": _l("退回任务"), "task.reassign": _l("分派任务"), "notice.publish": _l("发布公告"),
           "witness.record": _l("见证记录")}


@bp.route("/instances")
@allow(*ROLES)
def index():
    """List the instances in the viewer's scope, newest first, filtered by status and process."""
    s, actor = db.session(), current_actor()
    status, process = request.args.get("status", ""), request.args.get("process", "")
    page = max(request.args.get("page", 1, type=int), 1)
    query = scope.scoped_instances(
        select(Instance.id, Instance.title, Instance.process_key, Instance.status, Instance.started_by,
               Instance.started_at, Instance.updated_at, DefinitionVersion.version)
        .join(DefinitionVersion, DefinitionVersion.id == Instance.process_version_id), actor)
    if status:
        query = query.where(Instance.status == status)
    if process:
        query = query.where(Instance.process_key == process)
    total = s.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = s.execute(query.order_by(Instance.started_at.desc(), Instance.id.desc())
                     .limit(PER_PAGE).offset((page - 1) * PER_PAGE)).all()
    processes = s.execute(scope.scoped_instances(select(Instance.process_key).distinct(), actor)
                          .order_by(Instance.process_key)).scalars().all()
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    return render_template("instances/index.html", rows=rows, total=total, page=page, pages=pages,
                           status=status, process=process, processes=processes, statuses=STATUSES)


@bp.route("/instances/<int:instance_id>")
@allow(*ROLES)
def show(instance_id: int):
    """Show one instance: diagram with progress, timers, open tasks, visible data, audit trail, actions."""
    s, actor = db.session(), current_actor()
    instance = _visible_instance(s, actor, instance_id)
    state = progress(runtime.load(s, instance_id))
    version = s.get(DefinitionVersion, instance.process_version_id)
    tasks = s.execute(scope.scoped_inbox(select(InboxTask).where(InboxTask.instance_id == instance_id), actor)
                      .order_by(InboxTask.created_at, InboxTask.task_id)).scalars().all()
    trail = [(entry, _summary(entry.payload)) for entry in trail_for(state, actor,
                                                                    audit.trail(s, instance_id=instance_id))]
    manage = scope.allows(scope.check_manage_instance, actor, instance)
    return render_template(
        "instances/show.html", instance=instance, version=version, state=state, tasks=tasks, trail=trail,
        data=_data_rows(state, actor), diagram=_diagram_data(state, instance_id), statuses=STATUSES,
        actions=ACTIONS, role_labels=ROLE_LABELS, manage=manage,
        retry=manage and instance.status == "error" and any(actor.has_role(r) for r in RETRIERS),
    )


@bp.route("/instances/<int:instance_id>/diagram.bpmn")
@allow(*ROLES)
def diagram(instance_id: int):
    """Return the BPMN source of the process version the instance is pinned to."""
    s = db.session()
    instance = _visible_instance(s, current_actor(), instance_id)
    source = s.execute(select(DefinitionVersion.source)
                       .where(DefinitionVersion.id == instance.process_version_id)).scalar_one()
    return Response(source, mimetype="application/xml", headers={"Cache-Control": "private, max-age=300"})


@bp.route("/instances/<int:instance_id>/suspend", methods=["POST"])
@allow(*MANAGERS)
def suspend(instance_id: int):
    """Suspend an active instance, with a reason."""
    return _change_status(instance_id, runtime.suspend, _("流程实例已暂停"))


@bp.route("/instances/<int:instance_id>/resume", methods=["POST"])
@allow(*MANAGERS)
def resume(instance_id: int):
    """Resume a suspended instance, with a reason."""
    return _change_status(instance_id, runtime.resume, _("流程实例已恢复"))


@bp.route("/instances/<int:instance_id>/terminate", methods=["POST"])
@allow(*MANAGERS)
def terminate(instance_id: int):
    """Terminate an instance for good, with a reason."""
    return _change_status(instance_id, runtime.terminate, _("流程实例已终止"))


@bp.route("/instances/<int:instance_id>/retry", methods=["POST"])
@allow(*RETRIERS)
def retry(instance_id: int):
    """Re-run a failed instance from its failed step, optionally with corrected data (a JSON object)."""
    s, actor = db.session(), current_actor()
    scope.check_manage_instance(actor, _instance(s, instance_id))
    instance = runtime.retry(s, instance_id, actor, _corrections(request.form.get("data", "")))
    s.commit()
    if instance.status == "error":
        flash(_("重试后仍然出错：%(message)s", message=(instance.error or {}).get("message", "")))
    else:
        flash(_("已重试"))
    return redirect(url_for("instances.show", instance_id=instance_id))


def _change_status(instance_id: int, change, message: str):
    s = db.session()
    change(s, instance_id, request.form.get("reason", ""), current_actor())
    s.commit()
    flash(message)
    return redirect(url_for("instances.show", instance_id=instance_id))


def _instance(s: Session, instance_id: int) -> Instance:
    instance = s.get(Instance, instance_id)
    if instance is None:
        raise NotFound(_("流程实例 %(id)s 不存在", id=instance_id), instance=instance_id)
    return instance


def _visible_instance(s: Session, actor: Actor, instance_id: int) -> Instance:
    """Return the instance if the actor may see it (bidders and experts: where a step is or was theirs)."""
    instance = _instance(s, instance_id)
    scope.check_view_instance(actor, instance, assigned=scope.has_step(s, actor, instance_id))
    return instance



def _corrections(text: str) -> dict[str, Any] | None:
    if not text.strip():
        return None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise EngineError(_("更正数据必须是一个 JSON 对象"))
    return data


def _diagram_data(state: Progress, instance_id: int) -> dict[str, Any]:
    """Return what instance.js needs: the diagram URL, the markers, timer labels, messages."""
    return {
        "url": url_for("instances.diagram", instance_id=instance_id),
        "markers": state.markers(),
        "timers": [{"element": t.element_id, "label": _("到期 %(due)s", due=shanghai(t.due_at))}
                   for t in state.timers],
        "messages": {"failed": _("无法显示流程图：")},
    }


def _data_rows(state: Progress, actor: Actor) -> list[tuple[str, str, str]]:
    return [(key, state.titles.get(key, ""), _display(value)) for key, value in sorted(state.data_for(actor).items())]


def _display(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return _("是") if value else _("否")
    if isinstance(value, datetime):
        return shanghai(value, "%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def _summary(payload: dict[str, Any]) -> str:
    return "；".join(f"{key}: {_display(value)}" for key, value in payload.items())
