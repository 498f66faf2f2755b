"""Runtime: start, inbox, forms, roles, versions, persistence, errors, corrections."""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal

import pytest
from conftest import FIXTURES, ROOT, deploy_paths
from helpers import SUBMISSION, actions, instance, only_task, open_tasks

from engine import runtime, store
from engine.actors import SYSTEM
from engine.errors import Conflict, EngineError, FormValidationError, InvalidState, NotFound, PermissionDenied


def start_review(ctx, actor=SYSTEM) -> int:
    with ctx.sessions.begin() as s:
        return runtime.start_instance(s, "document_review", {}, actor).id


def submit(ctx, instance_id, actor, data=None) -> None:
    task = only_task(ctx, instance_id)
    with ctx.sessions.begin() as s:
        runtime.complete_task(s, task.task_id, data or SUBMISSION, actor)


def test_start_materializes_the_inbox(example, users):
    iid = start_review(example, users["zhang"])
    task = only_task(example, iid)
    assert (task.element_id, task.role, task.form_key) == ("submit_documents", "tenderer", "submit_documents.json")
    assert "Submit documents" in task.title
    assert task.due_at is None
    assert instance(example, iid).status == "running"
    assert actions(example, iid) == ["instance.start"]


def test_completion_runs_rules_and_sets_the_statutory_due_time(example, users):
    iid = start_review(example, users["zhang"])
    submit(example, iid, users["zhang"])
    task = only_task(example, iid)
    assert task.element_id == "review_documents" and task.role == "staff"
    # submitted 2026-09-29 09:00; 5 working days across National Day end at 24:00 on 2026-10-12.
    assert task.due_at == datetime.fromisoformat("2026-10-13T00:00:00+08:00")
    assert instance(example, iid).next_timer_at == task.due_at
    with example.sessions() as s:
        data = runtime.load(s, iid).workflow.get_task_from_id(__import__("uuid").UUID(task.task_id)).data
    assert data["review_level"] == "full"
    assert data["estimate"] == Decimal("4500000.10") and isinstance(data["estimate"], Decimal)


def test_actor_must_hold_the_lane_role(example, users):
    iid = start_review(example, users["zhang"])
    before = instance(example, iid).revision
    with pytest.raises(PermissionDenied, match="tenderer"):
        submit(example, iid, users["li"])
    assert instance(example, iid).revision == before
    assert only_task(example, iid).element_id == "submit_documents"


def test_form_errors_are_per_field_and_change_nothing(example, users):
    iid = start_review(example, users["zhang"])
    with pytest.raises(FormValidationError) as info:
        submit(example, iid, users["zhang"], {"project_name": "", "page_count": 0, "estimate": "12.345"})
    assert set(info.value.errors) == {"project_name", "page_count", "estimate"}
    assert only_task(example, iid).element_id == "submit_documents"
    assert actions(example, iid) == ["instance.start"]


@pytest.mark.parametrize("key", ["__class__", "_private", "now", "add_working_days", "rule"])
def test_data_keys_may_not_be_dunders_or_shadow_functions(example, users, key):
    iid = start_review(example, users["zhang"])
    with pytest.raises(FormValidationError, match=key):
        submit(example, iid, users["zhang"], {**SUBMISSION, key: 1})
    with example.sessions.begin() as s, pytest.raises(FormValidationError, match=key):
        runtime.start_instance(s, "document_review", {key: 1}, SYSTEM)


def test_unknown_process_and_task_are_clear_errors(example):
    with example.sessions.begin() as s, pytest.raises(NotFound, match="no deployed process 'nope'"):
        runtime.start_instance(s, "nope", {}, SYSTEM)
    with example.sessions.begin() as s, pytest.raises(NotFound, match="no open task"):
        runtime.complete_task(s, "00000000-0000-0000-0000-000000000000", {}, SYSTEM)


def test_state_is_stored_without_the_spec_and_restores_identically(example, users):
    iid = start_review(example, users["zhang"])
    submit(example, iid, users["zhang"])
    with example.sessions() as s:
        loaded = runtime.load(s, iid)
        state = loaded.instance.state
        again = store.dump(store.load(state, loaded.bundle))
    assert '"spec"' not in state and "subprocess_specs" not in state
    assert again == state
    assert '"typename": "Decimal"' in state


def test_instances_keep_their_version(example, users, tmp_path):
    old = start_review(example, users["zhang"])
    changed = (ROOT / "bpmn" / "document_review.bpmn").read_text().replace("审查文件 Review documents",
                                                                           "审查文件（第二版）")
    (tmp_path / "document_review.bpmn").write_text(changed)
    (outcome,) = deploy_paths(example, tmp_path / "document_review.bpmn")
    assert outcome.version == 2
    new = start_review(example, users["zhang"])
    submit(example, old, users["zhang"])
    submit(example, new, users["zhang"])
    assert "Review documents" in only_task(example, old).title
    assert only_task(example, new).title == "审查文件（第二版）"
    assert instance(example, old).process_version_id != instance(example, new).process_version_id


def test_two_concurrent_completions_one_wins(example, users):
    iid = start_review(example, users["zhang"])
    submit(example, iid, users["zhang"])
    task_id = only_task(example, iid).task_id
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def complete(name):
        barrier.wait()
        try:
            with example.sessions.begin() as s:
                runtime.complete_task(s, task_id, {"decision": "approve"}, users[name])
            outcomes[name] = "ok"
        except Conflict as err:
            outcomes[name] = err

    threads = [threading.Thread(target=complete, args=(n,)) for n in ("li", "wang")]
    [t.start() for t in threads]
    [t.join() for t in threads]
    winners = [n for n, o in outcomes.items() if o == "ok"]
    assert len(winners) == 1, outcomes
    (loser,) = [o for o in outcomes.values() if o != "ok"]
    assert f"already completed by {winners[0]}" in str(loser)
    assert instance(example, iid).status == "completed"
    assert actions(example, iid).count("task.complete") == 2


def test_runtime_error_is_recorded_and_retried_after_a_fix(ctx):
    deploy_paths(ctx, FIXTURES / "forms", FIXTURES / "failing_script.bpmn")
    with ctx.sessions.begin() as s:
        iid = runtime.start_instance(s, "failing_script", {}, SYSTEM).id
    task = only_task(ctx, iid)
    with ctx.sessions.begin() as s:
        runtime.complete_task(s, task.task_id, {"divisor": 0}, SYSTEM)
    failed = instance(ctx, iid)
    assert failed.status == "error"
    assert failed.error["element_id"] == "divide"
    assert "ZeroDivisionError" in failed.error["message"]
    assert open_tasks(ctx, iid) == []
    with ctx.sessions() as s:
        (errored,) = runtime.load(s, iid).workflow.get_tasks(state=__import__("SpiffWorkflow").TaskState.ERROR)
        assert errored.data["divisor"] == 0
    with ctx.sessions.begin() as s:
        runtime.retry(s, iid, SYSTEM, {"divisor": 4})
    assert instance(ctx, iid).status == "running"
    assert only_task(ctx, iid).element_id == "show_result"
    with ctx.sessions() as s:
        assert runtime.load(s, iid).workflow.get_tasks(spec_name="show_result")[0].data["result"] == 25
    assert actions(ctx, iid) == ["instance.start", "task.complete", "instance.error", "instance.retry"]
    with ctx.sessions.begin() as s, pytest.raises(InvalidState, match="not in error"):
        runtime.retry(s, iid, SYSTEM)


def test_suspend_resume_terminate_with_reasons(example, users):
    iid = start_review(example, users["zhang"])
    task_id = only_task(example, iid).task_id
    with example.sessions.begin() as s, pytest.raises(EngineError, match="reason is required"):
        runtime.suspend(s, iid, " ", users["li"])
    with example.sessions.begin() as s, pytest.raises(PermissionDenied):
        runtime.suspend(s, iid, "complaint", users["zhang"])
    with example.sessions.begin() as s:
        runtime.suspend(s, iid, "投诉处理期间暂停 complaint under review", users["zhao"])
    assert instance(example, iid).status == "suspended"
    assert open_tasks(example, iid) == []
    # a stale form submitted during the pause is told why, not "no open task"
    with example.sessions.begin() as s, pytest.raises(
            InvalidState, match=rf"instance {iid} is suspended \(投诉处理期间暂停 complaint under review\); its task"):
        runtime.complete_task(s, task_id, SUBMISSION, users["zhang"])
    with example.sessions.begin() as s, pytest.raises(NotFound, match="no open task"):
        runtime.complete_task(s, "00000000-0000-0000-0000-000000000000", SUBMISSION, users["zhang"])
    with example.sessions.begin() as s:
        runtime.resume(s, iid, "complaint dismissed", users["zhao"])
    assert instance(example, iid).status == "running"
    assert only_task(example, iid).task_id == task_id
    with example.sessions.begin() as s:
        runtime.terminate(s, iid, "project cancelled by the tenderer", users["li"])
    row = instance(example, iid)
    assert (row.status, row.status_reason, row.next_timer_at) == ("terminated", "project cancelled by the tenderer",
                                                                   None)
    assert open_tasks(example, iid) == []
    with example.sessions.begin() as s, pytest.raises(InvalidState):
        runtime.resume(s, iid, "oops", users["li"])
    assert actions(example, iid)[-3:] == ["instance.suspend", "instance.resume", "instance.terminate"]



FILE_FORM = {"type": "object", "required": ["lots"], "properties": {
    "lots": {"type": "array", "items": {"type": "object", "properties": {
        "price": {"type": "string", "format": "decimal"},
        "evidence": {"type": "object", "format": "file"}}}}}}
FILE_PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="lots" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l" name="staff"><bpmn:flowNodeRef>enter</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="enter">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formJsonSchemaFilename" value="lots.json"/>
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="enter"/>
    <bpmn:sequenceFlow id="f2" sourceRef="enter" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


def test_decimals_inside_groups_and_forged_file_references(ctx, config):
    import json

    from conftest import deploy_texts

    from engine import files

    deploy_texts(ctx, {"lots.json": json.dumps(FILE_FORM), "lots.bpmn": FILE_PROCESS})
    with ctx.sessions.begin() as s:
        iid = runtime.start_instance(s, "lots", {}, SYSTEM).id
    task_id = only_task(ctx, iid).task_id
    forged = {"lots": [{"price": "12.30", "evidence": {"sha256": "ab" * 32, "name": "x.pdf"}}]}
    with ctx.sessions.begin() as s, pytest.raises(FormValidationError, match="never uploaded"):
        runtime.complete_task(s, task_id, forged, SYSTEM)
    with ctx.sessions.begin() as s:
        stored = files.store(s, b"%PDF-1.4 evidence", "evidence.pdf", "application/pdf", SYSTEM, config=config,
                             max_bytes=1 << 20, allowed_types=files.DEFAULT_TYPES)
        sha = stored.sha256
    with ctx.sessions.begin() as s:
        runtime.complete_task(s, task_id, {"lots": [{"price": "12.30", "evidence": {"sha256": sha}}]}, SYSTEM)
    with ctx.sessions() as s:
        data = runtime.load(s, iid).workflow.last_task.data
    assert data["lots"][0]["price"] == Decimal("12.30")


# --- the fast completion path: one guarded UPDATE, inbox upsert, reuse of a committed workflow ----------

PARALLEL_PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:process id="two_reviews" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l" name="staff">
        <bpmn:flowNodeRef>first</bpmn:flowNodeRef><bpmn:flowNodeRef>second</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:parallelGateway id="split"><bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing><bpmn:outgoing>f3</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:userTask id="first"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing></bpmn:userTask>
    <bpmn:userTask id="second"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f5</bpmn:outgoing></bpmn:userTask>
    <bpmn:parallelGateway id="join"><bpmn:incoming>f4</bpmn:incoming><bpmn:incoming>f5</bpmn:incoming>
      <bpmn:outgoing>f6</bpmn:outgoing></bpmn:parallelGateway>
    <bpmn:endEvent id="end"><bpmn:incoming>f6</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="split"/>
    <bpmn:sequenceFlow id="f2" sourceRef="split" targetRef="first"/>
    <bpmn:sequenceFlow id="f3" sourceRef="split" targetRef="second"/>
    <bpmn:sequenceFlow id="f4" sourceRef="first" targetRef="join"/>
    <bpmn:sequenceFlow id="f5" sourceRef="second" targetRef="join"/>
    <bpmn:sequenceFlow id="f6" sourceRef="join" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


def _task(ctx, iid, element):
    (task,) = [t for t in open_tasks(ctx, iid) if t.element_id == element]
    return task


def test_a_row_that_stays_in_the_inbox_keeps_its_claim_and_creation_time(ctx, users):
    from conftest import deploy_texts

    from engine.models import InboxTask

    deploy_texts(ctx, {"two_reviews.bpmn": PARALLEL_PROCESS})
    with ctx.sessions.begin() as s:
        iid = runtime.start_instance(s, "two_reviews", {}, SYSTEM).id
    second = _task(ctx, iid, "second")
    with ctx.sessions.begin() as s:
        s.get(InboxTask, second.task_id).assignee_id = users["wang"].user_id
    with ctx.sessions.begin() as s:
        runtime.complete_task(s, _task(ctx, iid, "first").task_id, {"opinion": "ok"}, users["li"])
    kept = only_task(ctx, iid)
    assert (kept.task_id, kept.assignee_id, kept.created_at) == (second.task_id, users["wang"].user_id,
                                                                 second.created_at)
    assert instance(ctx, iid).status == "running"
    with ctx.sessions.begin() as s:
        runtime.complete_task(s, second.task_id, {}, users["wang"])
    assert open_tasks(ctx, iid) == [] and instance(ctx, iid).status == "completed"


def test_a_completed_task_leaves_the_session_identity_map(example, users):
    from engine.models import InboxTask

    iid = start_review(example, users["zhang"])
    task_id = only_task(example, iid).task_id
    with example.sessions.begin() as s:
        held = s.get(InboxTask, task_id)
        runtime.complete_task(s, task_id, SUBMISSION, users["zhang"])
        assert held not in s
        assert s.get(InboxTask, task_id) is None
        (next_task,) = s.execute(__import__("sqlalchemy").select(InboxTask)
                                 .where(InboxTask.instance_id == iid)).scalars()
        assert next_task.element_id == "review_documents"


def test_a_lost_update_is_refused_with_a_conflict_and_writes_nothing(example, users):
    from sqlalchemy import update

    from engine.models import Instance

    iid = start_review(example, users["zhang"])
    before = instance(example, iid)
    with example.sessions() as s:
        loaded = runtime.load(s, iid)
        s.commit()  # end the read (SQLite holds its write lock for the whole transaction)
        with example.sessions.begin() as other:  # someone else changes the row meanwhile
            other.execute(update(Instance).where(Instance.id == iid).values(revision=Instance.revision + 1))
        with pytest.raises(Conflict, match=f"instance {iid} was changed by someone else"):
            runtime.persist(s, loaded, status="suspended")
        s.rollback()
    after = instance(example, iid)
    assert (after.revision, after.status, after.state) == (before.revision + 1, "running", before.state)
    assert only_task(example, iid).element_id == "submit_documents"


def test_the_caller_s_own_changes_to_the_instance_are_written_with_the_state(example, users):
    iid = start_review(example, users["zhang"])
    revision = instance(example, iid).revision
    with example.sessions.begin() as s:
        loaded = runtime.load(s, iid, lock=True)
        loaded.instance.title = "改名后的标题 renamed"
        runtime.persist(s, loaded)
    row = instance(example, iid)
    assert (row.title, row.revision) == ("改名后的标题 renamed", revision + 1)


def _warm_entry(iid):
    return runtime._WARM._entries.get(iid)


def test_a_committed_workflow_is_reused_only_at_its_exact_revision_and_state(example, users):
    iid = start_review(example, users["zhang"])
    entry = _warm_entry(iid)
    row = instance(example, iid)
    assert entry is not None and (entry[0], entry[1]) == (row.revision, row.state)
    submit(example, iid, users["zhang"])  # takes it, and offers the next one
    row = instance(example, iid)
    assert _warm_entry(iid)[:2] == (row.revision, row.state)
    task_id = only_task(example, iid).task_id
    # A change made elsewhere (suspend, resume) moves the row on; the held workflow is now stale.
    with example.sessions.begin() as s:
        runtime.suspend(s, iid, "check", users["zhao"])
    with example.sessions.begin() as s:
        runtime.resume(s, iid, "checked", users["zhao"])
    stale = _warm_entry(iid)
    assert stale[0] < instance(example, iid).revision
    with example.sessions.begin() as s:
        runtime.complete_task(s, task_id, {"decision": "approve"}, users["li"])
    assert instance(example, iid).status == "completed"
    assert _warm_entry(iid) is None or _warm_entry(iid)[3] is not stale[3]


def test_a_rolled_back_completion_is_never_reused(example, users):
    iid = start_review(example, users["zhang"])
    committed = _warm_entry(iid)
    task_id = only_task(example, iid).task_id

    class Abort(Exception):
        pass

    with pytest.raises(Abort), example.sessions.begin() as s:
        runtime.complete_task(s, task_id, SUBMISSION, users["zhang"])
        raise Abort
    assert _warm_entry(iid) is None  # taken by the failed attempt, not given back
    assert _warm_entry(iid) is not committed
    with example.sessions() as s:  # a session that ends without commit offers nothing either
        runtime.complete_task(s, task_id, SUBMISSION, users["zhang"])
    assert _warm_entry(iid) is None
    assert only_task(example, iid).element_id == "submit_documents"
    submit(example, iid, users["zhang"])
    assert only_task(example, iid).element_id == "review_documents"
    assert actions(example, iid) == ["instance.start", "task.complete"]


def test_a_released_savepoint_is_not_yet_a_commit(example, users):
    iid = start_review(example, users["zhang"])
    task_id = only_task(example, iid).task_id
    with example.sessions() as s:
        s.begin()
        with s.begin_nested():
            runtime.complete_task(s, task_id, SUBMISSION, users["zhang"])
        assert _warm_entry(iid) is None
        s.rollback()
    assert _warm_entry(iid) is None
    assert only_task(example, iid).element_id == "submit_documents"


def test_reuse_gives_the_same_results_as_restoring_every_time(ctx):
    """The bench process run with and without reuse: the same data in every task, in the same order."""
    from SpiffWorkflow.util.task import TaskState

    from engine import bench

    bench.prepare(ctx)

    def run() -> list:
        bench.ggzy_round(ctx)
        with ctx.sessions() as s:
            iid = s.execute(__import__("sqlalchemy").text("select max(id) from instances")).scalar()
            workflow = runtime.load(s, iid).workflow
        done = workflow.get_tasks(state=TaskState.COMPLETED)
        return [(t.task_spec.name, list(t.data.items()), [type(v) for v in t.data.values()]) for t in done]

    reused = run()
    with runtime.restoring_every_time():
        restored = run()
    assert len(reused) > 20 and reused == restored


def test_only_workflows_that_restore_identically_are_reusable(example, users):
    from engine.bundles import bundle_for
    from engine.deploy import latest_process

    with example.sessions() as s:
        bundle = bundle_for(s, latest_process(s, "document_review").id)
    from SpiffWorkflow.bpmn import BpmnWorkflow

    def fresh():
        workflow = BpmnWorkflow(bundle.spec, bundle.subprocess_specs, script_engine=bundle.script_engine)
        workflow.do_engine_steps()
        return workflow, workflow.get_tasks(state=__import__("SpiffWorkflow").TaskState.READY, manual=True)[0]

    workflow, task = fresh()
    task.set_data(amount=Decimal("1.50"), items=["a", "b"], when=datetime.fromisoformat("2026-10-01T08:00+08:00"))
    assert store.reusable(workflow)
    for bad in ({"pair": (1, 2)}, {"nested": [{"a": 1}]}, {"typed": {"typename": "Decimal", "value": "1"}},
                {"nan": float("nan")}, {"object": object()}):
        workflow, task = fresh()
        task.set_data(**bad)
        assert not store.reusable(workflow), bad
    workflow, task = fresh()
    shared = ["x"]
    task.set_data(a=shared, b=shared)  # one list under two keys: a restore gives two lists
    assert not store.reusable(workflow)
    workflow, task = fresh()
    task.parent.data["flag"] = 1
    task.data["flag"] = True  # equal to the parent's 1, so a restore would give 1
    assert not store.reusable(workflow)


def test_a_completion_takes_eight_statements(example, users):
    """Open task and instance, task log, three for the audit chain, the instance, two for the inbox."""
    from sqlalchemy import event

    iid = start_review(example, users["zhang"])
    task_id = only_task(example, iid).task_id
    seen: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        seen.append(statement.split()[0].upper())

    event.listen(example.engine, "before_cursor_execute", count)
    try:
        with example.sessions.begin() as s:
            s.connection()  # the transaction's BEGIN is not the completion's
            seen.clear()
            runtime.complete_task(s, task_id, SUBMISSION, users["zhang"])
            statements = list(seen)
    finally:
        event.remove(example.engine, "before_cursor_execute", count)
    assert statements == ["SELECT", "INSERT", "SELECT", "INSERT", "UPDATE", "UPDATE", "DELETE", "INSERT"], statements
