"""Timers: boundary and intermediate timers fire from sweeps, once, on the statutory calendar."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from datetime import datetime

from conftest import FIXTURES, ROOT, deploy_paths
from helpers import SUBMISSION, actions, instance, only_task
from sqlalchemy import func, select, update

from engine import runtime, timers
from engine.actors import SYSTEM
from engine.models import AuditEvent, Instance

START_AT = "2026-09-29T09:00:00+08:00"
DUE = datetime.fromisoformat("2026-10-01T00:00:00+08:00")  # one day after Sep 29, at 24:00
AFTER = datetime.fromisoformat("2026-10-01T00:00:01+08:00")


def start_waiting(ctx, n=1) -> list[int]:
    ids = []
    with ctx.sessions.begin() as s:
        for _ in range(n):
            ids.append(runtime.start_instance(s, "timer_wait", {"start_at": START_AT}, SYSTEM).id)
    return ids


def fires(ctx, iid) -> int:
    with ctx.sessions() as s:
        (task,) = runtime.load(s, iid).workflow.get_tasks(spec_name="after_timer")
        return task.data["fires"]


def test_intermediate_timer_waits_then_fires_once(ctx):
    deploy_paths(ctx, FIXTURES / "timer_wait.bpmn")
    (iid,) = start_waiting(ctx)
    row = instance(ctx, iid)
    assert (row.status, row.next_timer_at) == ("waiting", DUE)
    assert timers.sweep(ctx.sessions, datetime.fromisoformat("2026-09-30T23:59:59+08:00")).fired == 0
    assert timers.sweep(ctx.sessions, AFTER).fired == 1
    assert instance(ctx, iid).status == "running"
    assert only_task(ctx, iid).element_id == "after_timer"
    assert fires(ctx, iid) == 1
    assert timers.sweep(ctx.sessions, AFTER).fired == 0
    assert actions(ctx, iid) == ["instance.start", "timer.fire"]


def test_boundary_timer_on_a_user_task_escalates(example, users):
    with example.sessions.begin() as s:
        iid = runtime.start_instance(s, "document_review", {}, users["zhang"]).id
    with example.sessions.begin() as s:
        runtime.complete_task(s, only_task(example, iid).task_id, SUBMISSION, users["zhang"])
    review = only_task(example, iid)
    assert timers.sweep(example.sessions, datetime.fromisoformat("2026-10-12T23:59:00+08:00")).fired == 0
    result = timers.sweep(example.sessions, datetime.fromisoformat("2026-10-13T00:00:01+08:00"))
    assert result.fired == 1
    overdue = only_task(example, iid)
    assert (overdue.element_id, overdue.role) == ("handle_overdue_review", "regulator")
    assert overdue.task_id != review.task_id


def test_suspended_instances_do_not_fire(ctx):
    deploy_paths(ctx, FIXTURES / "timer_wait.bpmn")
    (iid,) = start_waiting(ctx)
    with ctx.sessions.begin() as s:
        runtime.suspend(s, iid, "emergency correction", SYSTEM)
    assert timers.sweep(ctx.sessions, AFTER).fired == 0
    with ctx.sessions.begin() as s:
        runtime.resume(s, iid, "corrected", SYSTEM)
    assert timers.sweep(ctx.sessions, AFTER).fired == 1


def test_one_broken_instance_does_not_stop_the_sweep(ctx):
    deploy_paths(ctx, FIXTURES / "timer_wait.bpmn")
    ids = start_waiting(ctx, 3)
    with ctx.sessions.begin() as s:
        s.execute(update(Instance).where(Instance.id == ids[1]).values(state="{not json"))
    result = timers.sweep(ctx.sessions, AFTER)
    assert result.fired == 2
    assert [e["instance_id"] for e in result.errors] == [ids[1]]
    assert fires(ctx, ids[0]) == 1 and fires(ctx, ids[2]) == 1


def test_cli_sweep_reports_fired(ctx, config, monkeypatch, capsys):
    from engine.cli import main

    monkeypatch.setenv("GGZY_HOME", str(config.home))
    if config.database_url:
        monkeypatch.setenv("DATABASE_URL", config.database_url)
    deploy_paths(ctx, FIXTURES / "timer_wait.bpmn")
    start_waiting(ctx, 2)
    assert main(["sweep", "--now", AFTER.isoformat(), "--json"]) == 0
    assert '"fired": 2' in capsys.readouterr().out


def test_several_scheduler_processes_fire_each_timer_exactly_once(ctx, config):
    deploy_paths(ctx, FIXTURES / "timer_wait.bpmn")
    ids = start_waiting(ctx, 200)
    env = {**os.environ, "GGZY_HOME": str(config.home), "GGZY_ENV": "test", "GGZY_NOW": AFTER.isoformat()}
    if config.database_url:
        env["DATABASE_URL"] = config.database_url
    command = [sys.executable, "-m", "engine.cli", "scheduler", "--interval", "0.3", "--runs", "6"]
    procs = [subprocess.Popen(command, env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    with ctx.sessions() as s:
        fired = Counter(s.execute(select(AuditEvent.instance_id).where(AuditEvent.action == "timer.fire")).scalars())
        waiting = s.execute(select(func.count()).select_from(Instance).where(Instance.status == "waiting")).scalar()
    assert waiting == 0
    assert set(fired) == set(ids) and set(fired.values()) == {1}
    assert {fires(ctx, iid) for iid in ids[:20]} == {1}
