"""The task page: instructions and the form of one task, completing it; downloads of uploaded files."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from flask import Blueprint, flash, redirect, render_template, request, send_file
from flask_babel import gettext as _
from SpiffWorkflow.task import Task
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import clock, files, instructions, runtime, scope
from engine.actors import Actor
from engine.errors import Conflict, FormValidationError, NotFound
from engine.models import InboxTask, Instance, StoredFile, TaskLog, User
from web import db, formrender
from web.access import AUTHENTICATED, allow
from web.auth import current_actor

bp = Blueprint("tasks", __name__)
TASK_ROLES = ("staff", "regulator", "tenderer", "agency", "bidder", "expert", "admin")


@bp.route("/tasks/<task_id>", methods=["GET", "POST"])
@allow(*TASK_ROLES)
def show(task_id: str):
    """Show a task with its instructions and form; on POST, complete it or show the form's errors."""
    s, actor = db.session(), current_actor()
    row = _open_task(s, task_id)
    scope.check_task(actor, row)
    loaded = runtime.load(s, row.instance_id)
    task = loaded.workflow.get_task_from_id(UUID(task_id))
    if task is None:
        raise Conflict(_("任务 %(id)s 已不在流程中，请刷新待办列表。", id=task_id), task=task_id)
    schema = _schema(loaded.bundle.forms, row.form_key)
    page = _Page(row, loaded.instance, task, schema)
    if request.method == "GET":
        return page.render(formrender.raw_of(schema, task.data), {})
    intake = formrender.FileIntake(s, actor, db.context().config, formrender.files_in(task.data))
    parsed = formrender.parse(schema, request.form, request.files, intake)
    s.commit()  # uploads are kept (and audited) even when the form goes back to the user
    for action in (formrender.ADD, formrender.REMOVE):
        if action in request.form:
            formrender.apply_action(schema, parsed.raw, action, request.form[action])
            return page.render(parsed.raw, parsed.problems)
    if parsed.problems:
        return page.render(parsed.raw, {**formrender.messages(schema, parsed.data), **parsed.problems}), 400
    try:
        instance = runtime.complete_task(s, task_id, parsed.data, actor)
    except FormValidationError as err:
        s.rollback()
        return page.render(parsed.raw, formrender.explain(schema, parsed.data, err.errors)), 400
    except Conflict:
        s.rollback()
        _open_task(s, task_id)  # says who completed it, when someone did
        raise
    s.commit()
    flash(_("已办理：%(title)s", title=row.title))
    return redirect(_next_page(s, actor, instance.id))


@bp.route("/files/<sha256>")
@allow(AUTHENTICATED)
def download(sha256: str):
    """Send an uploaded file as an attachment to whoever may read it."""
    s = db.session()
    row = s.get(StoredFile, sha256)
    if row is None:
        raise NotFound(_("没有此文件"), file=sha256)
    files.check_download(current_actor(), row)
    handle = files.open_file(db.context().config, row.sha256)
    response = send_file(handle, mimetype=row.media_type, as_attachment=True, download_name=row.original_name,
                         etag=row.sha256, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@dataclass
class _Page:
    """What the task page shows besides the form's values and messages."""

    row: InboxTask
    instance: Instance
    task: Task
    schema: dict[str, Any]

    def render(self, raw: dict[str, Any], errors: dict[str, list[str]]) -> str:
        used: set[str] = set()
        fields = formrender.build(self.schema, raw, errors, used=used)
        return render_template(
            "tasks/show.html", row=self.row, instance=self.instance, fields=fields, errors=errors,
            general=formrender.general_errors(errors, used), instructions=instructions.render_task(self.task),
            form_title=self.schema.get("title", ""),
        )


def _open_task(s: Session, task_id: str) -> InboxTask:
    """Return the open task, or say who completed it (409), or that there is none (404)."""
    row = s.get(InboxTask, task_id)
    if row is not None:
        return row
    done = s.get(TaskLog, task_id)
    if done is None:
        raise NotFound(_("没有待办任务 %(id)s", id=task_id), task=task_id)
    who = s.execute(select(User.display_name).where(User.username == done.completed_by)).scalar()
    name = f"{who}（{done.completed_by}）" if who and who != done.completed_by else done.completed_by
    raise Conflict(_("该任务已由 %(who)s 于 %(at)s 办理完毕，无需再次提交。", who=name,
                     at=done.completed_at.astimezone(clock.SHANGHAI).strftime("%Y-%m-%d %H:%M")),
                   task=task_id, completed_by=done.completed_by)


def _schema(forms: dict[str, dict[str, Any]], form_key: str | None) -> dict[str, Any]:
    if not form_key:
        return {}
    schema = forms.get(form_key)
    if schema is None:
        raise NotFound(f"form {form_key!r} is not bound to this process version", form=form_key)
    return schema


def _next_page(s: Session, actor: Actor, instance_id: int) -> str:
    """Return the inbox when the actor has other tasks, else the instance just worked on."""
    query = select(InboxTask.task_id).where(InboxTask.role.in_(sorted(actor.roles))).limit(1)
    if s.execute(scope.scoped_inbox(query, actor)).first() is not None:
        return "/inbox"
    return f"/instances/{instance_id}"
