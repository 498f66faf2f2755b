"""The inbox table: READY user/manual tasks, materialized after every change of an instance."""

from __future__ import annotations

from datetime import datetime

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.specs.control import BoundaryEventSplit
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from engine import clock, periods
from engine.lint import DUE_PROPERTY, FORM_PROPERTY
from engine.models import InboxTask, Instance

_TIMER_TYPES = ("TimeDateEventDefinition", "DurationTimerEventDefinition", "CycleTimerEventDefinition")


def ready_human_tasks(workflow: BpmnWorkflow) -> list[Task]:
    """Return the READY user and manual tasks of a workflow, subprocesses included."""
    return workflow.get_tasks(state=TaskState.READY, manual=True)


def sync(session: Session, instance: Instance, ready_tasks: list[Task], *, new: bool = False) -> None:
    """Make the instance's inbox rows equal its READY human tasks (none unless it is running)."""
    ready = {str(t.id): t for t in ready_tasks} if instance.status == "running" else {}
    existing: set[str] = set()
    if not new:
        existing = set(session.execute(select(InboxTask.task_id).where(InboxTask.instance_id == instance.id)).scalars())
    gone = existing - set(ready)
    if gone:
        session.execute(delete(InboxTask).where(InboxTask.task_id.in_(gone)))
    created = clock.now()
    rows = [_row(instance, task, task_id, created) for task_id, task in ready.items() if task_id not in existing]
    if rows:
        # Plain Core insert: these rows are never read back through this session's identity map.
        session.connection().execute(insert(InboxTask), rows)


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
