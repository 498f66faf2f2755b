"""Where an instance stands: the path it took, its open and failed steps, waiting timers, visible data.

Extracted from a restored workflow (``engine.runtime.load``) for the instance
page: element ids are BPMN ids (``task_spec.bpmn_id``); SpiffWorkflow's own
control specs (boundary splits and joins, the root, the end join) carry no
BPMN id and are skipped.

Data is the union of every completed task's data, merged in completion order.
A task's data is a copy of its predecessor's plus its own changes, so along a
single path the union equals the latest task's data; it differs where the
process forks: parallel branches (separate bids, separate expert reviews) keep
their data apart until they join, and a page showing only the latest task
would hide what the other branches already recorded. Later values win, so a
resubmitted form shows its latest values.

Tenderers, agencies, bidders and experts see only the fields of the forms of
tasks in their own lanes; staff, regulators, auditors and admins see all data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import BoundaryEvent
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from engine.actors import Actor
from engine.lint import FORM_PROPERTY
from engine.models import AuditEvent
from engine.runtime import Loaded

FULL_VIEW = ("staff", "regulator", "auditor", "admin")
PERSONAL_LANES = ("bidder", "expert")
_REACHED = TaskState.READY | TaskState.STARTED | TaskState.WAITING | TaskState.COMPLETED | TaskState.ERROR
_OPEN = TaskState.READY | TaskState.STARTED | TaskState.WAITING
_SUBSCHEMAS = ("allOf", "anyOf", "oneOf")
_BRANCHES = ("if", "then", "else")


@dataclass(frozen=True)
class Timer:
    """A timer event waiting to fire."""

    element_id: str
    name: str
    due_at: datetime


@dataclass(frozen=True)
class Progress:
    """What an instance has done, is doing and waits for."""

    path: tuple[str, ...]
    active: tuple[str, ...]
    errored: tuple[str, ...]
    cancelled: tuple[str, ...]
    flows: tuple[tuple[str, str], ...]
    timers: tuple[Timer, ...]
    data: dict[str, Any]
    lanes: dict[str, str] = field(default_factory=dict)
    lane_fields: dict[str, frozenset[str]] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)

    @property
    def completed(self) -> frozenset[str]:
        """Return the elements completed at least once."""
        return frozenset(self.path)

    def markers(self) -> dict[str, list]:
        """Return the diagram markers: each element once, error over active over done over cancelled."""
        error = sorted(set(self.errored))
        active = sorted(set(self.active) - set(error))
        done = sorted(self.completed - set(error) - set(active))
        cancelled = sorted(set(self.cancelled) - self.completed - set(active) - set(error))
        return {"done": done, "active": active, "error": error, "cancelled": cancelled,
                "flows": [list(pair) for pair in self.flows]}

    def fields_for(self, actor: Actor) -> frozenset[str] | None:
        """Return the data fields the actor may see (None: all of them)."""
        if actor.username == "system" or any(actor.has_role(r) for r in FULL_VIEW):
            return None
        return frozenset().union(*(self.lane_fields.get(role, frozenset()) for role in actor.roles))

    def data_for(self, actor: Actor, data: dict[str, Any] | None = None) -> dict[str, Any]:
        """Return the instance's data (or ``data``) narrowed to the fields the actor may see."""
        data = self.data if data is None else data
        fields = self.fields_for(actor)
        return dict(data) if fields is None else {k: v for k, v in data.items() if k in fields}


@dataclass(frozen=True)
class TrailEntry:
    """One audit event as a viewer may see it."""

    at: datetime
    actor: str
    action: str
    payload: dict[str, Any]


def progress(loaded: Loaded) -> Progress:
    """Extract an instance's progress from its restored workflow."""
    workflow = loaded.workflow
    tasks = [t for t in workflow.get_tasks() if t.task_spec.bpmn_id is not None]
    done = sorted((t for t in tasks if t.has_state(TaskState.COMPLETED)), key=lambda t: t.last_state_change)
    errored = [t.task_spec.bpmn_id for t in tasks if t.has_state(TaskState.ERROR)]
    error = loaded.instance.error or {}
    if loaded.instance.status == "error" and error.get("element_id") and error["element_id"] not in errored:
        errored.append(error["element_id"])
    data: dict[str, Any] = {}
    for task in done:
        data.update(task.data)
    lanes, lane_fields, titles = _lanes_and_fields(loaded)
    return Progress(
        path=tuple(t.task_spec.bpmn_id for t in done),
        active=tuple(_unique(t.task_spec.bpmn_id for t in tasks if t.has_state(_OPEN) and _is_waiting_step(t))),
        errored=tuple(errored),
        cancelled=tuple(_unique(t.task_spec.bpmn_id for t in tasks if t.has_state(TaskState.CANCELLED)
                                and _flow(t) is not None)),
        flows=tuple(_unique(_flow(t) for t in tasks if _flow(t) is not None)),
        timers=tuple(sorted(_timers(loaded), key=lambda timer: (timer.due_at, timer.element_id))),
        data=data, lanes=lanes, lane_fields=lane_fields, titles=titles,
    )


def _is_waiting_step(task: Task) -> bool:
    return task.task_spec.manual or isinstance(task.task_spec, CatchingEvent)


def _previous(task: Task) -> Task | None:
    """Return the completed BPMN element the task was reached from (control specs skipped)."""
    parent = task.parent
    while parent is not None and parent.task_spec.bpmn_id is None and parent.has_state(TaskState.COMPLETED):
        parent = parent.parent
    if parent is None or parent.task_spec.bpmn_id is None or not parent.has_state(TaskState.COMPLETED):
        return None
    return parent


def _flow(task: Task) -> tuple[str, str] | None:
    """Return the (source, target) pair of the flow that reached the task, if it was reached."""
    if isinstance(task.task_spec, BoundaryEvent) or not task.has_state(_REACHED | TaskState.CANCELLED):
        return None
    previous = _previous(task)
    if previous is None:
        return None
    return previous.task_spec.bpmn_id, task.task_spec.bpmn_id


def _timers(loaded: Loaded) -> Iterable[Timer]:
    for task in loaded.workflow.event_manager.tasks.values():
        spec = task.task_spec
        if not isinstance(getattr(spec, "event_definition", None), TimerEventDefinition):
            continue
        if task._get_internal_data("event_fired"):
            continue
        value = task._get_internal_data("event_value")
        if isinstance(value, dict):
            value = value.get("next")
        if isinstance(value, str):
            yield Timer(spec.bpmn_id, spec.bpmn_name or spec.bpmn_id, TimerEventDefinition.get_datetime(value))


def _lanes_and_fields(loaded: Loaded) -> tuple[dict[str, str], dict[str, frozenset[str]], dict[str, str]]:
    """Return each element's lane, each lane's form fields, and the fields' titles."""
    bundle = loaded.bundle
    lanes: dict[str, str] = {}
    fields: dict[str, set[str]] = {}
    titles: dict[str, str] = {}
    for spec in (bundle.spec, *bundle.subprocess_specs.values()):
        for task_spec in spec.task_specs.values():
            if task_spec.bpmn_id is None or not task_spec.lane:
                continue
            lanes[task_spec.bpmn_id] = task_spec.lane
            form = (task_spec.extensions or {}).get("properties", {}).get(FORM_PROPERTY)
            schema = bundle.forms.get(form) if form else None
            if schema is not None:
                fields.setdefault(task_spec.lane, set()).update(_schema_fields(schema, titles))
    return lanes, {lane: frozenset(names) for lane, names in fields.items()}, titles


def _schema_fields(schema: Any, titles: dict[str, str]) -> set[str]:
    """Return the top-level property names of a form schema, conditional branches included."""
    if not isinstance(schema, dict):
        return set()
    names = set()
    for name, prop in (schema.get("properties") or {}).items():
        names.add(name)
        if isinstance(prop, dict) and isinstance(prop.get("title"), str):
            titles.setdefault(name, prop["title"])
    for key in _SUBSCHEMAS:
        for sub in schema.get(key) or []:
            names |= _schema_fields(sub, titles)
    for key in _BRANCHES:
        names |= _schema_fields(schema.get(key), titles)
    return names


def trail_for(state: Progress, actor: Actor, events: Iterable[AuditEvent]) -> list[TrailEntry]:
    """Return an instance's audit events as the actor may see them.

    Narrowed viewers get the form data in payloads cut to their fields, and do
    not see other people's bidder and expert steps: who bids and who reviews
    stays confidential.
    """
    narrowed = state.fields_for(actor) is not None
    entries = []
    for event in events:
        payload = json.loads(event.payload or "{}")
        if narrowed and event.action == "task.complete" and event.actor != actor.username \
                and state.lanes.get(payload.get("element", "")) in PERSONAL_LANES:
            continue
        if isinstance(payload.get("data"), dict):
            payload["data"] = state.data_for(actor, payload["data"])
        entries.append(TrailEntry(event.at, event.actor, event.action, payload))
    return entries


def _unique(items: Iterable) -> list:
    return list(dict.fromkeys(items))
