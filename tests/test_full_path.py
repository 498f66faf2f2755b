"""Issue 6's full path: one construction project from registration to a verified archive, every twist in one run.

One ``construction_tender`` instance (the real BPMN engine, the real database, real signatures) goes from its
registration to the sealed archive, with all the twists the issue lists happening to the same project:

- the expert pool holds experts employed by a bidder, by the tenderer and by the supervising department in the
  plan's classes: the draw excludes them with their reasons and seats none of them;
- a drawn expert declines, the seat is redrawn from the same stream, the committee completes only when every seat
  is confirmed; an auditor re-runs the draw (``draw.replay_draw`` and ``ggzy draw replay``) and gets the same
  committee;
- a bidder objects on the last day of the candidates publicity: the procedure waits for the tenderer's answer
  (the publicity ends meanwhile, the award task does not open) and the answer, within 3 days, does not uphold it;
- the bidder then complains to the supervising department, which accepts and orders the project paused (条例 §62):
  the project's instance is suspended, nothing can be completed, the report's statutory timer falls due and does
  not fire; the complaint is dismissed, its decision published, the project resumed and the timer fires;
- the contract is not signed within 30 days of the award (法 §46): the escalation reaches the regulator's inbox;
- the bond refunds are computed by the diagram and sent to the (simulated) bank over HTTP, signed both ways;
- the archive is sealed by the diagram, then built: ``archive_verify`` passes on the zip and fails on a copy with
  one byte changed.

The dates cross no holiday after the National Day week; each instant is the fixed clock of ``conftest``.
"""

from __future__ import annotations

import json
import shutil
import zipfile
from datetime import date, datetime
from decimal import Decimal

import bidworld
import pytest
from conftest import ROOT, deploy_paths
from sqlalchemy import select
from test_construction_tender import (  # noqa: F401 - world is the fixture
    BIDDERS,
    CONTRACT,
    PUBLICITY,
    Run,
    draw_committee,
    evaluate,
    evaluation,
    evidence,
    open_bids,
    organisation_witness,
    submit_bids,
    to_bidding,
    world,
)

from engine import audit, bank, bond_refunds, bonds, complaints, draw, experts, files, notices, pki, runtime, worklist
from engine.actors import SYSTEM, add_user, load_actor
from engine.archive import ArchiveBuild, archive_path, build_archive
from engine.archive_verify import verify_archive
from engine.banksim import BankSim, serve
from engine.cli import main
from engine.errors import InvalidState
from engine.models import AuditEvent, InboxTask, Instance, Notice, User
from engine.orgs import get_by_code

SH = "+08:00"
TRAINED = date(2025, 3, 1)
# Experts of the plan's classes (A01 房屋建筑工程, D01 工程造价) whose employer is a party: (class, employer, reason).
CONFLICTED = {"fp_bidder_a": ("A01", "bidder-0", "bidder_employee"),
              "fp_bidder_d": ("D01", "bidder-2", "bidder_employee"),
              "fp_tenderer": ("A01", "lz-water", "tenderer_employee"),
              "fp_zjj": ("D01", "dept-zjj", "supervising_department")}
OBJECTION = {"objector_name": BIDDERS[1][0], "objector_uscc": BIDDERS[1][1],
             "objection_content": "第一中标候选人拟派项目经理在其他在建工程中担任项目经理，不符合招标文件要求。"}


def at(instant: str) -> datetime:
    return datetime.fromisoformat(instant + SH)


def actions(ctx, instance_id: int) -> list[str]:
    with ctx.sessions() as s:
        return list(s.execute(select(AuditEvent.action).where(AuditEvent.instance_id == instance_id)
                              .order_by(AuditEvent.seq)).scalars())


def point_cli_at(monkeypatch, config) -> None:
    monkeypatch.setenv("GGZY_HOME", str(config.home))
    if config.database_url:
        monkeypatch.setenv("DATABASE_URL", config.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)


def admit_conflicted_experts(run: Run) -> dict[str, int]:
    """Admit one trained expert of 临泽 per conflict, each employed by a party of the project; return their ids."""
    with run.ctx.sessions.begin() as s:
        return {name: experts.add_expert(s, SYSTEM, username=name, display_name="专家" + name, classes=[code],
                                         region_code="zy-linze", employer_name="", employer_code=employer,
                                         trained_on=TRAINED, password="secret-" + name).user_id
                for name, (code, employer, _) in CONFLICTED.items()}


def seats(ctx, draw_id: int) -> list[draw.DrawSeat]:
    with ctx.sessions() as s:
        return draw.seats_of(s, draw_id)


def respond(ctx, seat: draw.DrawSeat, *, accept: bool, reason: str = "") -> draw.DrawSeat:
    """The drawn expert answers their own seat (logged in as themselves, not as the system)."""
    with ctx.sessions.begin() as s:
        expert = load_actor(s, s.get(User, seat.expert_id).username)
        return draw.respond(s, seat.id, expert, accept=accept, reason=reason)


def file_complaint(run: Run, bidder: bidworld.Bidder) -> complaints.Complaint:
    """The second-ranked bidder complains about the evaluation result after its objection was not upheld."""
    with run.ctx.sessions.begin() as s:
        stored = files.store(s, b"%PDF-1.7\n% objection and answer\n", "异议及答复.pdf", "application/pdf",
                             bidder.actor, config=run.ctx.config)
        return complaints.file_complaint(s, bidder.actor, {
            "project_code": "LZ-2026-0001", "complainant_name": bidder.name, "complainant_contact": "王工 13900000000",
            "matter": "evaluation_result", "knew_on": "2026-10-21", "objection_reference": "2026-10-26 异议",
            "objection_raised_on": "2026-10-26", "objection_answered_on": "2026-10-28",
            "facts": "第一中标候选人拟派项目经理有在建工程，招标人答复异议不成立。",
            "grounds": "《招标投标法实施条例》第五十四条、第六十条。", "claims": "责令招标人重新核查中标候选人资格。",
            "evidence": [{"title": "异议书及招标人答复", "file": files.value_of(stored)}]})


def complete_complaint_task(ctx, complaint_instance: int, element: str, data: dict, actor) -> None:
    with ctx.sessions.begin() as s:
        task = s.execute(select(InboxTask).where(InboxTask.instance_id == complaint_instance,
                                                 InboxTask.element_id == element)).scalar_one()
        runtime.complete_task(s, task.task_id, data, actor)


def regulator_inbox(ctx, actor) -> set[tuple[int, str]]:
    with ctx.sessions() as s:
        page = worklist.list_tasks(s, actor, tab="roles", per_page=200)
        return {(row.instance_id, row.element_id) for row in page.items}


def one_byte_changed(source, target, member: str) -> None:
    """Copy the zip with one byte of ``member``'s content changed (the zip itself stays well-formed)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename == member:
                middle = len(data) // 2
                data = data[:middle] + bytes([data[middle] ^ 0x01]) + data[middle + 1:]
            new.writestr(info, data)


def one_raw_byte_flipped(source, target, member: str) -> None:
    """Copy the zip file with one byte of ``member``'s compressed bytes flipped in place."""
    raw = bytearray(source.read_bytes())
    with zipfile.ZipFile(source) as archive:
        info = archive.getinfo(member)
    name_length = int.from_bytes(raw[info.header_offset + 26:info.header_offset + 28], "little")
    extra_length = int.from_bytes(raw[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    raw[start + info.compress_size // 2] ^= 0xFF
    target.write_bytes(bytes(raw))


def test_one_project_runs_every_twist_from_registration_to_a_verified_archive(
        ctx, fixed_clock, world, config, tmp_path, monkeypatch, capsys):  # noqa: F811
    deploy_paths(ctx, *sorted((ROOT / "forms").glob("cp_*.json")), ROOT / "bpmn" / "complaint.bpmn")
    with ctx.sessions.begin() as s:
        add_user(s, "aud", ["auditor"], password="secret-aud")
        auditor = load_actor(s, "aud")
    reg, ten, stf = world.actors["reg"], world.actors["ten"], world.actors["stf"]

    # ---- registration, acceptance, filing, the tender notice; bids, the no-meeting opening
    run = Run(ctx, fixed_clock, world)
    assert set(run.open()) == {"accept_project"}
    to_bidding(run)
    assert [n.kind for n in run.notices()] == ["tender"]
    assert run.sweep("2026-10-09T17:00:01+08:00") == 1  # the documents sale closes
    bid_ids = submit_bids(run, 3)
    open_bids(run, bid_ids, "2026-10-20T09:30:01+08:00")
    assert set(run.open()) == {"record_committee"}
    market = run.market
    bidder_orgs = [b.organisation_id for b in market.bidders]

    # ---- the draw: conflicted experts of the plan's classes are excluded with their reasons, never seated
    run.at("2026-10-20T10:30:00+08:00")
    conflicted = admit_conflicted_experts(run)
    draw_id = draw_committee(run, confirm=False)
    with ctx.sessions() as s:
        drawn = s.get(draw.Draw, draw_id)
        assert drawn.inputs["excluded_organisation_ids"] == bidder_orgs
        assert drawn.inputs["tenderer_organisation_id"] == world.tenderer_id
        for name, (code, _, reason) in CONFLICTED.items():
            assert drawn.excluded[str(conflicted[name])] == reason, name
            assert conflicted[name] not in drawn.eligible[code], name
        plan_seats = dict(draw.Plan.from_dict(drawn.plan).seats)
        assert plan_seats == {"A01": 3, "D01": 1}
        assert len(drawn.eligible["A01"]) == len(drawn.eligible["D01"]) == 6  # the clean experts of each class
        assert get_by_code(s, "bidder-0").id == bidder_orgs[0]
    first = seats(ctx, draw_id)
    assert len(first) == 4 and {x.status for x in first} == {"pending"}
    assert not {x.expert_id for x in first} & set(conflicted.values())

    # staff record the committee too early: the diagram sends the step back while a seat is unanswered
    run.do("record_committee", {"committee_drawn": True})
    assert set(run.open()) == {"record_committee"}
    problem = run.task_data("record_committee")["committee"]
    assert problem["ready"] is False and "未确认" in problem["problem"]

    # ---- a decline: the seat is redrawn from the same class's stream; then everyone confirms
    declined = first[0]
    replacement = respond(ctx, declined, accept=False, reason="近期承担其他评标任务，时间冲突，申请回避")
    after = seats(ctx, draw_id)
    assert [x.status for x in after] == ["declined", "pending", "pending", "pending", "pending"]
    assert (after[-1].id, after[-1].replaces_id, after[-1].class_code) == (
        replacement.id, declined.id, declined.class_code)
    assert after[-1].expert_id not in {x.expert_id for x in first} | set(conflicted.values())
    with ctx.sessions() as s:
        assert s.get(draw.Draw, draw_id).redraws == [{"class_code": declined.class_code,
                                                      "declined": declined.expert_id}]
    assert [a for a in actions_of_project(ctx, world.project_id) if a.startswith("draw.")][-2:] == [
        "draw.decline", "draw.redraw"]
    for seat in after[1:]:
        respond(ctx, seat, accept=True)
    committee_ids = [x.expert_id for x in seats(ctx, draw_id) if x.status == "confirmed"]
    assert len(committee_ids) == 4 and declined.expert_id not in committee_ids
    run.do("record_committee", {"committee_drawn": True})
    assert set(run.open()) == {"evaluate_bids"}
    stored = run.data()["committee"]
    assert stored["ready"] and stored["draw_id"] == draw_id
    assert sorted(m["expert_id"] for m in stored["members"]) == sorted(committee_ids)
    assert set(stored["excluded_organisation_ids"]) == set(bidder_orgs)

    # ---- an auditor re-runs the draw from its record, in the engine and with `ggzy draw replay`
    with ctx.sessions() as s:
        record = json.loads(json.dumps(draw.draw_record(s, draw_id)))
        view = draw.committee_view(s, draw_id, auditor)
        assert None not in [seat.name for seat in view.seats]  # auditors see the sealed names
    replay = draw.replay_draw(record)
    assert replay.seed_ok and replay.matches
    assert [p.expert_id for p in replay.committee] == committee_ids
    point_cli_at(monkeypatch, config)
    capsys.readouterr()
    assert main(["draw", "replay", str(draw_id), "--json"]) == 0
    replayed = json.loads(capsys.readouterr().out)
    assert replayed["matches"] and replayed["seed_ok"]
    assert [p["expert_id"] for p in replayed["committee"]] == committee_ids

    # ---- the evaluation: the committee scores and signs, the diagram takes the candidates
    evaluate(run)
    run.do("evaluate_bids", evaluation(world))
    assert set(run.open()) == {"prepare_publicity"}
    candidates = run.data()["candidates"]
    assert [(c["rank"], c["bidder_uscc"]) for c in candidates] == [(n + 1, BIDDERS[n][1]) for n in range(3)]

    # ---- the publicity, an objection on its last day: the procedure waits for the tenderer's answer
    run.at("2026-10-21T10:00:00+08:00")
    run.do("prepare_publicity", PUBLICITY)
    assert run.data()["publicity_ends_at"] == "2026-10-27T00:00:00+08:00"
    assert [n.kind for n in run.notices()] == ["tender", "candidates"]
    run.at("2026-10-26T09:00:00+08:00")
    run.do("raise_objection", OBJECTION)  # the bidder lane is personal; the objection is recorded for the bidder
    answer = run.open()["answer_objection"]
    assert (answer.role, answer.due_at) == ("tenderer", at("2026-10-30T00:00:00"))  # 条例 §54: 3 days
    assert run.sweep("2026-10-27T00:00:01+08:00") == 0  # the publicity has ended, but nothing moves on
    assert run.sweep("2026-10-28T08:00:00+08:00") == 0
    assert set(run.open()) == {"answer_objection"}  # the award is not reachable before the answer
    run.at("2026-10-28T09:00:00+08:00")
    assert datetime.fromisoformat("2026-10-28T09:00:00+08:00") < answer.due_at  # answered within the 3 days
    run.do("answer_objection", {"objection_answer": "经核查，该项目经理原任职工程已于2026年9月竣工验收，异议不成立。",
                                "objection_upheld": False})
    assert set(run.open()) == {"confirm_award"}  # answered after the publicity ended: straight to the award
    assert [n.kind for n in run.notices()] == ["tender", "candidates"]  # no new publicity: not upheld

    # ---- the award; the contract (法 §46: 30 days) and the report (法 §47: 15 days) are due
    run.at("2026-10-28T14:00:00+08:00")
    run.do("confirm_award", {"winner_name": BIDDERS[0][0], "winner_uscc": BIDDERS[0][1],
                             "winning_price": BIDDERS[0][2], "award_notice": world.pdf})
    run.do("witness_organisation", organisation_witness(world))
    assert [n.kind for n in run.notices()] == ["tender", "candidates", "result"]
    due = {element: task.due_at for element, task in run.open().items()}
    assert due == {"sign_contract": at("2026-11-28T00:00:00"), "report_to_department": at("2026-11-13T00:00:00")}

    # ---- a complaint to the supervising department, accepted with an order to pause the project (条例 §62)
    run.at("2026-10-29T09:00:00+08:00")
    complaint = file_complaint(run, market.bidders[1])
    assert (complaint.number, complaint.status) == ("LZ-2026-0001-TS01", "filed")
    # 10 days from 10-21 plus the 2 days the objection waited for its answer (条例 §60 ¶2): through 11-02
    assert complaint.filing_deadline == at("2026-11-03T00:00:00")
    assert (complaint.instance_id, "accept_complaint") in regulator_inbox(ctx, reg)
    waiting = {element: task.task_id for element, task in run.open().items()}
    run.at("2026-10-30T10:00:00+08:00")
    complete_complaint_task(ctx, complaint.instance_id, "accept_complaint",
                            {"acceptance": "accept", "order_pause": True,
                             "acceptance_reason": "投诉人为投标人，已先行提出异议，投诉在期限内，材料齐全，予以受理。"},
                            reg)
    paused = run.instance()
    assert paused.status == "suspended" and paused.next_timer_at is None
    assert complaint.number in paused.status_reason and "第六十二条" in paused.status_reason
    with ctx.sessions() as s:
        suspend = s.execute(select(AuditEvent).where(AuditEvent.instance_id == run.id,
                                                     AuditEvent.action == "instance.suspend")).scalar_one()
        assert suspend.actor == "reg"
        row = s.get(complaints.Complaint, complaint.id)
        assert (row.status, row.paused) == ("accepted", True)
    # nothing advances: the project's tasks leave every inbox and cannot be completed, and a statutory timer
    # falling due meanwhile does not fire
    assert run.open() == {}
    with ctx.sessions() as s:
        assert worklist.list_tasks(s, ten, tab="roles").items == []
    for element, task_id in waiting.items():
        with pytest.raises(InvalidState, match=f"instance {run.id} is suspended .*第六十二条.*cannot be completed"), \
                ctx.sessions.begin() as s:
            runtime.complete_task(s, task_id, {**CONTRACT, "contract_document": world.pdf}, ten)
        assert element in ("sign_contract", "report_to_department")
    fired_before = actions(ctx, run.id).count("timer.fire")
    assert run.sweep("2026-11-13T00:00:01+08:00") == 0  # the report was due at 11-13 00:00
    assert run.open() == {} and run.instance().status == "suspended"
    assert actions(ctx, run.id).count("timer.fire") == fired_before
    run.at("2026-11-13T10:00:00+08:00")
    complete_complaint_task(ctx, complaint.instance_id, "investigate",
                            {"investigation_findings": "调取了评标报告、项目经理注册及在建工程信息，询问了招标人。",
                             "excluded_working_days": 0, "next_step": "decide"}, reg)
    assert run.instance().status == "suspended"
    run.at("2026-11-16T10:00:00+08:00")
    complete_complaint_task(ctx, complaint.instance_id, "decide_complaint",
                            {"outcome": "dismissed", "measures": "",
                             "decision_text": "经查，第一中标候选人拟派项目经理原任职工程已竣工验收，"
                                              "投诉事项缺乏事实依据，驳回投诉。"}, reg)
    with ctx.sessions() as s:
        row = s.get(complaints.Complaint, complaint.id)
        assert (row.status, row.outcome, row.paused) == ("decided", "dismissed", False)
        decision = s.get(Notice, row.notice_id)
        assert (decision.kind, decision.project_id) == ("complaint_decision", world.project_id)
        assert complaint.number in decision.title and "驳回投诉" in decision.body and notices.verify(decision)
        resume = s.execute(select(AuditEvent).where(AuditEvent.instance_id == run.id,
                                                    AuditEvent.action == "instance.resume")).scalar_one()
        assert resume.actor == "reg"
        assert s.get(Instance, complaint.instance_id).status == "completed"
    assert run.instance().status == "running"
    pause = ("instance.suspend", "instance.resume")
    assert [a for a in actions_of_project(ctx, world.project_id) if a.startswith("complaint.") or a in pause] == [
        "complaint.file", "complaint.accepted", "instance.suspend", "complaint.decided", "instance.resume"]
    assert {element: task.task_id for element, task in run.open().items()} == waiting  # the same tasks are back
    # resumed: the report's timer, due while the project was paused, fires at the next sweep
    assert run.sweep("2026-11-16T10:00:01+08:00") == 1
    assert set(run.open()) == {"sign_contract", "report_to_department", "handle_report_overdue"}
    run.at("2026-11-17T10:00:00+08:00")
    run.do("report_to_department", {"tender_report": world.pdf})
    run.do("handle_report_overdue", {"overdue_action": "urge", "overdue_opinion": "投诉处理期间暂停，已补交书面报告。"})
    assert set(run.open()) == {"sign_contract"}

    # ---- the contract is not signed within 30 days: the escalation reaches the regulator's inbox
    assert run.sweep("2026-11-27T23:59:59+08:00") == 0
    assert (run.id, "handle_contract_overdue") not in regulator_inbox(ctx, reg)
    assert run.sweep("2026-11-28T00:00:01+08:00") == 1
    assert set(run.open()) == {"sign_contract", "handle_contract_overdue"}
    assert (run.id, "handle_contract_overdue") in regulator_inbox(ctx, reg)
    with ctx.sessions() as s:
        fire = s.execute(select(AuditEvent).where(AuditEvent.instance_id == run.id, AuditEvent.action == "timer.fire")
                         .order_by(AuditEvent.seq.desc()).limit(1)).scalar_one()
        assert json.loads(fire.payload)["elements"] == ["contract_overdue"]
    run.at("2026-11-30T09:00:00+08:00")
    run.do("handle_contract_overdue", {"overdue_action": "urge", "overdue_opinion": "责令招标人三日内签订合同。"})
    assert run.roles["handle_contract_overdue"] == "regulator"
    run.at("2026-11-30T10:00:00+08:00")
    run.do("sign_contract", {**CONTRACT, "contract_document": world.pdf})
    assert set(run.open()) == {"send_bond_refunds"}

    # ---- the bond refunds: computed by the diagram (条例 §57), sent to the bank over HTTP, acknowledged
    days = (date(2026, 11, 30) - date(2026, 10, 19)).days  # paid 10-19, instructed 11-30
    interest = (Decimal("160000.00") * Decimal("0.0035") * days / 360).quantize(Decimal("0.01"))
    computed = run.data()["refund_instructions"]
    assert (len(computed["instructions"]), computed["principal"]) == (3, "480000.00")
    assert Decimal(computed["interest"]) == 3 * interest
    # 5 days from 11-30 end on Saturday 12-05, so on Monday 12-07 at 24:00
    assert run.open()["send_bond_refunds"].due_at == at("2026-12-08T00:00:00")
    payers = [f"6222{org:012d}" for org in bidder_orgs]  # what bidworld paid from
    sim = BankSim(bidworld.BANK_CODE, market.bank_key, "", pki.platform_public_pem(ctx.config).decode())
    server, thread = serve(sim)
    try:
        with ctx.sessions.begin() as s:
            bonds.register_bank(s, SYSTEM, code=bidworld.BANK_CODE, name="张掖银行",
                                public_key_pem=bank.public_pem(market.bank_key),
                                base_url=f"http://127.0.0.1:{server.server_port}")
        with ctx.sessions.begin() as s:
            sent = bond_refunds.send_refunds(s, world.project_id, config=ctx.config, actor=stf)
            assert [(r.status, r.to_account, r.principal, r.interest) for r in sent] == [
                ("acknowledged", payer, Decimal("160000.00"), interest) for payer in payers]
            partner = s.execute(select(bonds.BankPartner).where(bonds.BankPartner.code == bidworld.BANK_CODE)
                                ).scalar_one()
            assert all(bank.verify(partner.public_key_pem, r.ack_body.encode(), r.ack_signature) for r in sent)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
    assert {payer: sim.accounts[payer].balance for payer in payers} == dict.fromkeys(
        payers, Decimal("160000.00") + interest)
    assert actions_of_project(ctx, world.project_id).count("bond.refund_ack") == 3

    # ---- the result witness, the archive number; the diagram seals the manifest and the procedure ends
    run.do("send_bond_refunds", {"refunds_sent": True})
    run.do("witness_archive", {"archive_checklist": {"contract_signed": True, "report_filed": True,
                                                     "bonds_refunded": True}, "archive_evidence": evidence(world)})
    run.do("file_archive", {"archive_number": "LZ-2026-0001-DA"})
    done = run.instance()
    assert (done.status, done.next_timer_at) == ("completed", None)
    with ctx.sessions() as s:
        (seal,) = s.execute(select(ArchiveBuild).where(ArchiveBuild.project_id == world.project_id)).scalars()
        assert (seal.kind, seal.archive_number, seal.archive_sha256) == ("seal", "LZ-2026-0001-DA", None)
        assert audit.verify(s).ok
    assert run.data()["archive_seal"]["manifest_sha256"] == seal.manifest_sha256
    assert "archive.seal" in actions(ctx, run.id)

    # ---- the archive zip verifies on its own, and fails with one byte changed
    with ctx.sessions.begin() as s:
        built = build_archive(s, world.project_id, auditor, config=ctx.config)
        good = tmp_path / "LZ-2026-0001.zip"
        shutil.copyfile(archive_path(ctx.config, built), good)
    verdict = verify_archive(good)
    assert verdict.ok and verdict.project_code == "LZ-2026-0001" and verdict.events > 0, verdict
    manifest = json.loads(zipfile.ZipFile(good).read("manifest.json"))
    kinds = {item["kind"] for item in manifest["items"]}
    assert {"project", "instance", "definition", "notice", "audit", "file"} <= kinds
    assert sum(item["kind"] == "instance" for item in manifest["items"]) == 2  # the project and its complaint
    noticed = {item["source"]["kind"] for item in manifest["items"] if item["kind"] == "notice"}
    assert noticed == {"tender", "candidates", "result", "complaint_decision"}
    assert main(["archive", "verify", str(good)]) == 0
    member = next(item["path"] for item in manifest["items"] if item["kind"] == "notice")
    changed = tmp_path / "changed.zip"
    one_byte_changed(good, changed, member)
    bad = verify_archive(changed)
    assert (bad.ok, bad.check, bad.entry) == (False, "item", member)
    flipped = tmp_path / "flipped.zip"
    one_raw_byte_flipped(good, flipped, member)
    assert len(flipped.read_bytes()) == len(good.read_bytes())
    damaged = verify_archive(flipped)
    assert (damaged.ok, damaged.check, damaged.entry) == (False, "zip", member)
    capsys.readouterr()
    assert main(["archive", "verify", str(changed), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["entry"] == member
    assert verify_archive(good).ok  # the original is untouched

    # the roles that acted, each within its lane
    assert {element: run.roles[element] for element in ("answer_objection", "confirm_award", "handle_report_overdue",
                                                        "send_bond_refunds", "file_archive")} == {
        "answer_objection": "tenderer", "confirm_award": "tenderer", "handle_report_overdue": "regulator",
        "send_bond_refunds": "staff", "file_archive": "staff"}


def actions_of_project(ctx, project_id: int) -> list[str]:
    with ctx.sessions() as s:
        return list(s.execute(select(AuditEvent.action).where(AuditEvent.project_id == project_id)
                              .order_by(AuditEvent.seq)).scalars())
