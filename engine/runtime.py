"""Running instances: start, complete tasks, fail and retry, suspend, resume, terminate.

Every function takes the caller's Session and never commits: the request, CLI
command or scheduler job owns the transaction. An instance is locked (FOR
UPDATE on PostgreSQL; BEGIN IMMEDIATE on SQLite) while it changes, and its
``revision`` guards against lost updates besides.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.exceptions import SpiffWorkflowException
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import bindparam, event, insert, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from engine import audit, clock, inbox, scope, services, store
from engine.actors import Actor
from engine.bundles import Bundle, bundle_for
from engine.deploy import latest_process
from engine.errors import Conflict, EngineError, FormValidationError, InvalidState, NotFound
from engine.functions import FUNCTION_NAMES
from engine.models import DefinitionVersion, InboxTask, Instance, StoredFile, TaskLog
from engine.prepared import Prepared
from engine.sandbox import check_data_keys

ACTIVE = ("running", "waiting")


@dataclass
class Loaded:
    """An instance row with its restored workflow and bundle."""

    instance: Instance
    bundle: Bundle
    workflow: BpmnWorkflow


def start_instance(
    session: Session, key: str, data: dict[str, Any] | None, actor: Actor, *,
    centre_id: int | None = None, department_id: int | None = None, project_id: int | None = None,
    tenderer_id: int | None = None, agency_id: int | None = None, category: str | None = None, title: str = "",
) -> Instance:
    """Start the latest active version of process ``key`` with initial ``data``."""
    version = latest_process(session, key)
    if version is None:
        raise NotFound(f"no deployed process {key!r}", process=key)
    data = dict(data or {})
    _check_keys(data)
    bundle = bundle_for(session, version.id)
    workflow = BpmnWorkflow(bundle.spec, bundle.subprocess_specs, script_engine=bundle.script_engine)
    for task in workflow.get_tasks(state=TaskState.READY):
        task.set_data(**data)
    instance = Instance(
        process_version_id=version.id, process_key=key, category=category, title=title or version.name or key,
        status="running", state="",
        serializer_version=store.SERIALIZER_VERSION, started_by=actor.username, centre_id=centre_id,
        department_id=department_id, project_id=project_id, tenderer_id=tenderer_id, agency_id=agency_id,
        started_at=clock.now(),
    )
    session.add(instance)
    session.flush()
    audit.append(session, actor=actor.username, action="instance.start", instance_id=instance.id,
                 project_id=project_id, payload={"process": key, "version": version.version, "data": data})
    loaded = Loaded(instance, bundle, workflow)
    _advance(session, loaded, actor, new=True)
    _WARM.offer(session, loaded)
    return instance


def complete_task(session: Session, task_id: str, data: dict[str, Any] | None, actor: Actor) -> Instance:
    """Complete a READY user task as ``actor`` with form ``data``, then run the engine on."""
    row, loaded = _open_task(session, task_id)
    instance = loaded.instance
    if instance.status != "running":
        raise InvalidState(f"instance {instance.id} is {instance.status}; its tasks cannot be completed",
                           instance=instance.id)
    scope.check_task(actor, row)
    values = validate_form(loaded.bundle, row.form_key, data or {})
    _check_files(session, loaded.bundle, row.form_key, values)
    task = loaded.workflow.get_task_from_id(UUID(task_id))
    if task is None or not task.has_state(TaskState.READY):
        raise Conflict(f"task {task_id} is not ready", task=task_id)
    task.set_data(**values)
    _TASK_LOG.execute(session, {
        "task_id": task_id, "instance_id": instance.id, "element_id": row.element_id, "role": row.role,
        "completed_by": actor.username, "completed_at": clock.now()})
    audit.append(session, actor=actor.username, action="task.complete", instance_id=instance.id,
                 project_id=instance.project_id,
                 payload={"task_id": task_id, "element": row.element_id, "data": values})
    _advance(session, loaded, actor, run=task)
    _WARM.offer(session, loaded)
    return instance


def validate_form(bundle: Bundle, form_key: str | None, data: dict[str, Any]) -> dict[str, Any]:
    """Validate data against the task's JSON Schema; return it with ``format: decimal`` fields as Decimal."""
    _check_keys(data)
    if not form_key:
        return dict(data)
    schema = bundle.forms.get(form_key)
    if schema is None:
        raise NotFound(f"form {form_key!r} is not bound to this process version")
    validator = bundle.validators.get(form_key)
    if validator is None:
        validator = bundle.validators[form_key] = validator_for(schema, default=Draft202012Validator)(schema)
    errors: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path = "/".join(map(str, error.absolute_path))
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            path = "/".join(filter(None, [path, missing]))
        errors.setdefault(path or "(form)", []).append(error.message)
    if errors:
        fields = ", ".join(sorted(errors))
        raise FormValidationError(f"form {form_key} is invalid: {fields}", errors, form=form_key)
    return _convert(schema, dict(data))


def _convert(schema: Any, value: Any) -> Any:
    """Turn ``format: decimal`` strings into Decimal, at any depth of objects and arrays."""
    if not isinstance(schema, dict):
        return value
    if schema.get("format") == "decimal" and isinstance(value, str):
        return Decimal(value)
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        return {k: _convert(properties.get(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_convert(schema.get("items"), v) for v in value]
    return value


def file_references(schema: Any, value: Any) -> list[str]:
    """Return the sha256 of every file value (``format: file`` objects) in form data."""
    if not isinstance(schema, dict):
        return []
    if (schema.get("format") == "file" or "contentMediaType" in schema) and isinstance(value, dict):
        return [str(value.get("sha256", ""))]
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        return [sha for k, v in value.items() for sha in file_references(properties.get(k), v)]
    if isinstance(value, list):
        return [sha for v in value for sha in file_references(schema.get("items"), v)]
    return []


def _check_files(session: Session, bundle: Bundle, form_key: str | None, values: dict[str, Any]) -> None:
    """Refuse file values that do not name a stored file (a forged reference)."""
    if not form_key:
        return
    shas = set(file_references(bundle.forms.get(form_key), values))
    if not shas:
        return
    known = set(session.execute(select(StoredFile.sha256).where(StoredFile.sha256.in_(shas))).scalars())
    missing = sorted(shas - known)
    if missing:
        raise FormValidationError(f"form {form_key} refers to files that were never uploaded",
                                  {"(form)": [f"unknown file {sha[:12]}…" for sha in missing]}, form=form_key)


def load(session: Session, instance_id: int, *, lock: bool = False) -> Loaded:
    """Load an instance and restore its workflow (locking the row when asked)."""
    query = (select(Instance, DefinitionVersion.sha256)
             .join(DefinitionVersion, DefinitionVersion.id == Instance.process_version_id)
             .where(Instance.id == instance_id))
    if lock:
        query = query.with_for_update(of=Instance).execution_options(populate_existing=True)
    row = session.execute(query).first()
    if row is None:
        raise NotFound(f"no instance {instance_id}", instance=instance_id)
    instance, sha = row
    bundle = bundle_for(session, instance.process_version_id, sha)
    return Loaded(instance, bundle, store.load(instance.state, bundle))


# The open task, its instance and the instance's version hash in one statement. On PostgreSQL the
# inbox row and the instance row are both locked FOR UPDATE: a concurrent completion of the same task
# waits here, then finds the inbox row gone (and so the joined row), exactly as with two statements.
_OPEN_TASK = (select(InboxTask, Instance, DefinitionVersion.sha256)
              .join(Instance, Instance.id == InboxTask.instance_id)
              .join(DefinitionVersion, DefinitionVersion.id == Instance.process_version_id)
              .where(InboxTask.task_id == bindparam("task_id"))
              .with_for_update(of=(InboxTask, Instance))
              .execution_options(populate_existing=True))
_TASK_LOG = Prepared(insert(TaskLog.__table__), "task_log")


def _open_task(session: Session, task_id: str) -> tuple[InboxTask, Loaded]:
    """Lock an open task and its instance; restore the instance (``Conflict`` when already completed)."""
    found = session.execute(_OPEN_TASK, {"task_id": task_id}).first()
    if found is not None:
        row, instance, sha = found
        bundle = bundle_for(session, instance.process_version_id, sha)
        workflow = _WARM.take(instance, bundle) or store.load(instance.state, bundle)
        return row, Loaded(instance, bundle, workflow)
    done = session.get(TaskLog, task_id)
    if done is not None:
        raise Conflict(f"task {task_id} was already completed by {done.completed_by} at "
                       f"{done.completed_at.astimezone(clock.SHANGHAI).isoformat(timespec='seconds')}",
                       task=task_id, completed_by=done.completed_by)
    paused = _halted_instance_of(session, task_id)
    if paused is not None:
        reason = f" ({paused.status_reason})" if paused.status_reason else ""
        raise InvalidState(f"instance {paused.id} is {paused.status}{reason}; its task {task_id} cannot be "
                           "completed", instance=paused.id, task=task_id)
    raise NotFound(f"no open task {task_id}", task=task_id)


def _halted_instance_of(session: Session, task_id: str) -> Instance | None:
    """Return the suspended or failed instance whose state holds ``task_id``, if any.

    Such an instance has no inbox rows, so ``_OPEN_TASK`` cannot find its tasks. This lookup runs only on that
    refusal path: a stale form submitted while, say, a complaint pauses the project (条例 §62) is told why.
    """
    try:
        UUID(task_id)
    except ValueError:
        return None
    return session.execute(select(Instance).where(Instance.status.in_(("suspended", "error")),
                                                  Instance.state.contains(task_id))
                           .limit(1)).scalar_one_or_none()


def _check_keys(data: dict[str, Any]) -> None:
    try:
        check_data_keys(data, FUNCTION_NAMES)
    except EngineError as err:
        raise FormValidationError(str(err), {"(form)": [str(err)]}) from None


def _advance(session: Session, loaded: Loaded, actor: Actor, *, run=None, new: bool = False) -> None:
    """Run ``run`` (a task) and the engine steps; record a failure as the instance's error."""
    error = None
    instance = loaded.instance
    token = services.current.set(services.Binding(session, instance.id, instance.project_id, actor.username))
    try:
        if run is not None:
            run.run()
        loaded.workflow.do_engine_steps()
    except SpiffWorkflowException as err:
        error = _error_record(err)
    except EngineError as err:
        error = {"message": str(err), "element_id": None, "task_id": None}
    finally:
        services.current.reset(token)
    persist(session, loaded, error=error, new=new)
    if error is not None:
        audit.append(session, actor=actor.username, action="instance.error", instance_id=loaded.instance.id,
                     project_id=loaded.instance.project_id, payload=error)


def _error_record(err: SpiffWorkflowException) -> dict[str, Any]:
    task = getattr(err, "task", None)
    notes = list(getattr(err, "__notes__", []) or getattr(err, "notes", []) or [])
    message = err.args[0] if err.args else str(err)
    return {
        "message": "; ".join([str(message), *map(str, notes)]),
        "element_id": task.task_spec.bpmn_id if task is not None else None,
        "task_id": str(task.id) if task is not None else None,
        "at": clock.now().isoformat(),
    }


def persist(session: Session, loaded: Loaded, *, error: dict[str, Any] | None = None, new: bool = False,
            status: str | None = None) -> None:
    """Write an instance's state, status, next timer and inbox rows in the caller's transaction."""
    instance, workflow = loaded.instance, loaded.workflow
    ready = inbox.ready_human_tasks(workflow)
    now = clock.now()
    current = instance.status
    if status is not None:
        current = status
    elif error is not None:
        current = "error"
    elif workflow.completed:
        current = "completed"
    elif current not in ("suspended", "terminated"):
        current = "running" if ready else "waiting"
    # Inbox rows first (a ``dueAt`` expression is evaluated on the task): the dump is the last look at
    # the workflow, so the stored text describes it exactly (see ``_Warm``).
    rows = inbox.rows(instance, ready, current)
    values: dict[str, Any] = {
        "status": current,
        "error": error,
        "state": store.dump(workflow),
        "serializer_version": store.SERIALIZER_VERSION,
        "next_timer_at": inbox.next_timer(workflow) if current in ACTIVE else None,
        "updated_at": now,
    }
    if status is None and error is None and workflow.completed:
        values["completed_at"] = now
    _write_instance(session, instance, values)
    inbox.write(session, instance.id, rows, new=new)


def _write_instance(session: Session, instance: Instance, values: dict[str, Any]) -> None:
    """Write ``values`` and any other pending change of a persistent instance in one guarded UPDATE.

    One Core ``UPDATE ... WHERE id = :id AND revision = :revision`` replaces the ORM flush (same
    columns, same optimistic lock); the ORM object is then marked as holding the written values, so
    nothing is written twice.
    """
    state = inspect(instance)
    if not state.persistent:
        for key, value in values.items():
            setattr(instance, key, value)
        _flush(session, instance)
        return
    changes = {}
    for key in state.committed_state:  # attributes the caller changed since the row was loaded
        if key in state.mapper.column_attrs and state.attrs[key].history.has_changes():
            changes[key] = getattr(instance, key)
    for key, value in values.items():
        if key in changes or key not in state.dict or state.dict[key] != value:
            changes[key] = value
    revision = instance.revision
    changes["revision"] = revision + 1
    columns = {state.mapper.column_attrs[key].columns[0].name: value for key, value in changes.items()}
    if _UPDATE_INSTANCE.execute(session, {**columns, "where_id": instance.id, "where_revision": revision}) != 1:
        raise _stale(instance)
    for key, value in changes.items():
        set_committed_value(instance, key, value)


# The SET clause comes from the parameters given (the columns that changed).
_INSTANCES = Instance.__table__
_UPDATE_INSTANCE = Prepared(update(_INSTANCES).where(_INSTANCES.c.id == bindparam("where_id"),
                                                     _INSTANCES.c.revision == bindparam("where_revision")),
                            "update_instance")


def _flush(session: Session, instance: Instance) -> None:
    try:
        session.flush()
    except StaleDataError:
        raise _stale(instance) from None


def _stale(instance: Instance) -> Conflict:
    return Conflict(f"instance {instance.id} was changed by someone else; reload and try again",
                    instance=instance.id)


class _Warm:
    """The workflows of recently committed completions, so that the next completion skips the restore.

    Sound because of three rules. (1) Only a workflow that ``store.reusable`` proves indistinguishable
    from ``store.load`` of its stored text is kept, and only by ``complete_task``/``start_instance``,
    which never touch it after writing that text. (2) It is published only after the transaction that
    wrote it commits (a rollback drops it) and is used only while the instance row still holds that
    exact text, that revision and that bundle: a rolled-back savepoint, a timer, another process or a
    hand edit in between all make it a miss. (3) ``take`` removes it, so one session at a time owns
    it; ``offer`` returns it to the cache only through a new commit. Bounded, least recently used.
    """

    SIZE = 64
    _PENDING = "ggzy.runtime.warm"

    def __init__(self) -> None:
        self._entries: OrderedDict[int, tuple[int, str, Bundle, BpmnWorkflow]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, instance: Instance, bundle: Bundle) -> BpmnWorkflow | None:
        with self._lock:
            entry = self._entries.pop(instance.id, None)
        if entry is None:
            return None
        revision, state, held, workflow = entry
        if revision == instance.revision and held is bundle and state == instance.state:
            return workflow
        return None

    def offer(self, session: Session, loaded: Loaded) -> None:
        instance = loaded.instance
        if instance.status != "running" or not inspect(instance).persistent or not store.reusable(loaded.workflow):
            return  # a finished instance has no next completion
        session.info.setdefault(self._PENDING, {})[instance.id] = (
            instance.revision, instance.state, loaded.bundle, loaded.workflow)

    def publish(self, session: Session) -> None:
        pending = session.info.pop(self._PENDING, None)
        if not pending:
            return
        with self._lock:
            for instance_id, entry in pending.items():
                self._entries[instance_id] = entry
                self._entries.move_to_end(instance_id)
            while len(self._entries) > self.SIZE:
                self._entries.popitem(last=False)

    def drop(self, session: Session) -> None:
        session.info.pop(self._PENDING, None)


_WARM = _Warm()


@contextmanager
def restoring_every_time() -> Iterator[None]:
    """Within this block, restore every workflow from its stored text (the bench's cold figure)."""
    size = _WARM.SIZE
    _WARM.SIZE = 0
    with _WARM._lock:
        _WARM._entries.clear()
    try:
        yield
    finally:
        _WARM.SIZE = size


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    # Releasing a savepoint is not durable yet: wait for the outermost commit.
    if not session.in_nested_transaction():
        _WARM.publish(session)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _transaction: Any) -> None:
    _WARM.drop(session)


@event.listens_for(Session, "after_transaction_end")
def _after_transaction_end(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # closed without a commit: nothing it offered is kept
        _WARM.drop(session)


def retry(session: Session, instance_id: int, actor: Actor, data: dict[str, Any] | None = None) -> Instance:
    """Re-run an errored instance from its failed task, optionally with corrected data."""
    loaded = load(session, instance_id, lock=True)
    if loaded.instance.status != "error":
        raise InvalidState(f"instance {instance_id} is {loaded.instance.status}, not in error")
    if data:
        _check_keys(data)
    failed = loaded.workflow.get_tasks(state=TaskState.ERROR)
    for task in failed:
        if data:
            task.set_data(**data)
        task._set_state(TaskState.READY)
    audit.append(session, actor=actor.username, action="instance.retry", instance_id=instance_id,
                 project_id=loaded.instance.project_id,
                 payload={"tasks": [t.task_spec.bpmn_id for t in failed], "data": data or {}})
    loaded.instance.status = "running"
    _advance(session, loaded, actor)
    return loaded.instance


def suspend(session: Session, instance_id: int, reason: str, actor: Actor) -> Instance:
    """Suspend an active instance (紧急纠错): no task can be completed and no timer fires."""
    return _set_status(session, instance_id, reason, actor, "suspend", ACTIVE, "suspended")


def resume(session: Session, instance_id: int, reason: str, actor: Actor) -> Instance:
    """Resume a suspended instance; timers that fell due meanwhile fire at the next sweep."""
    return _set_status(session, instance_id, reason, actor, "resume", ("suspended",), None)


def terminate(session: Session, instance_id: int, reason: str, actor: Actor) -> Instance:
    """End an instance for good, cancelling its open tasks."""
    return _set_status(session, instance_id, reason, actor, "terminate", ACTIVE + ("suspended", "error"),
                       "terminated")


def _set_status(session: Session, instance_id: int, reason: str, actor: Actor, action: str,
                allowed: tuple[str, ...], status: str | None) -> Instance:
    if not reason or not reason.strip():
        raise EngineError(f"a reason is required to {action} an instance")
    loaded = load(session, instance_id, lock=True)
    scope.check_manage_instance(actor, loaded.instance)
    previous = loaded.instance.status
    if previous not in allowed:
        raise InvalidState(f"instance {instance_id} is {previous}; cannot {action} it")
    if status == "terminated":
        loaded.workflow.cancel()
    if status is None:
        loaded.instance.status = "running"
    loaded.instance.status_reason = reason.strip()
    audit.append(session, actor=actor.username, action=f"instance.{action}", instance_id=instance_id,
                 project_id=loaded.instance.project_id, payload={"reason": reason.strip(), "from": previous})
    persist(session, loaded, status=status)
    return loaded.instance
