"""The inbox (engine.worklist): tabs, scope, filters, order, pages, counts; claim, release, reassign and their audit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import count

import pytest
from conftest import ROOT, deploy_paths
from helpers import SUBMISSION, actions, only_task
from sqlalchemy import select

from engine import clock, runtime, worklist
from engine.actors import Actor, add_user, load_actor
from engine.errors import Conflict, EngineError, InvalidState, NotFound, PermissionDenied
from engine.models import AuditEvent, InboxTask, Instance
from engine.orgs import add_organisation
from engine.worklist import Filters

COMPANY_USCC = "91350100M000100Y43"
ESCALATE = {"decision": "escalate", "comments": "疑似围标，提交监管"}
# (username, roles, organisation key, lead)
PEOPLE = [
    ("a1", ["staff"], "centre_a", False), ("a2", ["staff"], "centre_a", False), ("lead_a", ["staff"], "centre_a", True),
    ("a_reg", ["regulator"], "centre_a", False), ("b1", ["staff"], "centre_b", False),
    ("lead_b", ["staff"], "centre_b", True), ("reg1", ["regulator"], "dept_1", False),
    ("reg2", ["regulator"], "dept_2", False), ("tend", ["tenderer"], "company", False),
    ("bidder1", ["bidder"], None, False), ("bidder2", ["bidder"], None, False), ("expert1", ["expert"], None, False),
    ("admin", ["admin"], None, False), ("auditor", ["auditor"], None, False),
]
_ids = count(1)


@dataclass
class World:
    """Organisations and actors of the inbox tests."""

    orgs: dict[str, int]
    actors: dict[str, Actor]


def build_world(ctx, logins: tuple[str, ...] = ()) -> World:
    """Create two centres, two departments, a company and one user per PEOPLE line; ``logins`` get passwords."""
    with ctx.sessions.begin() as s:
        orgs = {
            "centre_a": add_organisation(s, "centre-a", "张掖市公共资源交易中心", "centre", level="city").id,
            "centre_b": add_organisation(s, "centre-b", "临泽县公共资源交易分中心", "centre", level="county").id,
            "dept_1": add_organisation(s, "dept-1", "张掖市住房和城乡建设局", "department").id,
            "dept_2": add_organisation(s, "dept-2", "张掖市交通运输局", "department").id,
            "company": add_organisation(s, "company", "张掖市城市建设投资有限公司", "company", uscc=COMPANY_USCC).id,
        }
        for name, roles, org, lead in PEOPLE:
            add_user(s, name, roles, password="secret-" + name if name in logins else None, display_name=f"{name} 同志",
                     organisation_id=orgs[org] if org else None, lead=lead)
        return World(orgs, {name: load_actor(s, name) for name, *_ in PEOPLE})


def start(ctx, world: World, *, centre="centre_a", dept="dept_1", submit=True, escalate=False) -> int:
    """Start document_review for the company; submit (staff review task) and escalate (regulator task)."""
    with ctx.sessions.begin() as s:
        iid = runtime.start_instance(s, "document_review", {}, world.actors["tend"], centre_id=world.orgs[centre],
                                     department_id=world.orgs[dept], tenderer_id=world.orgs["company"],
                                     category="construction", title=f"道路改造工程 {centre}").id
    if submit:
        with ctx.sessions.begin() as s:
            runtime.complete_task(s, only_task(ctx, iid).task_id, SUBMISSION, world.actors["tend"])
    if escalate:
        with ctx.sessions.begin() as s:
            runtime.complete_task(s, only_task(ctx, iid).task_id, ESCALATE, load_actor(s, _staff_of(centre)))
    return iid


def _staff_of(centre: str) -> str:
    return "a1" if centre == "centre_a" else "b1"


def make_task(session, instance_id: int, **overrides) -> InboxTask:
    """Add an inbox row to an instance (staff lane of its centre unless overridden)."""
    n = next(_ids)
    instance = session.get(Instance, instance_id)
    values = {"centre_id": instance.centre_id, "department_id": instance.department_id,
              "tenderer_id": instance.tenderer_id, "task_id": f"00000000-0000-0000-0000-{n:012d}",
              "instance_id": instance_id, "element_id": f"step_{n}",
              "title": f"第 {n} 步", "role": "staff", "process_key": "document_review", "category": "construction",
              "instance_title": "测试事项", "created_at": clock.now(), **overrides}
    row = InboxTask(**values)
    session.add(row)
    session.flush()
    return row


def deploy_review(ctx):
    """Deploy the example document_review process with just its own decision and forms."""
    forms = ("submit_documents", "review_documents", "handle_overdue_review", "regulator_filing")
    deploy_paths(ctx, ROOT / "rules" / "review_level.dmn", *(ROOT / "forms" / f"{f}.json" for f in forms),
                 ROOT / "bpmn" / "document_review.bpmn")
    return ctx


@pytest.fixture
def review(ctx):
    return deploy_review(ctx)


@pytest.fixture
def world(review) -> World:
    return build_world(review)


def listed(ctx, actor, tab, **kwargs) -> list[str]:
    with ctx.sessions() as s:
        return [t.task_id for t in worklist.list_tasks(s, actor, tab=tab, **kwargs).items]


def task_of(ctx, iid) -> str:
    return only_task(ctx, iid).task_id


def do(ctx, fn, *args):
    with ctx.sessions.begin() as s:
        return fn(s, *args)


# --- tabs and scope -----------------------------------------------------------------------------------------


def test_staff_see_their_centres_role_tasks_not_another_centres(review, world):
    a, b = task_of(review, start(review, world)), task_of(review, start(review, world, centre="centre_b"))
    assert listed(review, world.actors["a1"], "roles") == [a]
    assert listed(review, world.actors["b1"], "roles") == [b]
    assert listed(review, world.actors["a1"], "mine") == []
    assert listed(review, world.actors["admin"], "roles") == []  # admins hold no staff lane
    assert listed(review, world.actors["reg1"], "roles") == []


def test_regulators_see_their_departments_tasks(review, world):
    first = start(review, world, dept="dept_1", escalate=True)
    one, two = task_of(review, first), task_of(review, start(review, world, dept="dept_2", escalate=True))
    assert only_task(review, first).role == "regulator"
    assert listed(review, world.actors["reg1"], "roles") == [one]
    assert listed(review, world.actors["reg2"], "roles") == [two]
    assert listed(review, world.actors["a1"], "roles") == []


def test_tenderers_see_their_own_submissions(review, world):
    iid = start(review, world, submit=False)
    assert listed(review, world.actors["tend"], "roles") == [task_of(review, iid)]


def test_bidders_see_only_tasks_assigned_to_them(review, world):
    iid = start(review, world)
    with review.sessions.begin() as s:
        mine = make_task(s, iid, role="bidder", assignee_id=world.actors["bidder1"].user_id).task_id
        make_task(s, iid, role="bidder", assignee_id=world.actors["bidder2"].user_id)
        make_task(s, iid, role="bidder")
    assert listed(review, world.actors["bidder1"], "mine") == [mine]
    assert listed(review, world.actors["bidder1"], "roles") == []


def test_platform_level_tasks_reach_every_centre(review, world):
    iid = start(review, world)
    with review.sessions.begin() as s:
        shared = make_task(s, iid, centre_id=None).task_id
    assert shared in listed(review, world.actors["a1"], "roles")
    assert listed(review, world.actors["b1"], "roles") == [shared]


def test_unknown_tab_is_a_clear_error(review, world):
    with review.sessions() as s, pytest.raises(EngineError, match="unknown inbox tab 'all'; tabs are mine, roles"):
        worklist.list_tasks(s, world.actors["a1"], tab="all")


# --- order, filters, pages, counts ------------------------------------------------------------------------------


def _rows(ctx, iid, specs) -> list[str]:
    with ctx.sessions.begin() as s:
        return [make_task(s, iid, **spec).task_id for spec in specs]


def test_sorted_by_due_time_undated_last_then_arrival_then_id(review, world):
    iid = start(review, world, submit=False)
    now = clock.now()
    late, soon, tie_old, tie_new, undated_old, undated_new = _rows(review, iid, [
        {"due_at": now + timedelta(days=9)}, {"due_at": now + timedelta(days=1)},
        {"due_at": now + timedelta(days=3), "created_at": now - timedelta(hours=2)},
        {"due_at": now + timedelta(days=3), "created_at": now - timedelta(hours=1)},
        {"created_at": now - timedelta(days=1)}, {"created_at": now},
    ])
    same_a, same_b = sorted(_rows(review, iid, [{"due_at": now + timedelta(days=5), "created_at": now}] * 2))
    assert listed(review, world.actors["a1"], "roles") == [
        soon, tie_old, tie_new, same_a, same_b, late, undated_old, undated_new]


def test_pages_run_on_from_dated_into_undated_tasks(review, world):
    iid = start(review, world, submit=False)
    now = clock.now()
    dated = _rows(review, iid, [{"due_at": now + timedelta(days=d)} for d in (1, 2)])
    undated = _rows(review, iid, [{"created_at": now + timedelta(minutes=m)} for m in range(5)])
    actor = world.actors["a1"]
    with review.sessions() as s:
        pages = [worklist.list_tasks(s, actor, tab="roles", page=p, per_page=3) for p in (1, 2, 3, 4)]
    assert [[t.task_id for t in p.items] for p in pages] == [dated + undated[:1], undated[1:4], undated[4:], []]
    assert [(p.total, p.pages, p.exact) for p in pages] == [(7, 3, True)] * 4
    assert (pages[0].has_prev, pages[0].has_next, pages[2].has_next) == (False, True, False)


def test_page_arguments_are_checked(review, world):
    with review.sessions() as s:
        with pytest.raises(EngineError, match="page must be 1 or more, not 0"):
            worklist.list_tasks(s, world.actors["a1"], tab="roles", page=0)
        with pytest.raises(EngineError, match="per_page must be between 1 and 200, not 500"):
            worklist.list_tasks(s, world.actors["a1"], tab="roles", per_page=500)
    with pytest.raises(EngineError, match="due_within_days must be between 0 and 366, not 400"):
        Filters(due_within_days=400)


def test_filters(review, world, fixed_clock):
    iid = start(review, world, submit=False)
    now = clock.now()
    overdue, near, later, other_kind, other_process, shared = _rows(review, iid, [
        {"due_at": now - timedelta(hours=1)}, {"due_at": now + timedelta(days=2)},
        {"due_at": now + timedelta(days=20)}, {"category": "procurement"}, {"process_key": "land_auction"},
        {"centre_id": None, "due_at": now + timedelta(days=40)},
    ])
    actor = world.actors["a1"]

    def roles(**f):
        return set(listed(review, actor, "roles", filters=Filters(**f)))

    assert roles(overdue=True) == {overdue}
    assert roles(due_within_days=2) == {overdue, near}
    assert roles(due_within_days=0) == {overdue}
    assert roles(category="procurement") == {other_kind}
    assert roles(process_key="land_auction") == {other_process}
    assert roles(centre_id=world.orgs["centre_a"]) == {overdue, near, later, other_kind, other_process}
    assert roles(category="construction", due_within_days=30) == {overdue, near, later}
    fixed_clock.advance(days=3)
    assert roles(overdue=True) == {overdue, near}
    assert shared in roles()


def test_tab_counts_and_overdue(review, world, fixed_clock):
    for _ in range(3):
        start(review, world)
    start(review, world, centre="centre_b")
    a1 = world.actors["a1"]
    first = listed(review, a1, "roles")[0]
    do(review, worklist.claim, first, a1)
    with review.sessions() as s:
        assert worklist.tab_counts(s, a1) == {"mine": 1, "roles": 2, "overdue": 0}
    fixed_clock.advance(days=14)  # past the 5 working days (24:00 on 2026-10-12)
    with review.sessions() as s:
        assert worklist.tab_counts(s, a1) == {"mine": 1, "roles": 2, "overdue": 3}
        assert worklist.tab_counts(s, a1, Filters(category="procurement")) == {"mine": 0, "roles": 0, "overdue": 0}
        assert worklist.tab_counts(s, world.actors["b1"]) == {"mine": 0, "roles": 1, "overdue": 1}


def test_counts_stop_at_the_cap(review, world, monkeypatch):
    monkeypatch.setattr(worklist, "COUNT_CAP", 5)
    iid = start(review, world, submit=False)
    rows = _rows(review, iid, [{"due_at": clock.now() + timedelta(days=d)} for d in range(8)])
    actor = world.actors["a1"]
    with review.sessions() as s:
        assert worklist.tab_counts(s, actor)["roles"] == 6  # above the cap: "more than 5"
        first = worklist.list_tasks(s, actor, tab="roles", per_page=2)
        assert (first.total, first.pages, first.exact, first.has_next) == (5, 3, False, True)
        assert worklist.list_tasks(s, actor, tab="roles", per_page=2, count_hint=6).total == 5
        third = worklist.list_tasks(s, actor, tab="roles", page=3, per_page=2)
        assert [t.task_id for t in third.items] == rows[4:6] and third.has_next
        last = worklist.list_tasks(s, actor, tab="roles", page=4, per_page=2)
        assert [t.task_id for t in last.items] == rows[6:8]
        assert (last.total, last.exact, last.has_next) == (8, True, False)


# --- claim -------------------------------------------------------------------------------------------------------


def _payload(ctx, action: str) -> dict:
    with ctx.sessions() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq.desc())).first()
        return {"actor": event.actor, **json.loads(event.payload)}


def test_claim_moves_the_task_to_mine_and_is_audited(review, world):
    iid = start(review, world)
    task = task_of(review, iid)
    a1, a2 = world.actors["a1"], world.actors["a2"]
    do(review, worklist.claim, task, a1)
    assert listed(review, a1, "mine") == [task] and listed(review, a1, "roles") == []
    assert listed(review, a2, "roles") == []
    assert actions(review, iid)[-1] == "task.claim"
    assert _payload(review, "task.claim") == {"actor": "a1", "task_id": task, "element": "review_documents",
                                                "role": "staff"}
    do(review, worklist.claim, task, a1)  # claiming one's own task again changes nothing
    assert actions(review, iid).count("task.claim") == 1


def test_claiming_a_claimed_task_names_its_holder(review, world):
    task = task_of(review, start(review, world))
    do(review, worklist.claim, task, world.actors["a1"])
    with pytest.raises(Conflict, match=r"task review_documents \(审查文件 Review documents\) is already claimed "
                                       r"by a1 同志 \(a1\)"):
        do(review, worklist.claim, task, world.actors["a2"])


@pytest.mark.parametrize(("who", "reason"), [
    ("b1", "belongs to another organisation's work"),
    ("reg1", "does not hold role 'staff'"),
    ("auditor", "is an auditor and may only read"),
    ("tend", "does not hold role 'staff'"),
])
def test_claim_needs_the_role_and_the_scope(review, world, who, reason):
    iid = start(review, world)
    with pytest.raises(PermissionDenied, match=reason):
        do(review, worklist.claim, task_of(review, iid), world.actors[who])
    assert only_task(review, iid).assignee_id is None


def test_personal_tasks_are_not_claimed(review, world):
    iid = start(review, world)
    with review.sessions.begin() as s:
        open_bid = make_task(s, iid, role="bidder").task_id
    with pytest.raises(PermissionDenied, match="is not assigned to bidder1"):
        do(review, worklist.claim, open_bid, world.actors["bidder1"])


def test_claim_of_a_completed_or_unknown_task(review, world):
    iid = start(review, world, submit=False)
    task = task_of(review, iid)
    with review.sessions.begin() as s:
        runtime.complete_task(s, task, SUBMISSION, world.actors["tend"])
    with pytest.raises(Conflict, match=f"task {task} was already completed by tend"):
        do(review, worklist.claim, task, world.actors["tend"])
    with pytest.raises(NotFound, match="no open task nope"):
        do(review, worklist.claim, "nope", world.actors["a1"])


# --- unclaim -----------------------------------------------------------------------------------------------------


def _claimed(ctx, world, by="a1", **start_args) -> str:
    task = task_of(ctx, start(ctx, world, **start_args))
    do(ctx, worklist.claim, task, world.actors[by])
    return task


def test_the_holder_releases_a_task_back_to_the_role(review, world):
    task = _claimed(review, world)
    do(review, worklist.unclaim, task, world.actors["a1"])
    assert listed(review, world.actors["a2"], "roles") == [task]
    assert _payload(review, "task.unclaim") == {"actor": "a1", "task_id": task, "element": "review_documents",
                                                  "role": "staff", "from": "a1"}


@pytest.mark.parametrize("who", ["lead_a", "admin"])
def test_a_lead_or_admin_releases_someone_elses_task(review, world, who):
    task = _claimed(review, world)
    do(review, worklist.unclaim, task, world.actors[who])
    assert _payload(review, "task.unclaim")["actor"] == who
    assert listed(review, world.actors["a2"], "roles") == [task]


@pytest.mark.parametrize(("who", "error", "reason"), [
    ("a2", PermissionDenied, "only the task's holder, a staff lead or an admin may release task review_documents"),
    ("lead_b", PermissionDenied, "belongs to another organisation's work"),
    ("reg1", PermissionDenied, "reg1 is not a lead"),
])
def test_others_may_not_release_a_task(review, world, who, error, reason):
    task = _claimed(review, world)
    with pytest.raises(error, match=reason):
        do(review, worklist.unclaim, task, world.actors[who])
    assert listed(review, world.actors["a1"], "mine") == [task]


def test_releasing_an_unclaimed_or_personal_task(review, world):
    iid = start(review, world)
    with pytest.raises(Conflict, match="is not claimed by anyone"):
        do(review, worklist.unclaim, task_of(review, iid), world.actors["a1"])
    with review.sessions.begin() as s:
        expert_step = make_task(s, iid, role="expert", assignee_id=world.actors["expert1"].user_id).task_id
    with pytest.raises(InvalidState, match="in lane expert is assigned to one person and cannot be released"):
        do(review, worklist.unclaim, expert_step, world.actors["expert1"])


# --- reassign ----------------------------------------------------------------------------------------------------


def test_a_lead_reassigns_within_the_centre(review, world):
    iid = start(review, world)
    task = task_of(review, iid)
    do(review, worklist.reassign, task, "a2", world.actors["lead_a"])
    assert listed(review, world.actors["a2"], "mine") == [task]
    assert _payload(review, "task.reassign") == {"actor": "lead_a", "task_id": task, "element": "review_documents",
                                                   "role": "staff", "from": None, "to": "a2"}
    do(review, worklist.reassign, task, "a1", world.actors["admin"])
    assert _payload(review, "task.reassign")["from"] == "a2"
    assert actions(review, iid)[-2:] == ["task.reassign", "task.reassign"]


@pytest.mark.parametrize(("who", "to", "error", "reason"), [
    ("a1", "a2", PermissionDenied, "only a staff lead or an admin may reassign task review_documents .*; a1 is not"),
    ("lead_a", "b1", EngineError, "cannot reassign task .* to b1: b1 is not in lead_a's organisation"),
    ("lead_a", "a_reg", EngineError, "cannot reassign task .* to a_reg: a_reg does not hold role 'staff'"),
    ("lead_a", "ghost", NotFound, "no active user 'ghost'"),
    ("lead_b", "b1", PermissionDenied, "belongs to another organisation's work"),
    ("admin", "b1", EngineError, "cannot reassign task .* to b1: task review_documents belongs to another"),
    ("admin", "auditor", EngineError, "auditor is an auditor and may only read"),
])
def test_reassign_rules(review, world, who, to, error, reason):
    iid = start(review, world)
    with pytest.raises(error, match=reason):
        do(review, worklist.reassign, task_of(review, iid), to, world.actors[who])
    assert only_task(review, iid).assignee_id is None


def test_reassign_targets_are_colleagues_holding_the_role(review, world):
    task = _claimed(review, world)
    with review.sessions() as s:
        rows = list(s.scalars(select(InboxTask)))
        targets = worklist.reassign_targets(s, world.actors["lead_a"], rows)
        assert {k: [u.username for u in v] for k, v in targets.items()} == {task: ["a2", "lead_a"]}
        assert worklist.reassign_targets(s, world.actors["a1"], rows) == {}
        assert worklist.reassign_targets(s, world.actors["lead_b"], rows) == {}
        assert [u.username for u in worklist.reassign_targets(s, world.actors["admin"], rows)[task]] == [
            "a2", "lead_a"]
        assert worklist.is_lead(s, world.actors["lead_a"]) and not worklist.is_lead(s, world.actors["a1"])


def test_every_action_leaves_nothing_uncommitted_by_itself(review, world):
    iid = start(review, world)
    with review.sessions() as s:
        worklist.claim(s, task_of(review, iid), world.actors["a1"])
        s.rollback()
    assert only_task(review, iid).assignee_id is None


def test_a_task_is_overdue_from_its_due_instant_on(review, world, fixed_clock):
    iid = start(review, world)
    assert only_task(review, iid).due_at == datetime.fromisoformat("2026-10-13T00:00:00+08:00")
    fixed_clock.set(datetime.fromisoformat("2026-10-12T23:59:59+08:00"))
    with review.sessions() as s:
        assert worklist.tab_counts(s, world.actors["a1"])["overdue"] == 0
    fixed_clock.advance(seconds=1)
    with review.sessions() as s:
        assert worklist.tab_counts(s, world.actors["a1"])["overdue"] == 1
