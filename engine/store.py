"""Serialized workflow state without the spec: the spec is referenced by process version.

SpiffWorkflow's default serializer writes the whole spec into every instance;
ggzy writes only the task tree and data, and restores against the bundle of the
instance's process version. Decimal amounts are a registered type, so they
survive exactly.
"""

from __future__ import annotations

import json
import math
import operator
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState

from engine.bundles import Bundle


class SpecByReferenceConverter(BpmnWorkflowConverter):
    """Converts a top-level workflow without its spec and subprocess specs."""

    def to_dict(self, workflow: BpmnWorkflow) -> dict:
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def restore_with(self, dct: dict, bundle: Bundle) -> BpmnWorkflow:
        """Restore a workflow against the spec of its bundle."""
        workflow = self.target_class(bundle.spec, bundle.subprocess_specs, deserializing=True)
        workflow.script_engine = bundle.script_engine
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


def _make_serializer() -> tuple[BpmnWorkflowSerializer, SpecByReferenceConverter]:
    config = dict(SPIFF_CONFIG)
    config[BpmnWorkflow] = SpecByReferenceConverter
    registry = BpmnWorkflowSerializer.configure(config)
    registry.register(Decimal, lambda v: {"value": str(v)}, lambda v: Decimal(v["value"]), typename="Decimal")
    registry.register(date, lambda v: {"value": v.isoformat()}, lambda v: date.fromisoformat(v["value"]),
                      typename="date")
    serializer = BpmnWorkflowSerializer(registry)
    converter = registry.convert_from_dict[registry.typenames[BpmnWorkflow]].args[0].__self__
    return serializer, converter


_SERIALIZER, _CONVERTER = _make_serializer()
SERIALIZER_VERSION = _SERIALIZER.VERSION


def dump(workflow: BpmnWorkflow) -> str:
    """Serialize a workflow's state (no spec) to JSON text."""
    return _SERIALIZER.serialize_json(workflow)


def load(state: str, bundle: Bundle) -> BpmnWorkflow:
    """Restore a workflow from JSON text against its version's bundle, migrating old formats."""
    dct = json.loads(state)
    _SERIALIZER.migrate(dct)
    return _CONVERTER.restore_with(dct, bundle)


# --- reuse of a restored workflow ------------------------------------------------------------------------
#
# ``load(dump(w))`` builds a new object graph. Reusing ``w`` itself in the next transaction is only sound
# when ``w`` is indistinguishable from that graph. ``reusable`` proves it for the shape SpiffWorkflow
# restores: values of the types the serializer restores exactly, no container below the first level of
# a data dict, no container shared between tasks or keys (a restored graph never shares one), each
# task's inherited keys in the order a restore gives them, and the event manager holding exactly the
# waiting catching events a restore registers. Anything else (subprocesses, pending BPMN events,
# correlations, locks, signal listeners) is simply not reused.

_SCALARS = frozenset({str, int, bool, type(None), Decimal, date, UUID})  # restored exactly, immutable


def _scalar(value: object) -> bool:
    kind = type(value)
    if kind in _SCALARS:
        return True
    if kind is float:
        return math.isfinite(value)
    if kind is datetime:
        return value.fold == 0 and (value.tzinfo is None or type(value.tzinfo) is timezone)
    if kind is timedelta:
        return value.microseconds == 0
    return False


def _flat_container(value: object) -> bool:
    kind = type(value)
    if kind is list:
        return all(map(_scalar, value))
    if kind is dict:
        return "typename" not in value and all(type(k) is str for k in value) and all(map(_scalar, value.values()))
    return False


def _same(a: object, b: object) -> bool:
    """Tell whether two equal values are also indistinguishable (``1 == True``, ``Decimal("1.0") == 1``)."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(map(_same, a, b))
    if type(a) is dict:
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if type(a) in (float, Decimal):
        return repr(a) == repr(b)
    if type(a) is datetime:
        return a.isoformat() == b.isoformat()
    return a == b


def _entries(keys: list, values: list, seen: set[int]) -> tuple[bool, bool]:
    """Check data entries: str keys, scalar or fresh flat-container values. Return (ok, scalars only)."""
    if keys and set(map(type, keys)) != {str}:
        return False, False
    if set(map(type, values)) <= _SCALARS:  # the common case, checked in C
        return True, True
    only = True
    for value in values:
        if not _scalar(value):
            if id(value) in seen or not _flat_container(value):
                return False, False
            seen.add(id(value))
            only = False
    return True, only


def _plain(data: object, seen: set[int]) -> bool:
    """A data dict: str keys, scalar or flat-container values, no container seen before."""
    if type(data) is not dict or id(data) in seen or "typename" in data:
        return False
    seen.add(id(data))
    return _entries(list(data), list(data.values()), seen)[0]


def _inherits_exactly(data: dict, inherited: dict) -> bool:
    """Tell whether a restore, which copies unchanged keys from the parent, gives ``data`` back exactly."""
    keys = list(data)
    common = [k for k in inherited if k in data]
    if keys != common + [k for k in keys if k not in inherited]:
        return False
    for key in common:
        a, b = data[key], inherited[key]
        if a is not b and a == b and not _same(a, b):
            return False
    return True


def _task_data(data: object, inherited: dict | None, parent_scalars: bool, seen: set[int]) -> tuple[bool, bool]:
    """Check one task's data against the rules above. Return (ok, scalars only)."""
    if type(data) is not dict or id(data) in seen or "typename" in data:
        return False, False
    seen.add(id(data))
    keys = list(data)
    if inherited is None:
        return _entries(keys, list(data.values()), seen)
    size = len(inherited)
    if (parent_scalars and keys[:size] == list(inherited)
            and all(map(operator.is_, data.values(), inherited.values()))):
        # The common case: the parent's entries, the very same (checked, immutable) objects, then new ones.
        added = keys[size:]
        ok, only = _entries(added, list(map(data.__getitem__, added)), seen)
        return ok, ok and only
    if not _inherits_exactly(data, inherited):
        return False, False
    return _entries(keys, list(data.values()), seen)


def reusable(workflow: BpmnWorkflow) -> bool:
    """Tell whether ``workflow`` behaves exactly like ``load(dump(workflow))`` (see above)."""
    if (workflow.subprocesses or workflow.bpmn_events or workflow.correlations or workflow.locks
            or workflow.completed_event.n_subscribers() or workflow.task_removed_event.n_subscribers()):
        return False
    seen: set[int] = set()
    if not _plain(workflow.data, seen):
        return False
    waiting = set()
    tasks = workflow.tasks
    scalars: dict[int, bool] = {}  # by id(task): its data holds scalars only
    for task in tasks.values():
        parent = tasks.get(task._parent) if task._parent is not None else None
        if parent is None:
            ok, only = _task_data(task.data, None, False, seen)
        else:
            ok, only = _task_data(task.data, parent.data, scalars.get(id(parent), False), seen)
        internal = task.internal_data
        if not ok or type(internal) is not dict or id(internal) in seen:
            return False
        seen.add(id(internal))
        if internal and not _plain_entries(internal, seen):
            return False
        scalars[id(task)] = only
        if isinstance(task.task_spec, CatchingEvent) and task._state == TaskState.WAITING:
            waiting.add(task.id)
    managed = workflow.event_manager.tasks
    return managed.keys() == waiting and all(managed[i] is tasks[i] for i in waiting)


def _plain_entries(data: dict, seen: set[int]) -> bool:
    return "typename" not in data and _entries(list(data), list(data.values()), seen)[0]
