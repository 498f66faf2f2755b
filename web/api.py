"""The JSON API under ``/api/v1`` for external e-trading systems and scripts, with its OpenAPI document.

Clients authenticate with a personal token (``Authorization: Bearer ggzy_…``, made on
``/account/tokens``); the web session cookie never authenticates an API call, so the
API needs no CSRF token. Views validate with marshmallow schemas and call one engine
service each; engine errors become JSON by ``web.errors`` (400 with per-field
``details``, 403, 404, 409).
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import marshmallow as ma
from flask import Flask, g, url_for
from flask.wrappers import Request
from flask_babel import gettext as _
from flask_smorest import Api, Blueprint, abort
from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session
from webargs.flaskparser import FlaskParser
from werkzeug.exceptions import BadRequest

from engine import runtime, scope, tokens
from engine.bundles import bundle_for
from engine.errors import NotFound
from engine.models import DefinitionVersion, InboxTask, Instance, Organisation
from web import db
from web.access import AUTHENTICATED, PUBLIC, allow
from web.auth import WebUser, current_actor, login_manager
from web.errors import render_error
from web.security import csrf

# Who may start instances: not auditors (they only read), nor bidders and experts (only steps assigned to them).
START_ROLES = ("admin", "staff", "regulator", "tenderer", "agency")
DESCRIPTION = (
    "公共资源交易平台 JSON API. Authenticate with a personal token made on /account/tokens: "
    "`Authorization: Bearer ggzy_…`. Errors are `{error, status, details?}`: 400 invalid input (`details` maps "
    "field paths to messages), 401 no or bad token, 403 not allowed, 404 not found, 409 changed meanwhile "
    "(e.g. the task was already completed)."
)
SETTINGS = {
    "API_TITLE": "ggzy API",
    "API_VERSION": "v1",
    "OPENAPI_VERSION": "3.0.3",
    "OPENAPI_URL_PREFIX": "/api",
    "OPENAPI_JSON_PATH": "openapi.json",
}


class _Parser(FlaskParser):
    """Invalid requests are 400, like every other validation failure of ggzy."""

    DEFAULT_VALIDATION_STATUS = 400


class _Blueprint(Blueprint):
    """flask-smorest's Blueprint, parsing requests with ``_Parser``."""

    ARGUMENTS_PARSER = _Parser()
    PAGINATION_ARGUMENTS_PARSER = _Parser()


bp = _Blueprint("api_v1", __name__, url_prefix="/api/v1",
                description="Processes, tasks and instances for external systems (token authentication).")
csrf.exempt(bp)


# --- schemas ---------------------------------------------------------------------------------------------


class ErrorSchema(ma.Schema):
    """An error: its message, HTTP status and, for invalid input, messages per field."""

    error = ma.fields.String(required=True)
    status = ma.fields.Integer()
    details = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.List(ma.fields.String()))


class StartInstanceSchema(ma.Schema):
    """What starting an instance takes."""

    process = ma.fields.String(required=True, validate=ma.validate.Length(1, 200),
                               metadata={"description": "process key, e.g. document_review"})
    data = ma.fields.Dict(keys=ma.fields.String(), load_default=dict, metadata={"description": "initial data"})
    title = ma.fields.String(load_default="", validate=ma.validate.Length(max=300))
    centre_id = ma.fields.Integer(load_default=None, allow_none=True, strict=True)
    department_id = ma.fields.Integer(load_default=None, allow_none=True, strict=True)


class CompleteTaskSchema(ma.Schema):
    """What completing a task takes: the form data."""

    data = ma.fields.Dict(keys=ma.fields.String(), load_default=dict,
                          metadata={"description": "form data, validated against the task's form"})


class TaskSchema(ma.Schema):
    """An open user task."""

    task_id = ma.fields.String()
    instance_id = ma.fields.Integer()
    element_id = ma.fields.String()
    title = ma.fields.String()
    role = ma.fields.String()
    form_key = ma.fields.String(allow_none=True)
    due_at = ma.fields.DateTime(allow_none=True)
    process = ma.fields.String(attribute="process_key")
    category = ma.fields.String(allow_none=True)
    instance_title = ma.fields.String()
    created_at = ma.fields.DateTime()


class TaskDetailSchema(TaskSchema):
    """An open user task with the JSON Schema of its form."""

    form = ma.fields.Dict(allow_none=True, metadata={"description": "JSON Schema (2020-12) of the form"})


class InstanceSchema(ma.Schema):
    """A process instance: status, open tasks, next timer, version."""

    id = ma.fields.Integer()
    process = ma.fields.String()
    version = ma.fields.Integer(metadata={"description": "the deployed process version it runs on"})
    version_id = ma.fields.Integer()
    title = ma.fields.String()
    category = ma.fields.String(allow_none=True)
    status = ma.fields.String(metadata={"description": "running, waiting, suspended, error, completed or "
                                                       "terminated"})
    status_reason = ma.fields.String(allow_none=True)
    error = ma.fields.Dict(allow_none=True)
    next_timer_at = ma.fields.DateTime(allow_none=True)
    revision = ma.fields.Integer()
    started_by = ma.fields.String()
    started_at = ma.fields.DateTime()
    updated_at = ma.fields.DateTime()
    completed_at = ma.fields.DateTime(allow_none=True)
    tasks = ma.fields.List(ma.fields.Nested(TaskSchema))


# --- authentication --------------------------------------------------------------------------------------


def _user_from_token(request: Request) -> WebUser | None:
    """Resolve ``Authorization: Bearer <token>`` on API routes (flask-login's request loader)."""
    if request.blueprint != bp.name:
        return None
    scheme, _sep, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        return None
    s = db.session()
    user = tokens.user_for_token(s, credential.strip())
    if user is None:
        return None
    if s.dirty:
        s.commit()  # last_used_at: GET views never commit
    g.ggzy_api_token = True
    return WebUser(user)


@bp.before_request
def _require_token():
    # The session cookie loads a user before any request loader: refuse it, so CSRF cannot reach the API.
    if not g.get("ggzy_api_token"):
        return render_error(401, _("API 只接受令牌认证：请发送 Authorization: Bearer <令牌>，不要带会话 Cookie。"))
    return None


@bp.after_request
def _challenge(response):
    if response.status_code == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="ggzy"'
    return response


@bp.errorhandler(BadRequest)
def _invalid_request(err: BadRequest):
    messages = (getattr(err, "data", None) or {}).get("messages")
    if not messages:
        return render_error(400, _("请求有误"))
    details = _field_errors(messages)
    return render_error(400, _("请求有误：%(fields)s", fields=", ".join(sorted(details))), details)


def _field_errors(messages: dict[str, Any]) -> dict[str, list[str]]:
    """Flatten webargs' ``{location: {field: [messages]}}`` into ``{"field/sub": [messages]}``."""
    found: dict[str, list[str]] = {}

    def walk(node: Any, path: list[str]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, [*path, str(key)])
        else:
            found.setdefault("/".join(path) or "(request)", []).extend(
                map(str, node if isinstance(node, list) else [node]))

    for errors in messages.values():
        walk(errors, [])
    return found


# --- views -----------------------------------------------------------------------------------------------


def _may_fail(*statuses: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Document the error statuses a view answers besides 400 (every view may answer 401)."""

    def document(view: Callable[..., Any]) -> Callable[..., Any]:
        for status in (401, *statuses):
            view = bp.alt_response(status, response=HTTPStatus(status).name)(view)
        return view

    return document


@bp.route("/instances", methods=["POST"])
@allow(*START_ROLES)
@_may_fail(403, 404)
@bp.arguments(StartInstanceSchema())
@bp.response(201, InstanceSchema)
def start_instance(args: dict[str, Any]):
    """Start the latest version of a process; the instance and its first open tasks come back."""
    s = db.session()
    actor = current_actor()
    _check_organisation(s, "centre_id", args["centre_id"], "centre")
    _check_organisation(s, "department_id", args["department_id"], "department")
    # A tenderer's (or agency's) instance is its organisation's work, not platform-level work all tenderers see.
    tenderer_id = actor.organisation_id if actor.has_role("tenderer") else None
    agency_id = actor.organisation_id if actor.has_role("agency") and not actor.has_role("tenderer") else None
    instance = runtime.start_instance(s, args["process"], args["data"], actor, title=args["title"],
                                      centre_id=args["centre_id"], department_id=args["department_id"],
                                      tenderer_id=tenderer_id, agency_id=agency_id)
    body = _instance_body(s, instance)
    s.commit()
    return body, {"Location": url_for(".instance", instance_id=instance.id)}


@bp.route("/instances/<int:instance_id>")
@allow(AUTHENTICATED)
@_may_fail(403, 404)
@bp.response(200, InstanceSchema)
def instance(instance_id: int):
    """Return an instance's status, open tasks, next timer and process version."""
    s = db.session()
    actor = current_actor()
    row = s.get(Instance, instance_id)
    if row is None:
        raise NotFound(f"no instance {instance_id}", instance=instance_id)
    assigned = actor.user_id is not None and s.execute(
        select(InboxTask.task_id).where(InboxTask.instance_id == instance_id,
                                        InboxTask.assignee_id == actor.user_id).limit(1)).first() is not None
    scope.check_view_instance(actor, row, assigned=assigned)
    return _instance_body(s, row)


@bp.route("/tasks")
@allow(AUTHENTICATED)
@_may_fail()
@bp.response(200, TaskSchema(many=True))
@bp.paginate(page_size=50, max_page_size=200)
def tasks(pagination_parameters):
    """List my open tasks: in my scope, in my roles' lanes, not claimed by someone else; soonest due first."""
    s = db.session()
    actor = current_actor()
    mine = or_(InboxTask.assignee_id.is_(None), InboxTask.assignee_id == actor.user_id)
    query = scope.scoped_inbox(select(InboxTask).where(InboxTask.role.in_(sorted(actor.roles)), mine), actor)
    pagination_parameters.item_count = s.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    query = (query.order_by(InboxTask.due_at.is_(None), InboxTask.due_at, InboxTask.created_at, InboxTask.task_id)
             .offset(pagination_parameters.first_item).limit(pagination_parameters.page_size))
    return list(s.execute(query).scalars())


@bp.route("/tasks/<task_id>")
@allow(AUTHENTICATED)
@_may_fail(403, 404)
@bp.response(200, TaskDetailSchema)
def task(task_id: str):
    """Return an open task I may complete, with the JSON Schema of its form."""
    s = db.session()
    row = s.get(InboxTask, task_id)
    if row is None:
        raise NotFound(f"no open task {task_id}", task=task_id)
    scope.check_task(current_actor(), row)
    version_id = s.execute(select(Instance.process_version_id).where(Instance.id == row.instance_id)).scalar_one()
    form = bundle_for(s, version_id).forms.get(row.form_key) if row.form_key else None
    return {**{c.key: getattr(row, c.key) for c in InboxTask.__table__.columns}, "form": form}


@bp.route("/tasks/<task_id>/complete", methods=["POST"])
@allow(AUTHENTICATED)
@_may_fail(403, 404, 409)
@bp.arguments(CompleteTaskSchema())
@bp.response(200, InstanceSchema)
def complete(args: dict[str, Any], task_id: str):
    """Complete a task with its form data; the instance comes back with its next open tasks."""
    s = db.session()
    instance = runtime.complete_task(s, task_id, args["data"], current_actor())
    body = _instance_body(s, instance)
    s.commit()
    return body


def _check_organisation(session: Session, field: str, org_id: int | None, kind: str) -> None:
    if org_id is None:
        return
    org = session.get(Organisation, org_id)
    if org is None or org.kind != kind:
        abort(400, messages={"json": {field: [f"no {kind} with id {org_id}"]}})


# Every start and completion answers with both, so one statement, built once (composing it costs more than
# running it); the outer join still yields the version of an instance without open tasks.
_VERSION_AND_TASKS = (
    select(DefinitionVersion.version, InboxTask).select_from(DefinitionVersion)
    .outerjoin(InboxTask, InboxTask.instance_id == bindparam("instance_id"))
    .where(DefinitionVersion.id == bindparam("version_id"))
    .order_by(InboxTask.created_at, InboxTask.task_id)
)


def _instance_body(session: Session, instance: Instance) -> dict[str, Any]:
    """Return what InstanceSchema dumps: the row, its process version number and its open tasks."""
    rows = session.execute(_VERSION_AND_TASKS, {"version_id": instance.process_version_id,
                                                "instance_id": instance.id}).all()
    version = rows[0][0]
    open_tasks = [task for _, task in rows if task is not None]
    return {
        "id": instance.id, "process": instance.process_key, "version": version,
        "version_id": instance.process_version_id, "title": instance.title, "category": instance.category,
        "status": instance.status, "status_reason": instance.status_reason, "error": instance.error,
        "next_timer_at": instance.next_timer_at, "revision": instance.revision,
        "started_by": instance.started_by, "started_at": instance.started_at, "updated_at": instance.updated_at,
        "completed_at": instance.completed_at, "tasks": open_tasks,
    }


# --- wiring ----------------------------------------------------------------------------------------------


class _Api(Api):
    """flask-smorest's Api, with errors left to ``web.errors`` and a public OpenAPI document."""

    ERROR_SCHEMA = ErrorSchema

    def _register_error_handlers(self) -> None:
        """Register nothing: ``web.errors`` maps every error of the app in one place."""

    @allow(PUBLIC)
    def _openapi_json(self):
        """Serve the OpenAPI document (public: it describes the API, not its data)."""
        return super()._openapi_json()


def init_app(app: Flask) -> Api:
    """Register the API blueprint, its OpenAPI document at /api/openapi.json and token authentication."""
    for key, value in SETTINGS.items():
        app.config.setdefault(key, value)
    api = _Api(app, spec_kwargs={"security": [{"bearerAuth": []}], "info": {"description": DESCRIPTION}})
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer",
                                                       "description": "a personal token from /account/tokens"})
    api.register_blueprint(bp)
    login_manager.request_loader(_user_from_token)
    return api

