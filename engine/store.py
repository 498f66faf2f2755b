"""Serialized workflow state without the spec: the spec is referenced by process version.

SpiffWorkflow's default serializer writes the whole spec into every instance;
ggzy writes only the task tree and data, and restores against the bundle of the
instance's process version. Decimal amounts are a registered type, so they
survive exactly.
"""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal
from uuid import UUID

from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG

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
