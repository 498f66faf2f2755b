"""Remote evaluation: a 5-member committee reviews and scores 4 opened bids, then signs the report."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest
from conftest import deploy_texts
from evalkit import COMPREHENSIVE, LOWEST_PRICE, NAMES, PRICES, all_pass, make_eval_world
from sqlalchemy import func, select, update
from test_construction_tender import world  # noqa: F401 - the world fixture

from engine import audit, evaluation, evaluation_method, notices, runtime
from engine.actors import SYSTEM
from engine.draw import Draw
from engine.errors import EngineError, InvalidState, NotFound, PermissionDenied
from engine.evaluation import ReportImmutable
from engine.models import Instance, Project
from engine.pki import CertificateError
from engine.progress import progress
from engine.services import ServiceCall

# The formula by hand (ct_price_score: base factor 0.97, 2 points per 1% above, 1 per 1% below; price max 60).
# Bids 1-3 qualify, bid 4 (7,900,000.00) fails 资质 for 3 of 5 members.
# mean = (7,650,000 + 7,720,000 + 7,810,000) / 3 = 7,726,666.666…; base = mean x 0.97 = 7,494,866.67
# bid 1: (7,650,000 - 7,494,866.67) / 7,494,866.67 = +2.0699 %  -> 60 - 2.0699 x 2 = 55.86
# bid 2: (7,720,000 - 7,494,866.67) / 7,494,866.67 = +3.0038 %  -> 60 - 3.0038 x 2 = 53.99
# bid 3: (7,810,000 - 7,494,866.67) / 7,494,866.67 = +4.2047 %  -> 60 - 4.2047 x 2 = 51.59
BASE = "7494866.67"
PRICE_SCORES = ["55.86", "53.99", "51.59"]
FAIL_REASON = "资质等级不满足招标文件要求（需二级及以上）"


@pytest.fixture
def comprehensive(ctx, fixed_clock, world):  # noqa: F811
    return make_eval_world(ctx, fixed_clock, world, **COMPREHENSIVE)


def start(ctx, ew) -> int:
    with ctx.sessions.begin() as s:
        return evaluation.start_evaluation(s, ew.project_id, ew.world.actors["stf"]).id


def qualify(ctx, ew, evaluation_id: int, *, except_last: bool = False) -> None:
    """Members 1-3 fail bid 4 on 资质; member 4 fails bid 1 on 信用 (a minority); everyone submits."""
    for index, actor in enumerate(ew.members.values()):
        if except_last and index == 4:
            continue
        fails = {}
        if index < 3:
            fails["qualification"] = (ew.bid_ids[3], FAIL_REASON)
        if index == 3:
            fails["credit"] = (ew.bid_ids[0], "存在一条已失效的失信记录")
        with ctx.sessions.begin() as s:
            evaluation.save_sheet(s, evaluation_id, actor, "qualification", all_pass(ew.bid_ids, **fails), submit=True)


def scores(ew, organisation: str, enterprise: str) -> dict:
    first, second, third = ew.bid_ids[:3]
    return {str(first): {"f2": organisation, "f3": enterprise}, str(second): {"f2": "24", "f3": "8"},
            str(third): {"f2": "26", "f3": "9.5"}}


def score_all(ctx, ew, evaluation_id: int, *, skip: int | None = None) -> None:
    """Members score; the last member gives bid 1's 施工组织设计 10 against the others' 25 (an outlier)."""
    for index, actor in enumerate(ew.members.values()):
        if index == skip:
            continue
        sheet = scores(ew, "10" if index == 4 else "25", "9")
        with ctx.sessions.begin() as s:
            evaluation.save_sheet(s, evaluation_id, actor, "scoring", sheet, submit=True)


def counts(ctx) -> tuple[int, int, int]:
    with ctx.sessions() as s:
        return tuple(s.execute(select(func.count()).select_from(m)).scalar() for m in (
            evaluation.EvaluationSheet, evaluation.ReportSignature, audit.AuditEvent))


def test_pure_price_formula_and_ranking_by_hand():
    price = {"max": "60", "base_factor": "0.97", "penalty_above": "2", "penalty_below": "1"}
    base, out = evaluation_method.price_scores(price, {1: Decimal("7650000.00"), 2: Decimal("7720000.00"),
                                                3: Decimal("7810000.00")})
    assert str(base) == BASE and [out[i]["score"] for i in (1, 2, 3)] == PRICE_SCORES
    # Below the base: mean 100, base 97; 90 is -7.2165 % -> 60 - 7.2165 x 1 = 52.78; 110 is +13.4021 % -> 33.20.
    base, out = evaluation_method.price_scores(price, {1: Decimal(90), 2: Decimal(100), 3: Decimal(110)})
    assert (str(base), out[1]["score"], out[3]["score"], out[1]["deviation"]) == ("97.00", "52.78", "33.20",
                                                                                  "-7.2165")
    rows = [{"bid_id": 1, "total": "90", "price": "100", "technical": "20", "submitted_at": "b"},
            {"bid_id": 2, "total": "90", "price": "99", "technical": "10", "submitted_at": "c"},
            {"bid_id": 3, "total": "90", "price": "99", "technical": "25", "submitted_at": "d"},
            {"bid_id": 4, "total": "91", "price": "120", "technical": "5", "submitted_at": "a"}]
    assert [r["bid_id"] for r in evaluation_method.rank("comprehensive", rows)] == [4, 3, 2, 1]
    assert [r["bid_id"] for r in evaluation_method.rank("lowest_price", rows)] == [2, 3, 1, 4]
    with pytest.raises(EngineError, match="签名文件无法识别"):
        evaluation.parse_signature(b"not a signature")
    with pytest.raises(EngineError, match="权重合计"):
        evaluation_method.method_parameters("comprehensive", [{"factor": "施工组织设计", "weight": 100}],
                                            {"outlier_percent": "20"})


def test_comprehensive_evaluation_from_start_to_the_signed_report(ctx, comprehensive):
    ew = comprehensive
    stf = ew.world.actors["stf"]
    with ctx.sessions() as s, pytest.raises(PermissionDenied):
        evaluation.start_evaluation(s, ew.project_id, ew.world.actors["ten"])
    evaluation_id = start(ctx, ew)
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        assert s.get(Draw, ew.draw_id).status == "revealed"
        assert (row.method, row.status, len(row.members), [b["bid_id"] for b in row.bids]) == (
            "comprehensive", "qualification", 5, ew.bid_ids)
        assert [(f["factor"], f["part"], f["max"]) for f in row.parameters["factors"]] == [
            ("施工组织设计", "technical", "30"), ("企业信誉", "commercial", "10")]
        assert row.parameters["price"] == {"factor": "投标报价", "max": "60", "base_factor": "0.97",
                                           "penalty_above": "2", "penalty_below": "1"}
        records = evaluation.bid_records(s, row, next(iter(ew.members.values())))
        assert records[0]["company"]["uscc"] == records[0]["bidder_uscc"] and "licences" in records[0]["company"]
    with ctx.sessions() as s, pytest.raises(InvalidState, match="已经开始"):
        evaluation.start_evaluation(s, ew.project_id, stf)

    qualify(ctx, ew, evaluation_id)
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        assert (row.status, row.qualified) == ("scoring", ew.bid_ids[:3])

    score_all(ctx, ew, evaluation_id)
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        assert row.status == "signing"
        view = evaluation.committee_summary(s, evaluation_id, next(iter(ew.members.values())))
    content = view["content"]
    assert content["base_price"] == BASE
    result = content["qualification"]
    assert result[str(ew.bid_ids[0])]["passed"] and len(result[str(ew.bid_ids[0])]["failures"]) == 1
    failures = result[str(ew.bid_ids[3])]["failures"]
    assert not result[str(ew.bid_ids[3])]["passed"] and len(failures) == 3
    assert {(f["criterion"], f["reason"]) for f in failures} == {("qualification", FAIL_REASON)}
    by_bid = {r["bid_id"]: r for r in content["scores"]}
    assert [by_bid[b]["price_score"] for b in ew.bid_ids[:3]] == PRICE_SCORES
    # bid 1: 施工组织设计 mean (25 x 4 + 10) / 5 = 22.00, 企业信誉 9.00 -> 55.86 + 22 + 9 = 86.86
    # bid 2: 24 + 8 + 53.99 = 85.99; bid 3: 26 + 9.5 + 51.59 = 87.09
    assert [by_bid[b]["total"] for b in ew.bid_ids[:3]] == ["86.86", "85.99", "87.09"]
    flags = by_bid[ew.bid_ids[0]]["flags"]
    last = list(ew.members.values())[4]
    assert flags == [{"factor": "f2", "expert_id": last.user_id, "score": "10", "mean": "22.00"}]
    assert all(not by_bid[b]["flags"] for b in ew.bid_ids[1:3])
    assert [(c["rank"], c["bidder_name"], c["price"], c["score"]) for c in content["candidates"]] == [
        (1, NAMES[2], PRICES[2], "87.09"), (2, NAMES[0], PRICES[0], "86.86"), (3, NAMES[1], PRICES[1], "85.99")]

    # The report is not complete until every member signs; the service refuses meanwhile.
    sha = view["report"].sha256
    with ctx.sessions() as s:
        assert evaluation.report_of(s, evaluation.get(s, evaluation_id)).sha256 == sha
    call = lambda s: evaluation.evaluation_report(  # noqa: E731
        ServiceCall(s, ew.run.id, ew.project_id, "system", {}, "evaluation_report"))
    members = list(ew.members.items())
    for name, actor in members[:4]:
        with ctx.sessions.begin() as s:
            evaluation.sign_report(s, evaluation_id, actor, ew.sign(name, sha),
                                   dissent="对第一名施工组织设计评分有不同意见" if name == members[3][0] else "")
    with ctx.sessions() as s, pytest.raises(InvalidState, match="尚未由评标委员会全体成员签署"):
        call(s)

    # A signature made with another member's key is refused, and nothing is written.
    name, actor = members[4]
    before = counts(ctx)
    with ctx.sessions() as s, pytest.raises(CertificateError, match="bad signature"):
        evaluation.sign_report(s, evaluation_id, actor, ew.sign(name, sha, key_of=members[0][0]))
    with ctx.sessions() as s, pytest.raises(InvalidState, match="已签署"):
        evaluation.sign_report(s, evaluation_id, members[0][1], ew.sign(members[0][0], sha))
    assert counts(ctx) == before
    with ctx.sessions.begin() as s:
        evaluation.sign_report(s, evaluation_id, actor, ew.sign(name, sha))
    with ctx.sessions.begin() as s:
        assert evaluation.get(s, evaluation_id).status == "complete"
        candidates = call(s)
    assert [c["bidder_uscc"] for c in candidates] == [content["candidates"][i]["bidder_uscc"] for i in range(3)]

    # Immutable after completion: no changes to the report or its signatures, no new sheets or signatures.
    with ctx.sessions() as s, pytest.raises(ReportImmutable):
        s.execute(update(evaluation.EvaluationReport).values(sha256="0" * 64))
    with ctx.sessions() as s:
        report = evaluation.report_of(s, evaluation.get(s, evaluation_id))
        report.content = {"forged": True}
        with pytest.raises(ReportImmutable):
            s.flush()
    with ctx.sessions() as s, pytest.raises(InvalidState):
        evaluation.sign_report(s, evaluation_id, actor, ew.sign(name, sha))
    with ctx.sessions() as s, pytest.raises(InvalidState):
        evaluation.save_sheet(s, evaluation_id, actor, "scoring", {})
    with ctx.sessions() as s:
        view = evaluation.committee_summary(s, evaluation_id, ew.auditor)
        assert len(view["signatures"]) == 5 and view["signatures"][3].dissent
        assert audit.verify(s).ok
        actions = list(s.execute(select(audit.AuditEvent.action).where(
            audit.AuditEvent.action.like("evaluation.%")).order_by(audit.AuditEvent.seq)).scalars())
    assert actions[0] == "evaluation.start" and actions.count("evaluation.sign") == 5
    assert {"evaluation.scoring", "evaluation.report", "evaluation.complete", "evaluation.handover"} <= set(actions)


def test_scores_stay_independent_until_every_member_has_submitted(ctx, comprehensive):
    ew = comprehensive
    evaluation_id = start(ctx, ew)
    members = list(ew.members.values())
    with ctx.sessions.begin() as s:  # a draft first: still only the member's own
        evaluation.save_sheet(s, evaluation_id, members[0], "qualification",
                              {str(ew.bid_ids[0]): {"credit": {"passed": True}}})
    qualify(ctx, ew, evaluation_id, except_last=True)
    with ctx.sessions() as s:
        for actor in members[:2]:
            with pytest.raises(PermissionDenied, match="全体评委提交前不公开"):
                evaluation.committee_summary(s, evaluation_id, actor)
        mine = evaluation.my_sheet(s, evaluation_id, members[1], "qualification")
        assert mine.expert_id == members[1].user_id and mine.submitted_at is not None
        assert evaluation.my_sheet(s, evaluation_id, members[4], "qualification") is None
        # Staff see who submitted, never what.
        view = evaluation.progress(s, evaluation_id, ew.world.actors["stf"])
        submitted = {m["expert_id"] for m in view["members"] if m["qualification"] is not None}
        assert submitted == {a.user_id for a in members[:4]}
        assert "entries" not in str(view["members"]) and "summary" not in view
        # The audit trail (shown to staff) carries a hash of each sheet, not its content.
        payloads = [json.loads(e.payload) for e in s.execute(select(audit.AuditEvent).where(
            audit.AuditEvent.action == "evaluation.qualification.submit")).scalars()]
        assert all(set(p) == {"evaluation_id", "sheet_id", "entries_sha256"} for p in payloads)
    # A submitted sheet cannot change; the scoring phase has not begun.
    with ctx.sessions() as s, pytest.raises(InvalidState, match="已提交"):
        evaluation.save_sheet(s, evaluation_id, members[0], "qualification", all_pass(ew.bid_ids))
    with ctx.sessions() as s, pytest.raises(InvalidState, match="阶段"):
        evaluation.save_sheet(s, evaluation_id, members[0], "scoring", {})
    with ctx.sessions() as s:  # nor behind the service's back
        submitted = evaluation.my_sheet(s, evaluation_id, members[1], "qualification")
        submitted.entries = {}
        with pytest.raises(ReportImmutable):
            s.flush()
    qualify_last(ctx, ew, evaluation_id)
    score_all(ctx, ew, evaluation_id, skip=2)
    with ctx.sessions() as s:
        with pytest.raises(PermissionDenied):
            evaluation.committee_summary(s, evaluation_id, members[0])
        with pytest.raises(PermissionDenied):
            evaluation.committee_summary(s, evaluation_id, ew.auditor)


def qualify_last(ctx, ew, evaluation_id: int) -> None:
    with ctx.sessions.begin() as s:
        evaluation.save_sheet(s, evaluation_id, list(ew.members.values())[4], "qualification",
                              all_pass(ew.bid_ids), submit=True)


def test_bad_sheets_are_refused_with_the_reason_and_nothing_written(ctx, comprehensive):
    ew = comprehensive
    evaluation_id = start(ctx, ew)
    actor = next(iter(ew.members.values()))
    before = counts(ctx)
    cases = [
        (all_pass(ew.bid_ids, credit=(ew.bid_ids[1], " ")), "须说明理由"),
        ({str(ew.bid_ids[0]): {"credit": {"passed": True}}}, "尚未评审"),
        ({"999999": {}}, "not in this evaluation"),
    ]
    for entries, message in cases:
        with ctx.sessions() as s, pytest.raises(EngineError, match=message):
            evaluation.save_sheet(s, evaluation_id, actor, "qualification", entries, submit=True)
    assert counts(ctx) == before
    qualify(ctx, ew, evaluation_id)
    for sheet, message in [
        ({str(ew.bid_ids[0]): {"f2": "31"}}, "0 至 30"), ({str(ew.bid_ids[0]): {"f3": "abc"}}, "不是分数"),
        ({str(ew.bid_ids[0]): {"f3": "9.555"}}, "两位小数"), ({str(ew.bid_ids[3]): {"f2": "20"}}, "did not pass"),
        ({str(ew.bid_ids[0]): {"f2": "20"}}, "尚未评分"),
    ]:
        with ctx.sessions() as s, pytest.raises(EngineError, match=message):
            evaluation.save_sheet(s, evaluation_id, actor, "scoring", sheet, submit=True)
    with ctx.sessions() as s:
        assert evaluation.my_sheet(s, evaluation_id, actor, "scoring") is None


def test_access_is_refused_to_everyone_off_the_committee(ctx, comprehensive):
    ew = comprehensive
    evaluation_id = start(ctx, ew)
    bidder = ew.run.market.bidders[0].actor
    outsiders = [ew.world.actors["ten"], ew.world.actors["reg"], bidder, ew.outsider]
    with ctx.sessions() as s:
        for actor in outsiders:
            with pytest.raises(PermissionDenied):
                evaluation.progress(s, evaluation_id, actor)
            with pytest.raises(PermissionDenied):
                evaluation.save_sheet(s, evaluation_id, actor, "qualification", all_pass(ew.bid_ids))
            with pytest.raises(PermissionDenied):
                evaluation.bid_records(s, evaluation.get(s, evaluation_id), actor)
            with pytest.raises(PermissionDenied):
                evaluation.published_candidates(s, ew.project_id, actor)
        with pytest.raises(PermissionDenied):
            evaluation.bid_records(s, evaluation.get(s, evaluation_id), ew.world.actors["stf"])
        with pytest.raises(PermissionDenied):
            evaluation.committee_summary(s, evaluation_id, ew.world.actors["stf"])


def test_lowest_evaluated_price_ranks_the_qualified_bids_by_price(ctx, fixed_clock, world):  # noqa: F811
    ew = make_eval_world(ctx, fixed_clock, world, **LOWEST_PRICE)
    evaluation_id = start(ctx, ew)
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        assert (row.method, row.parameters["factors"], row.parameters["price"]) == ("lowest_price", [], None)
    for index, actor in enumerate(ew.members.values()):
        fails = {"project_manager": (ew.bid_ids[0], "项目经理注册证书已过期")} if index < 3 else {}
        with ctx.sessions.begin() as s:
            evaluation.save_sheet(s, evaluation_id, actor, "qualification", all_pass(ew.bid_ids, **fails), submit=True)
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        report = evaluation.report_of(s, row)
        assert (row.status, row.qualified) == ("signing", ew.bid_ids[1:])
    assert [(c["rank"], c["bidder_name"], c["price"]) for c in report.content["candidates"]] == [
        (1, NAMES[1], PRICES[1]), (2, NAMES[2], PRICES[2]), (3, NAMES[3], PRICES[3])]
    assert all("score" not in c for c in report.content["candidates"])
    for name, actor in ew.members.items():
        with ctx.sessions.begin() as s:
            evaluation.sign_report(s, evaluation_id, actor, ew.sign(name, report.sha256))
    with ctx.sessions.begin() as s:
        assert evaluation.get(s, evaluation_id).status == "complete"
        with pytest.raises(PermissionDenied):
            evaluation.published_candidates(s, ew.project_id, ew.world.actors["ten"])
        notices.publish(s, kind="candidates", title="中标候选人公示", body="…", actor="system",
                        project_id=ew.project_id)
    with ctx.sessions() as s:
        shown = evaluation.published_candidates(s, ew.project_id, ew.run.market.bidders[3].actor)
    assert [c["rank"] for c in shown] == [1, 2, 3]


def test_start_needs_a_confirmed_committee(ctx, fixed_clock, world):  # noqa: F811
    ew = make_eval_world(ctx, fixed_clock, world, **COMPREHENSIVE)
    with ctx.sessions.begin() as s:
        s.execute(update(Draw).values(status="prepared"))  # as if the committee had not been drawn
    with ctx.sessions() as s, pytest.raises(InvalidState, match="尚未抽取评标委员会"):
        evaluation.start_evaluation(s, ew.project_id, SYSTEM)
    with ctx.sessions() as s:
        assert s.execute(select(func.count()).select_from(evaluation.Evaluation)).scalar() == 0


PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="definitions_evaluation_test"
    targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="evaluation_test" name="评标测试 Evaluation test" isExecutable="true">
    <bpmn:laneSet id="lanes">
      <bpmn:lane id="lane_staff" name="staff">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>take_report</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>publicity</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:serviceTask id="take_report" name="评标报告 Evaluation report">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id="evaluation_report" resultVariable="candidates">
          <spiffworkflow:parameters />
        </spiffworkflow:serviceTaskOperator>
      </bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:serviceTask>
    <bpmn:userTask id="publicity" name="公示 Publicity"><bpmn:incoming>f2</bpmn:incoming>
      <bpmn:outgoing>f3</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f3</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="take_report" />
    <bpmn:sequenceFlow id="f2" sourceRef="take_report" targetRef="publicity" />
    <bpmn:sequenceFlow id="f3" sourceRef="publicity" targetRef="end" />
  </bpmn:process>
</bpmn:definitions>
"""


def test_the_service_task_stops_until_the_report_is_signed_then_hands_over_the_candidates(ctx, fixed_clock,
                                                                                        world):  # noqa: F811
    ew = make_eval_world(ctx, fixed_clock, world, **LOWEST_PRICE)
    evaluation_id = start(ctx, ew)
    for actor in ew.members.values():
        with ctx.sessions.begin() as s:
            evaluation.save_sheet(s, evaluation_id, actor, "qualification", all_pass(ew.bid_ids), submit=True)
    deploy_texts(ctx, {"evaluation_test.bpmn": PROCESS})
    stf = ew.world.actors["stf"]
    with ctx.sessions.begin() as s:
        instance_id = runtime.start_instance(s, "evaluation_test", {"project_id": ew.project_id}, stf,
                                             project_id=ew.project_id, centre_id=ew.world.centre_id,
                                             department_id=ew.world.department_id, tenderer_id=ew.world.tenderer_id,
                                             category="construction", title="评标测试").id
    with ctx.sessions() as s:
        row = s.get(Instance, instance_id)
        assert row.status == "error" and "尚未由评标委员会全体成员签署" in row.error["message"]
        sha = evaluation.report_of(s, evaluation.get(s, evaluation_id)).sha256
    for name, actor in ew.members.items():
        with ctx.sessions.begin() as s:
            evaluation.sign_report(s, evaluation_id, actor, ew.sign(name, sha))
    with ctx.sessions.begin() as s:
        runtime.retry(s, instance_id, stf)
    with ctx.sessions() as s:
        assert s.get(Instance, instance_id).status != "error"
        candidates = progress(runtime.load(s, instance_id)).data["candidates"]
    assert [(c["rank"], c["bidder_name"], c["price"]) for c in candidates] == [
        (1, NAMES[0], PRICES[0]), (2, NAMES[1], PRICES[1]), (3, NAMES[2], PRICES[2])]


# -- re-review after an upheld objection (复核) -------------------------------------------------------------------


def sign_all(ctx, ew, evaluation_id: int, members=None) -> str:
    """Every member (or ``members``: name -> actor) signs the current report; return its sha256."""
    with ctx.sessions() as s:
        sha = evaluation.report_of(s, evaluation.get(s, evaluation_id)).sha256
    for name, actor in (members or ew.members).items():
        with ctx.sessions.begin() as s:
            evaluation.sign_report(s, evaluation_id, actor, ew.sign(name, sha))
    return sha


def reopen(s, ew, reason: str = "第一中标候选人项目经理有在建工程") -> dict:
    return evaluation.review_evaluation(ServiceCall(s, ew.run.id, ew.project_id, "ten", {}, "reopen_evaluation"),
                                        tender_round=1, reason=reason, answer="经核查异议属实，由评标委员会复核。")


def test_an_upheld_objection_reopens_the_evaluation_for_a_review_with_a_new_signed_report(ctx, comprehensive):
    from engine import archive_items, pki, procedure

    ew = comprehensive
    evaluation_id = start(ctx, ew)
    members = list(ew.members.values())
    with ctx.sessions() as s, pytest.raises(InvalidState, match="只有已签署完成的评标才能复核"):
        reopen(s, ew)
    qualify(ctx, ew, evaluation_id)
    score_all(ctx, ew, evaluation_id)
    with ctx.sessions() as s, pytest.raises(InvalidState, match="只有已签署完成的评标才能复核"):
        reopen(s, ew)  # signing is not complete either
    first_sha = sign_all(ctx, ew, evaluation_id)
    with ctx.sessions.begin() as s:
        first = evaluation.report_of(s, evaluation.get(s, evaluation_id))
        first_id, first_content = first.id, json.loads(json.dumps(first.content))
        assert [c["bidder_name"] for c in first.content["candidates"]] == [NAMES[2], NAMES[0], NAMES[1]]
        notices.publish(s, kind="candidates", title="中标候选人公示", body="…", actor="system",
                        project_id=ew.project_id)
    with ctx.sessions() as s, pytest.raises(EngineError, match="须说明理由"):
        reopen(s, ew, reason="  ")

    ew.run.at("2026-10-22T09:00:00+08:00")
    with ctx.sessions.begin() as s:
        assert reopen(s, ew) == {"evaluation_id": evaluation_id, "review": 1, "supersedes_sha256": first_sha}
    with ctx.sessions() as s, pytest.raises(InvalidState, match="第 1 次复核尚未完成，不能再次复核"):
        reopen(s, ew)
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        assert (row.status, row.review, row.qualified, row.completed_at) == ("qualification", 1, None, None)
        assert row.reviews[0]["supersedes_report_id"] == first_id and row.reviews[0]["opened_by"] == "ten"
        # The earlier report and its signatures are kept as they were, and still verify.
        kept = s.get(evaluation.EvaluationReport, first_id)
        assert kept.content == first_content and kept.sha256 == first_sha
        assert hashlib.sha256(audit.canonical_json(kept.content).encode()).hexdigest() == first_sha
        for signature in evaluation.signatures_of(s, kept):
            pki.verify_signature(s, signature.certificate_id, bytes.fromhex(first_sha),
                                 bytes.fromhex(signature.signature), at=signature.signed_at)
        assert evaluation.report_of(s, row) is None
        # Nothing is handed over or shown while the review runs.
        assert "第 1 次复核尚未完成" in procedure.evaluation_problem(s, ew.project_id, 1)
        with pytest.raises(InvalidState, match="尚未由评标委员会全体成员签署"):
            evaluation.evaluation_report(ServiceCall(s, ew.run.id, ew.project_id, "system", {}, "take_report"))
        with pytest.raises(PermissionDenied):
            evaluation.published_candidates(s, ew.project_id, ew.world.actors["ten"])
        # Every member has a draft of the review, pre-filled from their submitted sheet.
        for actor in members:
            draft = evaluation.my_sheet(s, evaluation_id, actor, "qualification")
            earlier = s.execute(select(evaluation.EvaluationSheet).where(
                evaluation.EvaluationSheet.evaluation_id == evaluation_id,
                evaluation.EvaluationSheet.expert_id == actor.user_id, evaluation.EvaluationSheet.review == 0,
                evaluation.EvaluationSheet.kind == "qualification")).scalar_one()
            assert (draft.review, draft.submitted_at, draft.entries) == (1, None, earlier.entries)
            assert earlier.submitted_at is not None
    with ctx.sessions() as s, pytest.raises(PermissionDenied):
        evaluation.save_sheet(s, evaluation_id, ew.outsider, "qualification", all_pass(ew.bid_ids), submit=True)

    # The review: every member now fails the first candidate (bid 3) on 项目经理; bid 4 still fails for 3 of 5.
    for actor in members:
        with ctx.sessions.begin() as s:
            entries = json.loads(json.dumps(evaluation.my_sheet(s, evaluation_id, actor, "qualification").entries))
            entries[str(ew.bid_ids[2])]["project_manager"] = {"passed": False, "reason": "项目经理有在建工程"}
            evaluation.save_sheet(s, evaluation_id, actor, "qualification", entries, submit=True)
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        assert (row.status, row.qualified) == ("scoring", ew.bid_ids[:2])
        draft = evaluation.my_sheet(s, evaluation_id, members[0], "scoring")  # only the still-qualified bids
        assert (draft.submitted_at, sorted(draft.entries)) == (None, sorted(str(b) for b in ew.bid_ids[:2]))
    for actor in members:
        with ctx.sessions.begin() as s:
            entries = evaluation.my_sheet(s, evaluation_id, actor, "scoring").entries
            evaluation.save_sheet(s, evaluation_id, actor, "scoring", entries, submit=True)
    names = list(ew.members)
    with ctx.sessions() as s:
        report = evaluation.report_of(s, evaluation.get(s, evaluation_id))
        new_sha = report.sha256
        assert report.review == 1 and report.content["review"]["supersedes_sha256"] == first_sha
        assert [c["bidder_name"] for c in report.content["candidates"]] == [NAMES[0], NAMES[1]]
        with pytest.raises(CertificateError):  # a signature of the superseded report does not sign the new one
            evaluation.sign_report(s, evaluation_id, members[0], ew.sign(names[0], first_sha))
    with ctx.sessions.begin() as s:
        evaluation.sign_report(s, evaluation_id, members[0], ew.sign(names[0], new_sha))
    with ctx.sessions() as s:
        assert "签署评标报告" in procedure.evaluation_problem(s, ew.project_id, 1)  # not every member yet
    sign_all(ctx, ew, evaluation_id, dict(list(ew.members.items())[1:]))
    with ctx.sessions.begin() as s:
        row = evaluation.get(s, evaluation_id)
        assert row.status == "complete" and procedure.evaluation_problem(s, ew.project_id, 1) is None
        handed = evaluation.evaluation_report(ServiceCall(s, ew.run.id, ew.project_id, "system", {}, "take_report"))
        assert [c["bidder_name"] for c in handed] == [NAMES[0], NAMES[1]]
        # The first candidates notice was for the superseded report: not the new candidates' publication.
        with pytest.raises(PermissionDenied):
            evaluation.published_candidates(s, ew.project_id, ew.world.actors["ten"])
        ew.run.at("2026-10-23T09:00:00+08:00")
        notices.publish(s, kind="candidates", title="中标候选人公示（复核后）", body="…", actor="system",
                        project_id=ew.project_id)
    with ctx.sessions() as s:
        shown = evaluation.published_candidates(s, ew.project_id, ew.world.actors["ten"])
        assert [c["bidder_name"] for c in shown] == [NAMES[0], NAMES[1]]
        history = evaluation.report_history(s, evaluation_id, ew.world.actors["stf"])
        assert [(h["review"], h["sha256"], h["superseded"], len(h["signers"])) for h in history] == [
            (0, first_sha, True, 5), (1, new_sha, False, 5)]
        assert evaluation.superseded_report(s, evaluation_id, ew.auditor, 0).sha256 == first_sha
        with pytest.raises(PermissionDenied):
            evaluation.superseded_report(s, evaluation_id, ew.world.actors["stf"], 0)
        # Both versions land in the archive, each under its own sha256.
        items = list(archive_items.evaluation_reports(s, s.get(Project, ew.project_id)))
        assert [(i.source["review"], i.sha256, i.source["superseded"]) for i in items] == [
            (0, first_sha, True), (1, new_sha, False)]
        assert audit.verify(s).ok
        actions = list(s.execute(select(audit.AuditEvent.action).where(
            audit.AuditEvent.action.like("evaluation.%")).order_by(audit.AuditEvent.seq)).scalars())
    assert actions.count("evaluation.reopen") == 1 and actions.count("evaluation.report") == 2
    assert actions.count("evaluation.complete") == 2 and actions.count("evaluation.sign") == 10


# -- replacing a member during the evaluation (条例 §48) -----------------------------------------------------------


def join(ctx, ew, seat_id: int) -> tuple[str, object]:
    """The redrawn expert confirms the seat and gets a demo certificate; return (username, actor)."""
    from engine import draw, pki
    from engine.actors import load_actor
    from engine.models import User

    with ctx.sessions.begin() as s:
        seat = s.get(draw.DrawSeat, seat_id)
        user = s.get(User, seat.expert_id)
        actor = load_actor(s, user.username)
        draw.respond(s, seat_id, actor, accept=True)
        _, key_path = pki.issue_demo_certificate(s, ew.run.market.demo, user, None)
        ew.keys[user.username] = key_path.read_bytes()
        return user.username, load_actor(s, user.username)


def test_staff_replace_a_member_whose_sheets_become_void_and_the_replacement_evaluates(ctx, comprehensive):
    from engine import draw

    ew = comprehensive
    evaluation_id = start(ctx, ew)
    names, members = list(ew.members), list(ew.members.values())
    stf = ew.world.actors["stf"]
    qualify(ctx, ew, evaluation_id, except_last=True)  # members 1-4 submitted; member 5 has not
    gone = members[1]
    before = counts(ctx)
    for actor, expert_id, grounds, reason, error, message in [
        (members[0], gone.user_id, "withdrawal", "与投标人有利害关系", PermissionDenied, "may not draw"),
        (ew.world.actors["ten"], gone.user_id, "withdrawal", "与投标人有利害关系", PermissionDenied, "may not draw"),
        (stf, ew.outsider.user_id, "withdrawal", "与投标人有利害关系", NotFound, "不是评标 .* 的评标委员会成员"),
        (stf, gone.user_id, "withdrawal", "   ", EngineError, "须说明理由"),
        (stf, gone.user_id, "bored", "不想评了", EngineError, "更换事由"),
    ]:
        with ctx.sessions() as s, pytest.raises(error, match=message):
            evaluation.replace_member(s, evaluation_id, actor, expert_id, grounds=grounds, reason=reason)
    assert counts(ctx) == before

    with ctx.sessions.begin() as s:
        seat = evaluation.replace_member(s, evaluation_id, stf, gone.user_id, grounds="withdrawal",
                                         reason="评标中发现与第二名投标人存在利害关系，应当回避")
        seat_id, new_expert = seat.id, seat.expert_id
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        assert gone.user_id not in row.members and len(row.members) == 4 and new_expert not in row.members
        (void,) = evaluation.void_sheets(s, evaluation_id)
        assert (void.expert_id, void.submitted_at is not None) == (gone.user_id, True)
        assert void.void_reason.startswith("回避：")
        view = evaluation.progress(s, evaluation_id, stf)
        assert [v["seat_id"] for v in view["vacancies"]] == [seat_id]
        assert view["replacements"][0]["expert_id"] == gone.user_id
    with ctx.sessions() as s:  # the class's stream is exhausted now: another replacement there is refused
        same = next(x.expert_id for x in draw.seats_of(s, ew.draw_id)
                    if x.status == "confirmed" and x.class_code == s.get(draw.DrawSeat, seat_id).class_code)
    before = counts(ctx)
    with ctx.sessions() as s, pytest.raises(EngineError, match="可抽取的专家不足"):
        evaluation.replace_member(s, evaluation_id, stf, same, grounds="health", reason="身体不适")
    assert counts(ctx) == before
    with ctx.sessions() as s:  # a void sheet is kept as it is
        (void,) = evaluation.void_sheets(s, evaluation_id)
        void.entries = {}
        with pytest.raises(ReportImmutable):
            s.flush()
    with ctx.sessions() as s, pytest.raises(PermissionDenied):
        evaluation.save_sheet(s, evaluation_id, gone, "qualification", all_pass(ew.bid_ids), submit=True)
    qualify_last(ctx, ew, evaluation_id)
    with ctx.sessions() as s:  # every remaining member submitted, but the seat is vacant: no advance
        assert evaluation.get(s, evaluation_id).status == "qualification"

    name, newcomer = join(ctx, ew, seat_id)
    with ctx.sessions() as s:
        assert newcomer.user_id in evaluation.get(s, evaluation_id).members
        assert evaluation.my_sheet(s, evaluation_id, newcomer, "qualification") is None
    with ctx.sessions.begin() as s:
        evaluation.save_sheet(s, evaluation_id, newcomer, "qualification",
                              all_pass(ew.bid_ids, qualification=(ew.bid_ids[3], FAIL_REASON)), submit=True)
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        assert (row.status, row.qualified) == ("scoring", ew.bid_ids[:3])
    committee = {**{n: a for n, a in ew.members.items() if a is not gone}, name: newcomer}
    for actor in committee.values():
        with ctx.sessions.begin() as s:
            evaluation.save_sheet(s, evaluation_id, actor, "scoring", scores(ew, "25", "9"), submit=True)
    with ctx.sessions() as s:
        report = evaluation.report_of(s, evaluation.get(s, evaluation_id))
        assert {m["expert_id"] for m in report.content["committee"]} == {a.user_id for a in committee.values()}
        assert report.content["replacements"][0]["replaced_by"] == newcomer.user_id
        failures = report.content["qualification"][str(ew.bid_ids[3])]["failures"]
        assert gone.user_id not in {f["expert_id"] for f in failures}  # the void judgement is not counted
    with ctx.sessions() as s, pytest.raises(PermissionDenied):
        evaluation.sign_report(s, evaluation_id, gone, ew.sign(names[1], report.sha256))
    sign_all(ctx, ew, evaluation_id, committee)
    with ctx.sessions() as s:
        assert evaluation.get(s, evaluation_id).status == "complete"
        replay = draw.replay_draw(draw.draw_record(s, ew.draw_id))
        assert replay.matches and {p.expert_id for p in replay.committee} == {a.user_id for a in committee.values()}
        assert audit.verify(s).ok
        actions = set(s.execute(select(audit.AuditEvent.action)).scalars())
    assert {"evaluation.replace", "evaluation.join", "draw.replace", "draw.redraw"} <= actions
    with ctx.sessions() as s, pytest.raises(InvalidState, match="不能更换评委"):
        evaluation.replace_member(s, evaluation_id, stf, newcomer.user_id, grounds="health", reason="生病")


def test_a_replacement_during_scoring_reviews_qualification_first_and_a_changed_outcome_voids_the_scores(
        ctx, comprehensive):
    ew = comprehensive
    evaluation_id = start(ctx, ew)
    members = list(ew.members.values())
    stf = ew.world.actors["stf"]
    qualify(ctx, ew, evaluation_id)  # bid 4 fails 资质 for members 1-3
    score_all(ctx, ew, evaluation_id, skip=4)
    with ctx.sessions.begin() as s:
        seat_id = evaluation.replace_member(s, evaluation_id, stf, members[0].user_id, grounds="absent",
                                            reason="评标期间擅自离开，联系不上").id
    name, newcomer = join(ctx, ew, seat_id)
    with ctx.sessions() as s, pytest.raises(InvalidState, match="须先提交资格审查"):
        evaluation.save_sheet(s, evaluation_id, newcomer, "scoring", scores(ew, "25", "9"), submit=True)
    with ctx.sessions.begin() as s:  # the replacement passes bid 4: now only 2 of 5 fail it
        evaluation.save_sheet(s, evaluation_id, newcomer, "qualification", all_pass(ew.bid_ids), submit=True)
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        assert (row.status, row.qualified) == ("scoring", ew.bid_ids)
        voided = evaluation.void_sheets(s, evaluation_id)
        # the replaced member's two sheets, and the three scoring sheets made for the old outcome
        assert sorted((v.expert_id, v.kind) for v in voided) == sorted(
            [(members[0].user_id, "qualification"), (members[0].user_id, "scoring")]
            + [(a.user_id, "scoring") for a in members[1:4]])
        assert evaluation.my_sheet(s, evaluation_id, members[1], "scoring") is None
    committee = [newcomer, *members[1:]]
    sheet = {**scores(ew, "25", "9"), str(ew.bid_ids[3]): {"f2": "20", "f3": "7"}}
    for actor in committee:
        with ctx.sessions.begin() as s:
            evaluation.save_sheet(s, evaluation_id, actor, "scoring", sheet, submit=True)
    with ctx.sessions() as s:
        row = evaluation.get(s, evaluation_id)
        report = evaluation.report_of(s, row)
        assert row.status == "signing" and len(report.content["scores"]) == 4
        assert [m["expert_id"] for m in report.content["committee"]] == sorted(a.user_id for a in committee)
    assert sign_all(ctx, ew, evaluation_id, {name: newcomer, **dict(list(ew.members.items())[1:])}) == report.sha256
    with ctx.sessions() as s:
        assert evaluation.get(s, evaluation_id).status == "complete"
