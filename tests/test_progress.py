"""Instance progress: the path taken, open and failed steps, waiting timers, data as each role may see it."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from conftest import FIXTURES, deploy_paths, deploy_texts
from helpers import SUBMISSION, only_task, open_tasks
from sqlalchemy import update

from engine import audit, runtime, timers
from engine.actors import SYSTEM, Actor
from engine.models import InboxTask
from engine.progress import Progress, progress, trail_for

DUE = datetime.fromisoformat("2026-10-13T00:00:00+08:00")
SUBMITTED_PATH = ("start", "submit_documents", "record_submission", "classify_review")
PARALLEL = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="http://x">
  <bpmn:process id="parallel_bids" name="Parallel" isExecutable="true">
    <bpmn:laneSet id="lanes">
      <bpmn:lane id="lane_staff" name="staff"><bpmn:flowNodeRef>check</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="lane_bidder" name="bidder"><bpmn:flowNodeRef>bid</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:parallelGateway id="split"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:outgoing>f3</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:userTask id="check" name="Check"><bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>f4</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="bid" name="Bid"><bpmn:incoming>f3</bpmn:incoming>
      <bpmn:outgoing>f5</bpmn:outgoing></bpmn:userTask>
    <bpmn:parallelGateway id="join"><bpmn:incoming>f4</bpmn:incoming><bpmn:incoming>f5</bpmn:incoming>
      <bpmn:outgoing>f6</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:endEvent id="end"><bpmn:incoming>f6</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="split"/>
    <bpmn:sequenceFlow id="f2" sourceRef="split" targetRef="check"/>
    <bpmn:sequenceFlow id="f3" sourceRef="split" targetRef="bid"/>
    <bpmn:sequenceFlow id="f4" sourceRef="check" targetRef="join"/>
    <bpmn:sequenceFlow id="f5" sourceRef="bid" targetRef="join"/>
    <bpmn:sequenceFlow id="f6" sourceRef="join" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


def state_of(ctx, iid) -> Progress:
    with ctx.sessions() as s:
        return progress(runtime.load(s, iid))


def start_review(ctx, actor) -> int:
    with ctx.sessions.begin() as s:
        return runtime.start_instance(s, "document_review", {}, actor).id


def complete(ctx, task_id, data, actor) -> None:
    with ctx.sessions.begin() as s:
        runtime.complete_task(s, task_id, data, actor)


def submitted(ctx, users) -> int:
    iid = start_review(ctx, users["zhang"])
    complete(ctx, only_task(ctx, iid).task_id, SUBMISSION, users["zhang"])
    return iid


def test_after_start_the_submission_is_open(example, users):
    state = state_of(example, start_review(example, users["zhang"]))
    assert state.path == ("start",)
    assert state.active == ("submit_documents",)
    assert state.flows == (("start", "submit_documents"),)
    assert (state.errored, state.cancelled, state.timers, state.data) == ((), (), (), {})
    assert state.markers() == {"done": ["start"], "active": ["submit_documents"], "error": [], "cancelled": [],
                               "flows": [["start", "submit_documents"]]}


def test_after_submit_the_review_is_open_with_its_deadline_timer(example, users):
    state = state_of(example, submitted(example, users))
    assert state.path == SUBMITTED_PATH
    assert set(state.active) == {"review_documents", "review_overdue"}
    assert state.flows == (("start", "submit_documents"), ("submit_documents", "record_submission"),
                           ("record_submission", "classify_review"), ("classify_review", "review_documents"))
    (timer,) = state.timers
    assert (timer.element_id, timer.due_at) == ("review_overdue", DUE)
    assert "Overdue" in timer.name
    assert state.data["review_level"] == "full"
    assert state.data["estimate"] == Decimal("4500000.10")
    assert state.data["submitted_at"] == "2026-09-29T09:00:00+08:00"


def test_after_the_boundary_timer_fires_the_regulator_handles_it(example, users):
    iid = submitted(example, users)
    assert timers.sweep(example.sessions, datetime.fromisoformat("2026-10-13T00:00:01+08:00")).fired == 1
    state = state_of(example, iid)
    assert state.path == (*SUBMITTED_PATH, "review_overdue")
    assert state.active == ("handle_overdue_review",)
    assert state.cancelled == ("review_documents",)
    assert ("review_overdue", "handle_overdue_review") in state.flows
    assert state.timers == ()
    markers = state.markers()
    assert markers["cancelled"] == ["review_documents"] and "review_overdue" in markers["done"]


def test_a_returned_submission_walks_the_loop_and_shows_the_latest_values(example, users):
    iid = submitted(example, users)
    complete(example, only_task(example, iid).task_id, {"decision": "return", "comments": "补正页数"}, users["li"])
    complete(example, only_task(example, iid).task_id, {**SUBMISSION, "page_count": 12}, users["zhang"])
    state = state_of(example, iid)
    assert state.path.count("submit_documents") == 2
    assert ("review_decision", "submit_documents") in state.flows
    assert state.data["page_count"] == 12
    assert state.markers()["active"] == ["review_documents", "review_overdue"]


def test_an_errored_instance_marks_the_failed_step(ctx):
    deploy_paths(ctx, FIXTURES / "forms", FIXTURES / "failing_script.bpmn")
    with ctx.sessions.begin() as s:
        iid = runtime.start_instance(s, "failing_script", {}, SYSTEM).id
    complete(ctx, only_task(ctx, iid).task_id, {"divisor": 0}, SYSTEM)
    state = state_of(ctx, iid)
    assert state.errored == ("divide",)
    assert state.active == ()
    assert state.path == ("start", "enter_divisor")
    assert ("enter_divisor", "divide") in state.flows
    assert state.markers()["error"] == ["divide"]
    assert state.data == {"divisor": 0}
    with ctx.sessions.begin() as s:
        runtime.retry(s, iid, SYSTEM, {"divisor": 4})
    state = state_of(ctx, iid)
    assert (state.errored, state.active) == ((), ("show_result",))
    assert state.data["result"] == 25


def test_data_is_narrowed_to_the_forms_of_the_viewers_lanes(example, users):
    state = state_of(example, submitted(example, users))
    everything = set(state.data)
    assert {"review_level", "submitted_at", "project_name"} <= everything
    assert set(state.data_for(users["zhang"])) == {"project_name", "page_count", "estimate"}
    assert state.fields_for(users["zhang"]) == {"project_name", "page_count", "estimate", "summary"}
    for role in ("staff", "regulator", "auditor", "admin"):
        assert set(state.data_for(Actor("someone", frozenset([role])))) == everything
    assert state.data_for(SYSTEM) == state.data
    assert state.data_for(users["chen"]) == {}
    assert state.data_for(Actor("agent", frozenset(["agency"]))) == {}
    assert state.titles["project_name"] == "项目名称"


def test_review_fields_of_the_staff_lane_stay_hidden_from_the_tenderer(example, users):
    iid = submitted(example, users)
    complete(example, only_task(example, iid).task_id, {"decision": "escalate", "comments": "疑似围标"}, users["li"])
    state = state_of(example, iid)
    assert state.data["comments"] == "疑似围标"
    assert "comments" not in state.data_for(users["zhang"]) and "decision" not in state.data_for(users["zhang"])
    with example.sessions() as s:
        trail = trail_for(state, users["zhang"], audit.trail(s, instance_id=iid))
        full = trail_for(state, users["zhao"], audit.trail(s, instance_id=iid))
    review = [e for e in trail if e.action == "task.complete" and e.payload["element"] == "review_documents"]
    assert review and review[0].payload["data"] == {}
    assert [e for e in full if e.action == "task.complete"][-1].payload["data"]["comments"] == "疑似围标"


def test_parallel_branches_and_who_bid_stays_confidential(ctx, users):
    deploy_texts(ctx, {"parallel_bids.bpmn": PARALLEL})
    with ctx.sessions.begin() as s:
        iid = runtime.start_instance(s, "parallel_bids", {}, SYSTEM).id
    tasks = {t.element_id: t for t in open_tasks(ctx, iid)}
    with ctx.sessions.begin() as s:
        s.execute(update(InboxTask).where(InboxTask.task_id == tasks["bid"].task_id)
                  .values(assignee_id=users["chen"].user_id))
    complete(ctx, tasks["check"].task_id, {"checked": True}, users["li"])
    state = state_of(ctx, iid)
    assert state.active == ("bid",) and state.data == {"checked": True}
    assert ("split", "check") in state.flows and ("check", "join") in state.flows
    complete(ctx, tasks["bid"].task_id, {"price": "100"}, users["chen"])
    state = state_of(ctx, iid)
    assert state.data == {"checked": True, "price": "100"}
    assert {"check", "bid", "join", "end"} <= state.completed and state.markers()["cancelled"] == []
    with ctx.sessions() as s:
        events = audit.trail(s, instance_id=iid)
        seen = {name: [(e.actor, e.action) for e in trail_for(state, users[name], events)]
                for name in ("zhang", "chen", "li")}
    assert ("chen", "task.complete") not in seen["zhang"]
    assert ("chen", "task.complete") in seen["chen"] and ("chen", "task.complete") in seen["li"]
