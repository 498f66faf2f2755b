"""Service tasks call registered domain handlers inside the engine step's transaction."""

from __future__ import annotations

import pytest
from conftest import deploy_texts
from helpers import instance, only_task

from engine import audit, runtime
from engine.actors import SYSTEM
from engine.errors import DeploymentError
from engine.services import service

PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="svc" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l" name="staff"><bpmn:flowNodeRef>done</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:serviceTask id="call">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id="OPERATOR" resultVariable="answer">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="amount" type="str" value="Decimal(amount) * 2"/>
          </spiffworkflow:parameters>
        </spiffworkflow:serviceTaskOperator>
      </bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:userTask id="done"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="call"/>
    <bpmn:sequenceFlow id="f2" sourceRef="call" targetRef="done"/>
    <bpmn:sequenceFlow id="f3" sourceRef="done" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


@service("test_double")
def _double(call, amount):
    audit.append(call.session, actor=call.actor, action="test.double", instance_id=call.instance_id,
                 payload={"amount": amount, "element": call.element_id})
    return {"doubled": amount}


@service("test_fail")
def _fail(call, amount):
    raise ValueError(f"bank refused {amount}")


def test_service_task_runs_in_the_step_transaction(ctx):
    deploy_texts(ctx, {"svc.bpmn": PROCESS.replace("OPERATOR", "test_double")})
    with ctx.sessions.begin() as s:
        iid = runtime.start_instance(s, "svc", {"amount": "10.50"}, SYSTEM).id
    task = only_task(ctx, iid)
    with ctx.sessions() as s:
        data = runtime.load(s, iid).workflow.get_task_from_id(__import__("uuid").UUID(task.task_id)).data
        trail = [e.action for e in audit.trail(s, instance_id=iid)]
    assert data["answer"] == {"doubled": "21.00"}
    assert trail == ["instance.start", "test.double"]


def test_failing_handler_puts_the_instance_in_error(ctx):
    deploy_texts(ctx, {"svc.bpmn": PROCESS.replace("OPERATOR", "test_fail")})
    with ctx.sessions.begin() as s:
        iid = runtime.start_instance(s, "svc", {"amount": "1"}, SYSTEM).id
    row = instance(ctx, iid)
    assert row.status == "error"
    assert row.error["element_id"] == "call" and "bank refused 2" in row.error["message"]


def test_unknown_operator_is_refused_at_deploy(ctx):
    with pytest.raises(DeploymentError, match="'test_doubel' is not a registered service task handler.*test_double"):
        deploy_texts(ctx, {"svc.bpmn": PROCESS.replace("OPERATOR", "test_doubel")})


def test_service_parameters_are_linted(ctx):
    bad = PROCESS.replace("OPERATOR", "test_double").replace("Decimal(amount) * 2", "open('/etc/passwd')")
    with pytest.raises(DeploymentError, match="open"):
        deploy_texts(ctx, {"svc.bpmn": bad})


def test_an_element_with_the_id_of_a_service_operator_is_refused_at_deploy(ctx):
    """SpiffWorkflow indexes operators by id too: a user task named like the operator would take its flows."""
    clash = PROCESS.replace("OPERATOR", "test_double").replace('id="done"', 'id="test_double"').replace(
        ">done<", ">test_double<").replace('targetRef="done"', 'targetRef="test_double"').replace(
        'sourceRef="done"', 'sourceRef="test_double"')
    with pytest.raises(DeploymentError, match="svc.bpmn:[0-9]+: element call: service operator 'test_double' has the "
                                              "id of another element"):
        deploy_texts(ctx, {"svc.bpmn": clash})
    deploy_texts(ctx, {"svc.bpmn": PROCESS.replace("OPERATOR", "test_double")})  # the same diagram without the clash
