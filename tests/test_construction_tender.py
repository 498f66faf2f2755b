"""The construction tendering procedure (issue 4, part 1) end to end through the engine services.

Each test deploys the shipped rules, forms and diagram, creates the project row
and starts ``construction_tender`` with the start data of project registration,
then drives it with ``runtime.complete_task`` and ``timers.sweep`` on the fixed
clock (2026-09-29 09:00, the National Day holidays 10-01..10-07 ahead).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import bidworld
import pytest
from conftest import ROOT, deploy_paths
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from lxml import etree
from sqlalchemy import select

import engine.notices  # noqa: F401 - registers the publish_notice service task
import engine.witness  # noqa: F401 - registers the record_witness service task
from engine import (
    bond_refunds,
    clock,
    draw,
    experts,
    files,
    notices,
    pki,
    procedure,
    runtime,
    seal,
    timers,
    witness,
)
from engine import evaluation as ev
from engine.actors import SYSTEM, Actor, add_user, load_actor
from engine.deploy import collect, deploy
from engine.errors import FormValidationError
from engine.models import InboxTask, Instance, Notice, Project, User
from engine.orgs import add_organisation
from engine.progress import progress
from engine.xmlsafe import NS

PROCESS = "construction_tender"
PROJECT_NAME = "临泽县城区供水管网改造工程"
DIAGRAM = ROOT / "bpmn" / "construction_tender.bpmn"
UNIT = {"tenderer": "ten", "staff": "stf", "regulator": "reg"}
BIDDERS = [("甘肃陇原建设工程有限公司", "91620702MA7ABCD12A", "7650000.00"),
           ("张掖市河西路桥有限责任公司", "91620702MA7ABCD13D", "7720000.00"),
           ("临泽县祁连建筑安装有限公司", "91620702MA7ABCD14G", "7810000.00")]


@dataclass
class World:
    """The organisations, people and stored files of a scenario."""

    project_id: int
    centre_id: int
    department_id: int
    tenderer_id: int
    actors: dict[str, Actor]
    pdf: dict
    video: dict


@pytest.fixture
def world(ctx) -> World:
    """Deploy rules (as 住建), forms and the diagram; create the organisations, users, project and files."""
    with ctx.sessions.begin() as s:
        add_organisation(s, "zy-centre", "张掖市公共资源交易中心", "centre", level="city")
        county = add_organisation(s, "zy-linze", "临泽县公共资源交易分中心", "centre", level="county",
                                  parent_code="zy-centre")
        zjj = add_organisation(s, "dept-zjj", "张掖市住房和城乡建设局", "department")
        tenderer = add_organisation(s, "lz-water", "临泽县水务投资有限公司", "company", uscc="91620702MA7ABCD15K")
        add_user(s, "ten", ["tenderer"], organisation_id=tenderer.id)
        add_user(s, "stf", ["staff"], organisation_id=county.id)
        add_user(s, "reg", ["regulator"], organisation_id=zjj.id)
        actors = {name: load_actor(s, name) for name in ("ten", "stf", "reg")}
        project = Project(code="LZ-2026-0001", name=PROJECT_NAME, category="construction",
                          sub_type="works", location_id=county.id, estimate=Decimal("8000000.00"), funding="state",
                          tenderer_id=tenderer.id, centre_id=county.id, department_id=zjj.id,
                          process_key=PROCESS, status="registered", registered_by="ten")
        s.add(project)
        s.flush()
        pdf = files.value_of(files.store(s, b"%PDF-1.7\n% tender documents\n", "招标文件.pdf", "application/pdf",
                                         SYSTEM, config=ctx.config))
        video = files.value_of(files.store(s, b"\x00\x00\x00\x18ftypmp42" + bytes(64), "开标录像.mp4",
                                           "video/mp4", SYSTEM, config=ctx.config))
        ids = (project.id, county.id, zjj.id, tenderer.id)
    with ctx.sessions.begin() as s:
        deploy(s, collect(sorted((ROOT / "rules").glob("ct_*.dmn"))), actors["reg"])
    deploy_paths(ctx, *sorted((ROOT / "forms").glob("ct_*.json")), DIAGRAM)
    return World(*ids, actors, pdf, video)


def start_data(world: World) -> dict:
    return {"project_id": world.project_id, "project_code": "LZ-2026-0001", "project_name": PROJECT_NAME,
            "category": "construction", "sub_type": "works", "estimate": Decimal("8000000.00"), "funding": "state",
            "location": "zy-linze", "centre_level": "county"}


class Run:
    """One instance of the procedure, driven step by step."""

    def __init__(self, ctx, clock, world: World) -> None:
        self.ctx, self.clock, self.world = ctx, clock, world
        self.roles: dict[str, str] = {}
        with ctx.sessions.begin() as s:
            self.id = runtime.start_instance(
                s, PROCESS, start_data(world), world.actors["ten"], project_id=world.project_id,
                centre_id=world.centre_id, department_id=world.department_id, tenderer_id=world.tenderer_id,
                category="construction", title=PROJECT_NAME).id
            s.get(Project, world.project_id).instance_id = self.id  # as project registration links them
        self.market: bidworld.Market | None = None

    def at(self, instant: str) -> None:
        self.clock.set(datetime.fromisoformat(instant))

    def open(self) -> dict[str, InboxTask]:
        with self.ctx.sessions() as s:
            rows = s.execute(select(InboxTask).where(InboxTask.instance_id == self.id)).scalars()
            return {row.element_id: row for row in rows}

    def do(self, element: str, data: dict, actor: Actor | None = None) -> None:
        task = self.open().get(element)
        assert task is not None, f"{element} is not open; open: {sorted(self.open())}"
        self.roles[element] = task.role
        actor = actor or (self.world.actors[UNIT[task.role]] if task.role in UNIT else SYSTEM)
        with self.ctx.sessions.begin() as s:
            runtime.complete_task(s, task.task_id, data, actor)
        row = self.instance()
        assert row.status in ("running", "waiting", "completed"), row.error

    def sweep(self, instant: str) -> int:
        self.at(instant)
        return timers.sweep(self.ctx.sessions, datetime.fromisoformat(instant)).fired

    def instance(self) -> Instance:
        with self.ctx.sessions() as s:
            return s.get(Instance, self.id)

    def data(self) -> dict:
        with self.ctx.sessions() as s:
            return progress(runtime.load(s, self.id)).data

    def task_data(self, element: str) -> dict:
        task = self.open()[element]
        with self.ctx.sessions() as s:
            return runtime.load(s, self.id).workflow.get_task_from_id(UUID(task.task_id)).data

    def notices(self) -> list[Notice]:
        with self.ctx.sessions() as s:
            return list(s.execute(select(Notice).where(Notice.instance_id == self.id).order_by(Notice.id)).scalars())


def evidence(world: World, *, video: bool = False) -> list[dict]:
    items = [{"kind": "document", "file": world.pdf, "note": "签到表"}]
    if video:
        items.append({"kind": "video", "file": world.video, "note": "开标、评标全程录像"})
    return items


def tender(world: World, **changes) -> dict:
    form = {
        "notice_text": "临泽县城区供水管网改造工程已由临泽县发展和改革局批准建设，现进行公开招标。",
        "qualification_conditions": "具备市政公用工程施工总承包三级及以上资质，具有有效的安全生产许可证。",
        "evaluation_method": "comprehensive",
        "evaluation_weights": [{"factor": "投标报价", "weight": 60}, {"factor": "施工组织设计", "weight": 30},
                               {"factor": "企业信誉", "weight": 10}],
        "bid_bond": "160000.00", "performance_bond_percent": "10",
        "documents_issued_at": "2026-09-29T10:00:00+08:00",
        "documents_available_until": "2026-10-09T17:00:00+08:00",
        "bid_deadline": "2026-10-20T09:30:00+08:00", "opening_time": "2026-10-20T09:30:00+08:00",
        "opening_place": "临泽县公共资源交易分中心开标室（不见面开标）", "tender_documents": world.pdf,
    }
    form.update(changes)
    return form


def submit_bids(run: Run, n: int, at: str = "2026-10-19T10:00:00+08:00") -> list[int]:
    """The first n BIDDERS register, pay their bonds and submit sealed bids at ``at`` (a round still open)."""
    if run.market is None:
        run.market = bidworld.make_market(run.ctx, [name for name, _, _ in BIDDERS],
                                          usccs=[uscc for _, uscc, _ in BIDDERS])
    run.at(at)
    return [bidworld.bid(run.ctx, run.market, run.world.project_id, bidder, price)
            for bidder, (_, _, price) in zip(run.market.bidders[:n], BIDDERS, strict=False)]


def open_bids(run: Run, bid_ids: list[int], deadline: str, fired: int = 1) -> None:
    """The deadline passes, every bidder decrypts in the window, the window closes, staff confirm the record."""
    assert run.sweep(deadline) == fired
    bidworld.decrypt(run.ctx, run.market, bid_ids)
    window_ends = datetime.fromisoformat(run.data()["opening"]["decryption_ends_at"])
    assert run.sweep((window_ends + timedelta(seconds=1)).isoformat()) == 1
    run.do("confirm_opening", {"opening_record_confirmed": True})


def add_experts(run: Run, count: int = 6) -> None:
    """Admit ``count`` trained A01 and ``count`` D01 experts of 临泽 (once per test)."""
    with run.ctx.sessions.begin() as s:
        if s.execute(select(User.id).where(User.username == "ct_a0")).first():
            return
        for n in range(count):
            for code in ("A01", "D01"):
                experts.add_expert(s, SYSTEM, username=f"ct_{code[0].lower()}{n}", display_name=f"专家{code}{n}",
                                   classes=[code], region_code="zy-linze", employer_name="兰州理工大学",
                                   trained_on=date(2025, 3, 1))


def draw_committee(run: Run, *, confirm: bool = True, excluded: list[int] | None = None) -> int:
    """Staff of the centre draw the committee (住建's ct_committee plan, the round's bidders avoided, as the draw
    page does) and every drawn expert confirms; return the draw's id."""
    add_experts(run)
    with run.ctx.sessions.begin() as s:
        plan = draw.committee_plan(s, run.world.project_id)
        avoid = procedure.opening_bidder_ids(s, run.world.project_id) if excluded is None else excluded
        chosen = draw.draw_committee(s, run.world.project_id, plan, run.world.actors["stf"],
                                     excluded_organisation_ids=avoid, evaluation_at=clock.now() + timedelta(days=1),
                                     nonce="ct-committee-0001")
        if confirm:
            for seat in draw.seats_of(s, chosen.id):
                draw.respond(s, seat.id, SYSTEM, accept=True)
        return chosen.id


COMMITTEE = {"committee_drawn": True}


def evaluate(run: Run) -> None:
    """The centre's staff start the evaluation; every member passes every bid, scores the non-price factors the
    same (so the price score ranks them) and signs the report with a demo CA certificate."""
    with run.ctx.sessions.begin() as s:
        started = ev.start_evaluation(s, run.world.project_id, run.world.actors["stf"])
        eid, members, bid_ids = started.id, list(started.members), [b["bid_id"] for b in started.bids]
        criteria = [c["key"] for c in started.parameters["criteria"]]
        factors = started.parameters["factors"]
        keys, actors = {}, {}
        for user in s.execute(select(User).where(User.id.in_(members))).scalars():
            _, key_path = pki.issue_demo_certificate(s, run.market.demo, user, None)
            keys[user.id], actors[user.id] = seal.load_private_key(key_path.read_bytes()), load_actor(s, user.username)
    passed = {str(b): {c: {"passed": True, "reason": ""} for c in criteria} for b in bid_ids}
    scored = {str(b): {f["key"]: str(Decimal(f["max"]) * Decimal("0.8")) for f in factors} for b in bid_ids}
    for kind, sheet in (("qualification", passed), ("scoring", scored)):
        for member in members:
            with run.ctx.sessions.begin() as s:
                if ev.get(s, eid).status == kind:
                    ev.save_sheet(s, eid, actors[member], kind, sheet, submit=True)
    for member in members:
        with run.ctx.sessions.begin() as s:
            digest = bytes.fromhex(ev.report_of(s, ev.get(s, eid)).sha256)
            ev.sign_report(s, eid, actors[member], keys[member].sign(digest, ec.ECDSA(hashes.SHA256())))


def evaluation(world: World) -> dict:
    """The staff's confirmation that the signed report is there (with the session's record)."""
    return {"evaluation_signed": True, "evaluation_records": [{"title": "评标现场记录", "file": world.pdf}]}


def accept_and_file(run: Run) -> None:
    run.do("accept_project", {"acceptance_decision": "accept"})
    run.do("review_filing", {"filing_decision": "file", "filing_number": "LZZJ-BA-2026-017"})
    run.do("witness_acceptance", {"acceptance_checklist": {"registration_complete": True, "identity_verified": True,
                                                           "filing_received": True},
                                  "acceptance_evidence": evidence(run.world)})


def to_bidding(run: Run, **changes) -> None:
    """Accept, file, witness and publish the tender notice (documents issued 09-29, deadline 10-20 09:30)."""
    accept_and_file(run)
    run.do("prepare_tender", tender(run.world, **changes))


def to_evaluation(run: Run) -> None:
    """From bidding: documents sale closes, the deadline passes, 3 bids, committee, report on 10-20."""
    assert run.sweep("2026-10-09T17:00:01+08:00") == 1
    open_bids(run, submit_bids(run, 3), "2026-10-20T09:30:01+08:00")
    draw_committee(run)
    run.do("record_committee", COMMITTEE)
    evaluate(run)
    run.do("evaluate_bids", evaluation(run.world))


def organisation_witness(world: World) -> dict:
    return {"organisation_checklist": {"notices_published": True, "opening_witnessed": True, "committee_drawn": True,
                                       "evaluation_recorded": True, "publicity_complete": True},
            "organisation_evidence": evidence(world, video=True)}


PUBLICITY = {"publicity_text": "评标委员会推荐的中标候选人如下，公示期内可提出异议。", "publicity_days": 3}


def to_award(run: Run) -> None:
    """From the report: publicity 10-21..10-26 (ends 10-27 00:00), the award on 10-27."""
    run.at("2026-10-21T10:00:00+08:00")
    run.do("prepare_publicity", PUBLICITY)
    assert run.sweep("2026-10-27T00:00:01+08:00") == 1
    run.at("2026-10-27T10:00:00+08:00")
    run.do("confirm_award", {"winner_name": BIDDERS[0][0], "winner_uscc": BIDDERS[0][1],
                             "winning_price": BIDDERS[0][2], "award_notice": run.world.pdf})
    run.do("witness_organisation", organisation_witness(run.world))


CONTRACT = {"contract_price": "7650000.00", "performance_bond": "765000.00"}


def finish(run: Run) -> None:
    """From the refunds to the archive."""
    run.do("send_bond_refunds", {"refunds_sent": True})
    run.do("witness_archive", {"archive_checklist": {"contract_signed": True, "report_filed": True,
                                                     "bonds_refunded": True},
                               "archive_evidence": evidence(run.world)})
    run.do("file_archive", {"archive_number": "LZ-2026-0001-DA"})


def test_the_procedure_runs_from_acceptance_to_archive(ctx, fixed_clock, world):
    run = Run(ctx, fixed_clock, world)
    assert set(run.open()) == {"accept_project"}
    to_bidding(run)
    (tender_notice,) = run.notices()
    assert (tender_notice.kind, tender_notice.title) == ("tender", "临泽县城区供水管网改造工程招标公告")
    assert (tender_notice.category, tender_notice.centre_id, tender_notice.project_id) == (
        "construction", world.centre_id, world.project_id)
    assert tender_notice.data["bid_deadline"] == "2026-10-20T09:30:00+08:00"
    data = run.data()
    assert isinstance(data["bid_bond"], Decimal) and data["compliance"]["bid_bond"] == {
        "passed": True, "article": "《招标投标法实施条例》第二十六条",
        "reason": "投标保证金 160000.00 元，不超过估算价 8000000.00 元的 2%"}
    assert set(run.open()) == {"clarify_or_amend"}
    assert run.open()["clarify_or_amend"].due_at == datetime.fromisoformat("2026-10-20T09:30:00+08:00")
    to_evaluation(run)
    publicity = run.open()["prepare_publicity"]
    assert publicity.due_at == datetime.fromisoformat("2026-10-24T00:00:00+08:00")  # 条例 §54: 3 d after the report
    to_award(run)
    assert [n.kind for n in run.notices()] == ["tender", "candidates", "result"]
    assert run.data()["publicity_ends_at"] == "2026-10-27T00:00:00+08:00"  # 10-24 is a Saturday: ends Monday 24:00
    due = {element: task.due_at for element, task in run.open().items()}
    assert due == {"sign_contract": datetime.fromisoformat("2026-11-27T00:00:00+08:00"),  # 法 §46: 30 d
                   "report_to_department": datetime.fromisoformat("2026-11-12T00:00:00+08:00")}  # 法 §47: 15 d
    run.at("2026-11-02T10:00:00+08:00")
    run.do("sign_contract", {**CONTRACT, "contract_document": world.pdf})
    run.at("2026-11-03T10:00:00+08:00")
    run.do("report_to_department", {"tender_report": world.pdf})
    assert run.open()["send_bond_refunds"].due_at == datetime.fromisoformat("2026-11-10T00:00:00+08:00")  # 条例 §57
    # compute_bond_refunds wrote one instruction per bond (160000.00 paid 10-19, made 11-03: 15 days at 0.35%/360)
    computed = run.data()["refund_instructions"]
    assert (len(computed["instructions"]), computed["principal"], computed["interest"]) == (3, "480000.00", "69.99")
    assert computed["due_at"] == "2026-11-10T00:00:00+08:00"  # the same limit as the task's
    with ctx.sessions() as s:
        rows = bond_refunds.refunds_of(s, world.project_id)
        assert [(r.principal, r.interest, r.reason) for r in rows] == [(Decimal("160000.00"), Decimal("23.33"),
                                                                        "contract")] * 3
    finish(run)
    row = run.instance()
    assert (row.status, row.next_timer_at) == ("completed", None)
    assert run.roles == {
        "accept_project": "staff", "review_filing": "regulator", "witness_acceptance": "staff",
        "prepare_tender": "tenderer", "confirm_opening": "staff", "record_committee": "staff",
        "evaluate_bids": "staff",
        "prepare_publicity": "tenderer", "confirm_award": "tenderer", "witness_organisation": "staff",
        "sign_contract": "tenderer", "report_to_department": "tenderer", "send_bond_refunds": "staff",
        "witness_archive": "staff", "file_archive": "staff"}
    assert all(notices.verify(n) for n in run.notices())
    with ctx.sessions() as s:
        trail = witness.records(s, project_id=world.project_id)
    assert [(r.stage, len(r.evidence)) for r in trail] == [("acceptance", 1), ("organisation", 2), ("witness", 1)]
    assert trail[1].evidence[1]["file"]["media_type"] == "video/mp4"


def test_returns_go_back_to_the_tenderer_with_reasons(ctx, fixed_clock, world):
    run = Run(ctx, fixed_clock, world)
    run.do("accept_project", {"acceptance_decision": "return", "acceptance_comments": "缺少资金来源证明",
                              "missing_items": ["资金来源证明"]})
    assert set(run.open()) == {"complete_registration"}
    run.do("complete_registration", {"corrections": "已补充资金来源证明"})
    run.do("accept_project", {"acceptance_decision": "accept"})
    run.do("review_filing", {"filing_decision": "return", "filing_reasons": "招标方案未经批准"})
    assert set(run.open()) == {"complete_registration"}
    assert run.roles["review_filing"] == "regulator"
    run.do("complete_registration", {"corrections": "补充招标方案批复"})
    run.do("accept_project", {"acceptance_decision": "accept"})
    run.do("review_filing", {"filing_decision": "file"})
    assert set(run.open()) == {"witness_acceptance"}
    assert run.roles["complete_registration"] == "tenderer"


FAILURES = {  # one change that breaks the rule, and the article its failure must name
    "bid_bond": ({"bid_bond": "160000.01"}, "实施条例》第二十六条"),  # 2% of 8,000,000.00 is 160,000.00
    "performance_bond": ({"performance_bond_percent": "10.5"}, "实施条例》第五十八条"),
    "bid_period": ({"bid_deadline": "2026-10-19T23:59:59+08:00", "opening_time": "2026-10-19T23:59:59+08:00"},
                   "《招标投标法》第二十四条"),
    "documents_period": ({"documents_available_until": "2026-10-08T23:59:59+08:00"}, "实施条例》第十六条"),
    "opening_time": ({"opening_time": "2026-10-20T10:00:00+08:00"}, "第三十四条"),
    "evaluation_method": ({"evaluation_weights": [{"factor": "投标报价", "weight": 60},
                                                  {"factor": "施工组织设计", "weight": 30}]}, "第四十九条"),
    "discriminatory_terms": ({"qualification_conditions": "投标人须为本地注册企业，主要设备指定品牌。"}, "第三十二条"),
}


def test_each_compliance_rule_fails_alone_with_its_article_and_passes_when_corrected(ctx, fixed_clock, world):
    run = Run(ctx, fixed_clock, world)
    accept_and_file(run)
    for rule, (change, article) in sorted(FAILURES.items()):
        run.do("prepare_tender", tender(world, **change))
        assert set(run.open()) == {"prepare_tender"} and run.notices() == [], rule
        (failure,) = run.task_data("prepare_tender")["compliance_failures"]
        assert failure["rule"] == rule and article in failure["article"], failure
    run.do("prepare_tender", tender(world))
    assert [n.kind for n in run.notices()] == ["tender"]
    assert run.data()["compliance_passed"] is True


def test_every_failure_is_listed_and_the_boundaries_pass(ctx, fixed_clock, world):
    run = Run(ctx, fixed_clock, world)
    bad = {}
    for change, _ in FAILURES.values():
        bad.update(change)
    bad["opening_time"] = "2026-10-20T10:00:00+08:00"
    to_bidding(run, **bad)
    failures = run.task_data("prepare_tender")["compliance_failures"]
    assert [f["rule"] for f in failures] == sorted(FAILURES)
    terms = next(f for f in failures if f["rule"] == "discriminatory_terms")["reason"]
    assert "本地注册" in terms and "指定品牌" in terms and "第二款第（五）项" in terms
    # exactly at each limit: 2%, 10%, the 20th and the 5th day ending at 24:00, lowest price without weights
    run.do("prepare_tender", tender(world, bid_bond="160000.00", performance_bond_percent="10.00",
                                    bid_deadline="2026-10-20T00:00:00+08:00", opening_time="2026-10-20T00:00:00+08:00",
                                    documents_available_until="2026-10-09T00:00:00+08:00",
                                    evaluation_method="lowest_price", evaluation_weights=[]))
    assert [n.kind for n in run.notices()] == ["tender"]


def test_an_amendment_less_than_15_days_before_the_deadline_extends_it(ctx, fixed_clock, world):
    run = Run(ctx, fixed_clock, world)
    to_bidding(run)
    run.at("2026-10-08T10:00:00+08:00")
    run.do("clarify_or_amend", {"clarification_kind": "clarification", "affects_bids": False,
                                "clarification_content": "第三章工程量清单第12项的计量单位为米。"})
    assert [n.kind for n in run.notices()] == ["tender"]  # a clarification that changes nothing is not a notice
    assert run.data()["bid_deadline"] == "2026-10-20T09:30:00+08:00"
    assert run.sweep("2026-10-09T17:00:01+08:00") == 1  # the documents sale closes; bidding goes on
    run.at("2026-10-10T10:00:00+08:00")  # 10 days before the deadline
    run.do("clarify_or_amend", {"clarification_kind": "amendment", "affects_bids": True,
                                "clarification_content": "管材由球墨铸铁管改为PE管，工程量清单相应修改。"})
    tender_notice, amendment = run.notices()
    data = run.data()
    # 法 §23, 条例 §21: 15 days from 10-10 end on 10-25, a Sunday, so on Monday 10-26 at 24:00
    assert (data["bid_deadline"], data["opening_time"], data["deadline_forced"]) == (
        "2026-10-27T00:00:00+08:00", "2026-10-27T00:00:00+08:00", True)
    assert (amendment.kind, amendment.amends_id) == ("amendment", tender_notice.id)
    assert amendment.data["bid_deadline"] == "2026-10-27T00:00:00+08:00" and "依法顺延" in amendment.body
    assert run.open()["clarify_or_amend"].due_at == datetime.fromisoformat("2026-10-27T00:00:00+08:00")
    assert run.sweep("2026-10-20T09:30:01+08:00") == 0
    assert set(run.open()) == {"clarify_or_amend"}
    run.at("2026-10-12T10:00:00+08:00")
    run.do("clarify_or_amend", {"clarification_kind": "clarification", "affects_bids": False,
                                "clarification_content": "开标改在临泽县公共资源交易分中心二楼开标室。",
                                "proposed_bid_deadline": "2026-10-28T09:30:00+08:00"})
    assert [n.kind for n in run.notices()] == ["tender", "amendment", "amendment"]
    assert run.data()["bid_deadline"] == "2026-10-28T09:30:00+08:00"
    assert run.sweep("2026-10-27T00:00:01+08:00") == 0
    assert [c["deadline_forced"] for c in run.data()["clarifications"]] == [False, True, False]
    assert run.sweep("2026-10-28T09:30:01+08:00") == 1
    assert set(run.open()) == {"prepare_tender"}  # nobody bid: the round fails (条例 §44)


def test_fewer_than_three_bids_publish_a_failure_notice_and_start_a_second_round(ctx, fixed_clock, world):
    run = Run(ctx, fixed_clock, world)
    to_bidding(run)
    submit_bids(run, 2)
    assert run.sweep("2026-10-20T09:30:01+08:00") == 2  # the documents sale closed (10-09 17:00), the deadline
    first, failure = run.notices()
    assert (failure.kind, failure.amends_id) == ("failure", first.id)
    assert failure.title == "临泽县城区供水管网改造工程流标公告"
    assert "第四十四条" in failure.body and failure.data["bid_count"] == 2
    assert set(run.open()) == {"prepare_tender"}
    assert run.task_data("prepare_tender")["tender_round"] == 2
    run.at("2026-10-21T09:00:00+08:00")
    run.do("prepare_tender", tender(world, documents_issued_at="2026-10-21T10:00:00+08:00",
                                    documents_available_until="2026-10-27T17:00:00+08:00",
                                    bid_deadline="2026-11-11T09:30:00+08:00", opening_time="2026-11-11T09:30:00+08:00"))
    second = run.notices()[-1]
    assert (second.kind, second.title, second.data["tender_round"]) == (
        "tender", "临泽县城区供水管网改造工程招标公告（第2次）", 2)
    bid_ids = submit_bids(run, 3, "2026-11-10T10:00:00+08:00")
    open_bids(run, bid_ids, "2026-11-11T09:30:01+08:00", fired=2)  # the second round's documents sale and deadline
    assert set(run.open()) == {"record_committee"}
    assert [n.kind for n in run.notices()] == ["tender", "failure", "tender"]


def test_late_contract_and_report_escalate_to_the_regulator_while_the_procedure_goes_on(ctx, fixed_clock, world):
    run = Run(ctx, fixed_clock, world)
    to_bidding(run)
    to_evaluation(run)
    to_award(run)
    assert run.sweep("2026-11-12T00:00:01+08:00") == 1  # 法 §47: report 15 d after the award
    assert set(run.open()) == {"sign_contract", "report_to_department", "handle_report_overdue"}
    assert run.open()["handle_report_overdue"].role == "regulator"
    run.at("2026-11-13T10:00:00+08:00")
    run.do("report_to_department", {"tender_report": world.pdf})
    assert run.sweep("2026-11-27T00:00:01+08:00") == 1  # 法 §46: contract 30 d after the award notice
    assert set(run.open()) == {"sign_contract", "handle_report_overdue", "handle_contract_overdue"}
    run.do("handle_contract_overdue", {"overdue_action": "urge", "overdue_opinion": "责令招标人三日内签订合同。"})
    assert run.roles["handle_contract_overdue"] == "regulator"
    run.at("2026-11-30T10:00:00+08:00")
    run.do("sign_contract", {**CONTRACT, "contract_document": world.pdf})
    assert set(run.open()) == {"send_bond_refunds", "handle_report_overdue"}
    finish(run)
    assert run.instance().status == "running"  # the report escalation is still open
    run.do("handle_report_overdue", {"overdue_action": "warn", "overdue_opinion": "约谈招标人。"})
    assert run.instance().status == "completed"


def test_publicity_timer_objections_and_re_evaluation(ctx, fixed_clock, world):
    from engine import instructions

    run = Run(ctx, fixed_clock, world)
    to_bidding(run)
    to_evaluation(run)
    assert run.sweep("2026-10-24T00:00:01+08:00") == 1  # 条例 §54: publicity not published 3 d after the report
    assert set(run.open()) == {"prepare_publicity", "publicity_late"}
    assert run.open()["publicity_late"].role == "regulator"
    run.at("2026-10-26T09:00:00+08:00")
    run.do("prepare_publicity", PUBLICITY)
    ends = run.data()["publicity_ends_at"]
    assert ends == "2026-10-30T00:00:00+08:00"
    objection = {"objector_name": BIDDERS[1][0], "objector_uscc": BIDDERS[1][1],
                 "objection_content": "第一中标候选人项目经理有在建工程。"}
    run.at("2026-10-27T09:00:00+08:00")
    run.do("raise_objection", objection)
    assert run.open()["answer_objection"].due_at == datetime.fromisoformat("2026-10-31T00:00:00+08:00")
    run.do("answer_objection", {"objection_answer": "经核查，该项目经理在建工程已竣工验收。",
                                "objection_upheld": False})
    assert set(run.open()) == {"raise_objection", "publicity_late"}  # the publicity goes on
    with ctx.sessions() as s:
        first = ev.report_of(s, ev.of_project(s, world.project_id))
        first_id, first_sha, first_content = first.id, first.sha256, copy.deepcopy(first.content)
    run.do("raise_objection", objection)
    run.do("answer_objection", {"objection_answer": "经核查异议属实，由评标委员会复核。", "objection_upheld": True})
    assert set(run.open()) == {"evaluate_bids", "publicity_late"}
    # The upheld objection reopened the evaluation (复核): review 1, the first report kept as signed.
    assert run.data()["evaluation_review"]["review"] == 1
    with ctx.sessions() as s:
        row = ev.of_project(s, world.project_id)
        assert (row.status, row.review) == ("qualification", 1)
        assert row.reviews[0]["reason"] == objection["objection_content"]
        kept = s.get(ev.EvaluationReport, first_id)
        assert (kept.sha256, kept.content) == (first_sha, first_content)
    run.at("2026-10-28T09:00:00+08:00")
    run.do("evaluate_bids", evaluation(world))  # not yet: the review's report is not signed
    assert set(run.open()) == {"evaluate_bids", "publicity_late"}
    assert "第 1 次复核尚未完成" in run.data()["evaluation_state"]["problem"]
    task = run.open()["evaluate_bids"]
    with ctx.sessions() as s:
        html = instructions.render_task(runtime.load(s, run.id).workflow.get_task_from_id(UUID(task.task_id))).html
    assert "第 1 次复核" in html and objection["objection_content"] in html
    review_objection(run, BIDDERS[0][1])
    run.do("evaluate_bids", evaluation(world))
    assert [(c["rank"], c["bidder_uscc"]) for c in run.data()["candidates"]] == [(1, BIDDERS[1][1]), (2, BIDDERS[2][1])]
    run.do("prepare_publicity", PUBLICITY)
    assert [n.kind for n in run.notices()] == ["tender", "candidates", "candidates"]
    assert [c["bidder_uscc"] for c in run.notices()[-1].data["candidates"]] == [BIDDERS[1][1], BIDDERS[2][1]]
    with ctx.sessions() as s:
        shown = ev.published_candidates(s, world.project_id, world.actors["ten"])
        assert [c["bidder_uscc"] for c in shown] == [BIDDERS[1][1], BIDDERS[2][1]]
        assert [r.review for r in ev.reports_of(s, ev.of_project(s, world.project_id))] == [0, 1]
    run.at("2026-10-30T09:00:00+08:00")
    run.do("raise_objection", objection)
    assert run.data()["publicity_ends_at"] == "2026-11-03T00:00:00+08:00"
    run.at("2026-11-03T09:00:00+08:00")  # answered after the publicity ended: straight to the award
    run.do("answer_objection", {"objection_answer": "异议不成立。", "objection_upheld": False})
    assert set(run.open()) == {"confirm_award", "publicity_late"}
    run.do("confirm_award", {"winner_name": BIDDERS[1][0], "winner_uscc": BIDDERS[1][1],
                             "winning_price": BIDDERS[1][2], "award_notice": world.pdf})
    run.do("witness_organisation", organisation_witness(world))
    # the escalation sits outside the stages: the organisation stage ended, the witness stage goes on
    assert set(run.open()) == {"sign_contract", "report_to_department", "publicity_late"}
    run.do("publicity_late", {"overdue_action": "urge", "overdue_opinion": "立即公示。"})
    assert set(run.open()) == {"sign_contract", "report_to_department"}


def review_objection(run: Run, uscc: str) -> None:
    """The committee reviews (复核) on the drafts of its earlier sheets: every member now fails the bidder ``uscc`` on
    项目经理, submits the scores as they were, and signs the new report with the key of their demo certificate."""
    with run.ctx.sessions() as s:
        row = ev.of_project(s, run.world.project_id)
        eid, members = row.id, list(row.members)
        failed = str(next(b["bid_id"] for b in row.bids if b["bidder_uscc"] == uscc))
        actors = {m: load_actor(s, s.get(User, m).username) for m in members}
    keys = {m: seal.load_private_key((run.market.demo.home / "demo-keys" / f"{a.username}.key.pem").read_bytes())
            for m, a in actors.items()}
    for kind in ("qualification", "scoring"):
        for member in members:
            with run.ctx.sessions.begin() as s:
                draft = ev.my_sheet(s, eid, actors[member], kind)
                assert draft is not None and draft.submitted_at is None and draft.review == 1  # pre-filled
                entries = copy.deepcopy(draft.entries)
                if kind == "qualification":
                    entries[failed]["project_manager"] = {"passed": False, "reason": "项目经理有在建工程（异议属实）"}
                ev.save_sheet(s, eid, actors[member], kind, entries, submit=True)
    for member in members:
        with run.ctx.sessions.begin() as s:
            digest = bytes.fromhex(ev.report_of(s, ev.get(s, eid)).sha256)
            ev.sign_report(s, eid, actors[member], keys[member].sign(digest, ec.ECDSA(hashes.SHA256())))


def test_notices_appear_when_their_step_completes_and_never_change(ctx, fixed_clock, world):
    run = Run(ctx, fixed_clock, world)
    accept_and_file(run)
    assert run.notices() == []
    run.at("2026-09-29T11:12:13+08:00")
    run.do("prepare_tender", tender(world))
    (notice,) = run.notices()
    assert notice.published_at == datetime.fromisoformat("2026-09-29T11:12:13+08:00")
    assert notice.published_by == "ten" and notices.verify(notice)
    with ctx.sessions() as s:
        page = notices.list_notices(s, category="construction", centre_id=world.centre_id, kind="tender")
        assert [n.id for n in page.items] == [notice.id]
    with pytest.raises(notices.NoticeImmutable), ctx.sessions.begin() as s:
        s.get(Notice, notice.id).title = "改过的标题"
    with pytest.raises(notices.NoticeImmutable), ctx.sessions.begin() as s:
        s.delete(s.get(Notice, notice.id))
    (again,) = run.notices()
    assert (again.title, again.sha256) == (notice.title, notice.sha256)


def test_a_department_changes_a_compliance_table_while_an_earlier_project_finishes_on_the_old_one(
        ctx, fixed_clock, world):
    county_only = tender(world, qualification_conditions="本县企业优先，具备市政公用工程施工总承包三级资质。")
    earlier = Run(ctx, fixed_clock, world)
    accept_and_file(earlier)
    terms = (ROOT / "rules" / "ct_discriminatory_terms.dmn").read_text(encoding="utf-8")
    row = re.search(r'      <rule id="ct_discriminatory_terms_term_1">.*?</rule>\n', terms, re.S).group(0)
    added = row.replace("term_1", "term_county").replace("本地注册", "本县企业")
    with ctx.sessions.begin() as s:
        outcomes = {(o.kind, o.key): o for o in deploy(
            s, collect([_write(ctx, "ct_discriminatory_terms.dmn", terms.replace(row, row + added))]),
            world.actors["reg"])}
    assert (outcomes[("decision", "ct_discriminatory_terms")].version, outcomes[("process", PROCESS)].status) == (
        2, "rebound")
    later = Run(ctx, fixed_clock, world)
    assert later.instance().process_version_id != earlier.instance().process_version_id
    earlier.do("prepare_tender", county_only)  # checked on the table it started with
    assert [n.kind for n in earlier.notices()] == ["tender"]
    accept_and_file(later)
    later.do("prepare_tender", county_only)
    (failure,) = later.task_data("prepare_tender")["compliance_failures"]
    assert "本县企业" in failure["reason"] and later.notices() == []
    with ctx.sessions.begin() as s:
        s.get(Project, world.project_id).instance_id = earlier.id  # the project's bids go to the earlier run
    to_evaluation(earlier)
    to_award(earlier)
    assert [n.kind for n in earlier.notices()] == ["tender", "candidates", "result"]


def _write(ctx, name: str, text: str):
    path = ctx.config.home / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_witness_record_with_a_file_never_stored_is_refused(ctx, fixed_clock, world):
    run = Run(ctx, fixed_clock, world)
    run.do("accept_project", {"acceptance_decision": "accept"})
    run.do("review_filing", {"filing_decision": "file"})
    forged = copy.deepcopy(world.pdf) | {"sha256": "0" * 64}
    task = run.open()["witness_acceptance"]
    with ctx.sessions.begin() as s, pytest.raises(FormValidationError, match="never uploaded"):
        runtime.complete_task(s, task.task_id, {
            "acceptance_checklist": {"registration_complete": True, "identity_verified": True,
                                     "filing_received": False},
            "acceptance_evidence": [{"kind": "photo", "file": forged}]}, world.actors["stf"])
    assert run.instance().status == "running"
    assert "witness_acceptance" in run.open()


def test_the_diagram_names_an_article_for_every_timer_and_rule_and_draws_every_element():
    root = etree.parse(str(DIAGRAM)).getroot()
    annotations = {a.get("id"): "".join(a.itertext()) for a in root.iterfind(".//bpmn:textAnnotation", NS)}
    annotated = {}
    for association in root.iterfind(".//bpmn:association", NS):
        annotated.setdefault(association.get("targetRef"), []).append(annotations[association.get("sourceRef")])
    article = re.compile(r"第[一二三四五六七八九十百]+条")
    timers_and_rules = [e.getparent().get("id") for e in root.iterfind(".//bpmn:timerEventDefinition", NS)]
    timers_and_rules += [e.get("id") for e in root.iterfind(".//bpmn:businessRuleTask", NS)]
    timers_and_rules += ["check_compliance", "apply_clarification", "enough_bids", "send_bond_refunds"]
    assert len(timers_and_rules) == 17
    for element in timers_and_rules:
        assert any(article.search(text) for text in annotated.get(element, [])), element
    drawn = {d.get("bpmnElement") for d in root.iter("{http://www.omg.org/spec/BPMN/20100524/DI}BPMNShape",
                                                     "{http://www.omg.org/spec/BPMN/20100524/DI}BPMNEdge")}
    process = root.find("bpmn:process", NS)
    ids = {e.get("id") for e in process.iterdescendants(f"{{{NS['bpmn']}}}*") if e.get("id")
           and etree.QName(e).localname != "laneSet" and not etree.QName(e).localname.endswith("EventDefinition")}
    assert ids - drawn == set() and {"stage_acceptance", "stage_organisation", "stage_witness"} <= ids
    for path in sorted((ROOT / "rules").glob("ct_*.dmn")):
        description = etree.parse(str(path)).getroot().find(".//{*}decision/{*}description").text
        assert article.search(description), path.name
