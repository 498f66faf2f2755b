"""The construction procedure wired to the real services: bond refunds, the archive seal, the expert draw.

Each test drives ``construction_tender`` (the shipped diagram, forms and rules) with the helpers of
``test_construction_tender`` on its fixed clock, with real sealed bids and bonds (``bidworld``).
"""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal
from uuid import UUID

import pytest
from conftest import ROOT
from lxml import etree
from sqlalchemy import func, select
from test_construction_tender import (  # world is a fixture: the tests take it as a parameter
    COMMITTEE,
    CONTRACT,
    Run,
    draw_committee,
    evaluate,
    evaluation,
    evidence,
    open_bids,
    submit_bids,
    to_award,
    to_bidding,
    to_evaluation,
    world,  # noqa: F401
)

from engine import bond_refunds, draw, instructions, procedure, runtime
from engine.actors import SYSTEM
from engine.archive import ArchiveBuild
from engine.errors import FormValidationError
from engine.models import AuditEvent, InboxTask, User
from engine.xmlsafe import NS


def task_of(run: Run, element: str):
    """The open task's SpiffWorkflow task (for its instructions)."""
    row = run.open()[element]
    with run.ctx.sessions() as s:
        return runtime.load(s, run.id).workflow.get_task_from_id(UUID(row.task_id))


def to_refunds(run: Run) -> None:
    to_bidding(run)
    to_evaluation(run)
    to_award(run)
    run.at("2026-11-02T10:00:00+08:00")
    run.do("sign_contract", {**CONTRACT, "contract_document": run.world.pdf})
    run.at("2026-11-03T10:00:00+08:00")
    run.do("report_to_department", {"tender_report": run.world.pdf})


def test_refunds_are_computed_by_the_service_and_staff_confirm_they_were_sent(ctx, fixed_clock, world):  # noqa: F811
    run = Run(ctx, fixed_clock, world)
    to_refunds(run)
    assert set(run.open()) == {"send_bond_refunds"}
    with ctx.sessions() as s:
        made = bond_refunds.refunds_of(s, world.project_id)
    assert len(made) == 3 and {r.status for r in made} == {"pending"}
    html = instructions.render_task(task_of(run, "send_bond_refunds")).html
    assert f'href="/projects/{world.project_id}/bonds"' in html
    assert "<strong>3</strong>" in html and "480000.00" in html and "69.99" in html
    # the confirmation is a confirmation: unchecked is refused, nothing is written, the task stays open
    task = run.open()["send_bond_refunds"]
    for bad in ({}, {"refunds_sent": False}, {"refunds_sent": True, "bond_refunds": []}):
        with ctx.sessions.begin() as s, pytest.raises(FormValidationError):
            runtime.complete_task(s, task.task_id, bad, world.actors["stf"])
    assert run.open()["send_bond_refunds"].task_id == task.task_id and run.instance().status == "running"
    run.do("send_bond_refunds", {"refunds_sent": True, "refund_remarks": "已发送，银行均已受理。"})
    assert set(run.open()) == {"witness_archive"}
    with ctx.sessions() as s:  # the step computes once: no second set of instructions
        assert s.execute(select(func.count()).select_from(bond_refunds.RefundInstruction)).scalar_one() == 3
        assert s.execute(select(func.count()).select_from(InboxTask)
                         .where(InboxTask.element_id == "send_bond_refunds")).scalar_one() == 0
    assert Decimal(run.data()["refund_instructions"]["principal"]) == Decimal("480000.00")


def test_no_element_of_the_diagram_shares_an_id_with_a_service_operator():
    """SpiffWorkflow indexes every element by id, operators included: a shared id would hijack the flows."""
    root = etree.parse(str(ROOT / "bpmn" / "construction_tender.bpmn")).getroot()
    operators = [o.get("id") for o in root.iterfind(".//spiffworkflow:serviceTaskOperator", NS)]
    assert {"refund_bonds", "committee_of_draw", "evaluation_state", "evaluation_report",
            "archive_project"} <= set(operators)
    elements = [e.get("id") for e in root.iter() if e.get("id")
                and etree.QName(e).localname not in ("serviceTaskOperator", "parameter")]
    assert len(elements) == len(set(elements))
    assert set(operators) & set(elements) == set()


def to_committee(run: Run) -> None:
    """Bidding, 3 bids opened: the staff task 专家抽取 is open."""
    to_bidding(run)
    assert run.sweep("2026-10-09T17:00:01+08:00") == 1
    open_bids(run, submit_bids(run, 3), "2026-10-20T09:30:01+08:00")
    run.at("2026-10-20T11:00:00+08:00")
    assert set(run.open()) == {"record_committee"}


def committee_events(run: Run) -> int:
    with run.ctx.sessions() as s:
        return s.execute(select(func.count()).select_from(AuditEvent)
                         .where(AuditEvent.action == "procedure.committee")).scalar_one()


def back_with(run: Run, problem: str) -> None:
    """Completing 专家抽取 too early brings it straight back with the problem; nothing is recorded."""
    before = run.open()["record_committee"].task_id
    run.do("record_committee", COMMITTEE)
    again = run.open()
    assert set(again) == {"record_committee"} and again["record_committee"].task_id != before
    assert run.instance().status == "running" and committee_events(run) == 0
    assert run.data()["committee"]["ready"] is False and problem in run.data()["committee"]["problem"]
    assert problem in instructions.render_task(task_of(run, "record_committee")).html


def test_the_committee_is_the_projects_confirmed_draw(ctx, fixed_clock, world):  # noqa: F811
    run = Run(ctx, fixed_clock, world)
    with ctx.sessions() as s:
        assert procedure.opening_bidder_ids(s, world.project_id) == []  # no opening yet
    to_committee(run)
    html = instructions.render_task(task_of(run, "record_committee")).html
    assert 'href="/draws/new"' in html and "LZ-2026-0001" in html and "尚不能组建" not in html
    with ctx.sessions() as s:
        bidders = procedure.opening_bidder_ids(s, world.project_id)
    assert bidders == sorted(b.organisation_id for b in run.market.bidders)
    back_with(run, "尚未抽取评标专家")
    wrong = draw_committee(run, excluded=bidders[:2])  # one bidder not avoided (条例 §46)
    back_with(run, f"抽取 #{wrong} 未回避本轮开标的全部投标人")
    pending = draw_committee(run, confirm=False)
    back_with(run, f"抽取 #{pending} 还有 4 名专家未确认")
    with ctx.sessions.begin() as s:
        seats = draw.seats_of(s, pending)
        for seat in seats[:-1]:
            draw.respond(s, seat.id, SYSTEM, accept=True)
    back_with(run, f"抽取 #{pending} 还有 1 名专家未确认")
    with ctx.sessions.begin() as s:
        draw.respond(s, seats[-1].id, SYSTEM, accept=True)
    run.do("record_committee", {"committee_drawn": True, "committee_remarks": "4 名专家均已确认。"})
    assert set(run.open()) == {"evaluate_bids"}
    committee = run.data()["committee"]
    assert (committee["ready"], committee["draw_id"], committee["experts"], committee["tenderer_reps"],
            committee["total"]) == (True, pending, 4, 1, 5)  # ct_committee: works under 5000万: 3 A01 + 1 D01
    assert committee["excluded_organisation_ids"] == bidders
    assert sorted(m["class_code"] for m in committee["members"]) == ["A01", "A01", "A01", "D01"]
    with ctx.sessions() as s:
        ids = {seat.expert_id for seat in draw.seats_of(s, pending)}
        names = set(s.execute(select(User.display_name).where(User.id.in_(ids))).scalars())
        event = s.execute(select(AuditEvent).where(AuditEvent.action == "procedure.committee")).scalar_one()
    assert {m["expert_id"] for m in committee["members"]} == ids
    assert not any(name in repr(committee) for name in names)  # sealed until the evaluation (法 §37)
    assert json.loads(event.payload)["draw_id"] == pending and event.instance_id == run.id


def test_a_confirmation_form_is_required(ctx, fixed_clock, world):  # noqa: F811
    run = Run(ctx, fixed_clock, world)
    to_committee(run)
    task = run.open()["record_committee"]
    for bad in ({}, {"committee_drawn": False}, {"committee_members": [{"name": "手填", "member_kind": "expert"}]}):
        with ctx.sessions.begin() as s, pytest.raises(FormValidationError):
            runtime.complete_task(s, task.task_id, bad, world.actors["stf"])
    assert run.open()["record_committee"].task_id == task.task_id and "committee" not in run.data()


def test_the_candidates_are_the_signed_reports(ctx, fixed_clock, world):  # noqa: F811
    run = Run(ctx, fixed_clock, world)
    to_committee(run)
    draw_committee(run)
    run.do("record_committee", COMMITTEE)
    assert set(run.open()) == {"evaluate_bids"} and run.open()["evaluate_bids"].role == "staff"
    html = instructions.render_task(task_of(run, "evaluate_bids")).html
    assert 'href="/evaluation"' in html and "尚不能提交" not in html
    before = run.open()["evaluate_bids"].task_id
    run.do("evaluate_bids", evaluation(world))  # nothing evaluated yet: back, with the reason
    assert set(run.open()) == {"evaluate_bids"} and run.open()["evaluate_bids"].task_id != before
    assert "评标尚未开始" in run.data()["evaluation_state"]["problem"] and "candidates" not in run.data()
    assert "评标尚未开始" in instructions.render_task(task_of(run, "evaluate_bids")).html
    with ctx.sessions() as s:
        handed = s.execute(select(func.count()).select_from(AuditEvent)
                           .where(AuditEvent.action == "evaluation.handover")).scalar_one()
    assert handed == 0
    evaluate(run)
    run.at("2026-10-20T16:00:00+08:00")
    run.do("evaluate_bids", evaluation(world))
    assert set(run.open()) == {"prepare_publicity"}
    data = run.data()
    assert data["evaluation_state"] == {"ready": True, "problem": None}
    assert data["evaluation_reported_at"] == "2026-10-20T16:00:00+08:00"
    with ctx.sessions() as s:
        from engine import evaluation as ev

        report = ev.report_of(s, ev.of_project(s, world.project_id))
        assert data["candidates"] == report.content["candidates"]
    assert [(c["rank"], c["bidder_uscc"]) for c in data["candidates"]] == [
        (i + 1, b.uscc) for i, b in enumerate(run.market.bidders[:3])]


def test_the_archive_is_sealed_after_staff_file_it(ctx, fixed_clock, world):  # noqa: F811
    run = Run(ctx, fixed_clock, world)
    to_refunds(run)
    run.do("send_bond_refunds", {"refunds_sent": True})
    run.do("witness_archive", {"archive_checklist": {"contract_signed": True, "report_filed": True,
                                                     "bonds_refunded": True},
                               "archive_evidence": evidence(world)})
    html = instructions.render_task(task_of(run, "file_archive")).html
    assert f'href="/projects/{world.project_id}/archive"' in html
    task = run.open()["file_archive"]
    with ctx.sessions.begin() as s, pytest.raises(FormValidationError, match="archive_number"):
        runtime.complete_task(s, task.task_id, {"archive_remarks": "无档案号"}, world.actors["stf"])
    with ctx.sessions() as s:  # refused before anything ran: nothing sealed
        assert s.execute(select(func.count()).select_from(ArchiveBuild)).scalar_one() == 0
    run.at("2026-11-05T10:00:00+08:00")
    run.do("file_archive", {"archive_number": "LZ-2026-0001-DA"})
    assert run.instance().status == "completed" and run.open() == {}
    seal = run.data()["archive_seal"]
    assert seal["sealed_at"] == "2026-11-05T10:00:00+08:00"
    with ctx.sessions() as s:
        (row,) = s.execute(select(ArchiveBuild)).scalars()
        assert (row.kind, row.archive_number, row.project_id, row.built_by) == (
            "seal", "LZ-2026-0001-DA", world.project_id, "stf")
        assert row.id == seal["archive_id"] and row.manifest_sha256 == seal["manifest_sha256"]
        assert hashlib.sha256(row.manifest.encode()).hexdigest() == row.manifest_sha256
        assert '"kind":"instance"' in row.manifest
        event = s.execute(select(AuditEvent).where(AuditEvent.action == "archive.seal")).scalar_one()
        assert event.project_id == world.project_id
