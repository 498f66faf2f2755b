"""A task inside an embedded sub-process goes to its own lane's role, even when the sub-process sits in a lane."""

from __future__ import annotations

from conftest import deploy_texts
from helpers import only_task

from engine import runtime
from engine.actors import SYSTEM

STAGED = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:process id="staged" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="lane_staff" name="staff"><bpmn:flowNodeRef>stage</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="lane_tenderer" name="tenderer"><bpmn:flowNodeRef>prepare</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:subProcess id="stage"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:startEvent id="inner_start"><bpmn:outgoing>g1</bpmn:outgoing></bpmn:startEvent>
      <bpmn:userTask id="prepare"><bpmn:incoming>g1</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing></bpmn:userTask>
      <bpmn:endEvent id="inner_end"><bpmn:incoming>g2</bpmn:incoming></bpmn:endEvent>
      <bpmn:sequenceFlow id="g1" sourceRef="inner_start" targetRef="prepare"/>
      <bpmn:sequenceFlow id="g2" sourceRef="prepare" targetRef="inner_end"/>
    </bpmn:subProcess>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="stage"/>
    <bpmn:sequenceFlow id="f2" sourceRef="stage" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


def test_a_task_in_a_sub_process_in_another_lane_keeps_its_own_role(ctx):
    deploy_texts(ctx, {"staged.bpmn": STAGED})
    with ctx.sessions.begin() as s:
        iid = runtime.start_instance(s, "staged", {}, SYSTEM).id
    assert only_task(ctx, iid).role == "tenderer"
