"""The inbox table: READY user/manual tasks, materialized after every change of an instance."""

from __future__ import annotations

from datetime import datetime

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from engine import clock, periods
from engine.lint import DUE_PROPERTY, FORM_PROPERTY
from engine.models import InboxTask, Instance

_TIMER_TYPES = ("TimeDateEventDefinition", "DurationTimerEventDefinition", "CycleTimerEventDefinition")


def ready_human_tasks(workflow: BpmnWorkflow) -> list[Task]:
    """Return the READY user and manual tasks of a workflow, subprocesses included."""
    return workflow.get_tasks(state=TaskState.READY, manual=True)


def sync(session: Session, instance: Instance, ready_tasks: list[Task], *, new: bool = False) -> None:
    """Make the instance's inbox rows equal its READY human tasks (none unless it is running).

    Rows that stay keep their claim (``assignee_id``) and ``created_at``.
    """
    write(session, instance.id, rows(instance, ready_tasks, instance.status), new=new)


def rows(instance: Instance, ready_tasks: list[Task], status: str) -> dict[str, dict]:
    """Return the inbox rows, by task id, of an instance whose status is (or is about to be) ``status``."""
    if status != "running":
        return {}
    created = clock.now()
    return {task_id: _row(instance, task, task_id, created) for task_id, task in
            ((str(t.id), t) for t in ready_tasks)}


def write(session: Session, instance_id: int, ready: dict[str, dict], *, new: bool = False) -> None:
    """Make the instance's inbox rows equal ``ready`` (rows from ``rows``), keeping rows that stay.

    On SQLite and PostgreSQL this is two statements without reading the rows first: a
    ``DELETE ... RETURNING`` of the rows no longer ready and an ``INSERT ... ON CONFLICT DO NOTHING``.
    """
    conn = session.connection()
    dialect = conn.dialect.name
    if new or dialect not in _UPSERT:
        existing: set[str] = set()
        if not new:
            existing = set(conn.execute(select(_TABLE.c.task_id).where(_TABLE.c.instance_id == instance_id))
                           .scalars())
        gone = existing - set(ready)
        if gone:
            conn.execute(delete(_TABLE).where(_TABLE.c.task_id.in_(gone)))
            _forget(session, gone)
        created = [row for task_id, row in ready.items() if task_id not in existing]
        if created:
            conn.execute(insert(_TABLE), created)
        return
    if ready:
        gone = conn.execute(_DELETE_OTHERS, {"instance_id": instance_id, "ready": list(ready)})
    else:
        gone = conn.execute(_DELETE_ALL, {"instance_id": instance_id})
    _forget(session, gone.scalars().all())
    if ready:
        conn.execute(_UPSERT[dialect], list(ready.values()))


# Plain Core on the session's connection: no ORM bookkeeping on this hot path.
_TABLE = InboxTask.__table__
_DELETE_ALL = (delete(_TABLE).where(_TABLE.c.instance_id == bindparam("instance_id"))
               .returning(_TABLE.c.task_id))
_DELETE_OTHERS = _DELETE_ALL.where(_TABLE.c.task_id.not_in(bindparam("ready", expanding=True)))
_UPSERT = {
    "sqlite": sqlite.insert(_TABLE).on_conflict_do_nothing(index_elements=["task_id"]),
    "postgresql": postgresql.insert(_TABLE).on_conflict_do_nothing(index_elements=["task_id"]),
}


def _forget(session: Session, task_ids) -> None:
    """Drop deleted rows from the session's identity map, as an ORM delete would."""
    identities = session.identity_map
    for task_id in task_ids:
        row = identities.get(identity_key(InboxTask, task_id))
        if row is not None:
            session.expunge(row)


def _row(instance: Instance, task: Task, task_id: str, created: datetime) -> dict:
    spec = task.task_spec
    properties = (spec.extensions or {}).get("properties", {})
    return dict(
        task_id=task_id, instance_id=instance.id, element_id=spec.bpmn_id, title=spec.bpmn_name or spec.bpmn_id,
        role=spec.lane or "", form_key=properties.get(FORM_PROPERTY), due_at=due_at(task),
        process_key=instance.process_key, category=instance.category, instance_title=instance.title,
        centre_id=instance.centre_id, department_id=instance.department_id,
        project_id=instance.project_id, tenderer_id=instance.tenderer_id, agency_id=instance.agency_id,
        created_at=created,
    )


def due_at(task: Task) -> datetime | None:
    """Return a task's statutory due time: its ``dueAt`` property, else its earliest boundary timer."""
    properties = (task.task_spec.extensions or {}).get("properties", {})
    expression = properties.get(DUE_PROPERTY)
    if expression:
        return periods.to_datetime(task.workflow.script_engine.evaluate(task, expression))
    parent = task.parent
    if parent is None or not isinstance(parent.task_spec, BoundaryEventSplit):
        return None
    candidates = []
    for sibling in parent.children:
        definition = getattr(sibling.task_spec, "event_definition", None)
        value = sibling._get_internal_data("event_value")
        if isinstance(definition, TimerEventDefinition) and isinstance(value, str):
            candidates.append(TimerEventDefinition.get_datetime(value))
    return min(candidates) if candidates else None


def next_timer(workflow: BpmnWorkflow) -> datetime | None:
    """Return when the workflow's earliest waiting timer is due."""
    due = []
    for event in workflow.waiting_events():
        value = event.value
        if isinstance(value, dict):
            value = value.get("next")
        if event.event_type in _TIMER_TYPES and isinstance(value, str):
            due.append(TimerEventDefinition.get_datetime(value))
    return min(due) if due else None
