"""Complaints (投诉, R17, 条例 §60–§62) through the engine: filing checks, acceptance, pause, decision, scope.

The fixed clock starts on 2026-09-29 09:00, just before the National Day holidays
(10-01..10-07, with 10-10 a make-up working day), so every working-day limit here
runs across them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

import pytest
from conftest import ROOT, deploy_paths
from lxml import etree
from sqlalchemy import func, select

from engine import complaints, files, notices, runtime, scope, timers
from engine.actors import SYSTEM, Actor, add_user, load_actor
from engine.complaint_demo import seed_demo_complaints
from engine.complaints import Complaint
from engine.errors import FormValidationError, InvalidState, PermissionDenied
from engine.models import AuditEvent, InboxTask, Instance, Notice, Project
from engine.orgs import add_organisation
from engine.xmlsafe import NS

DIAGRAM = ROOT / "bpmn" / "complaint.bpmn"
SH = "+08:00"


@dataclass
class World:
    """The organisations, people, project (with its running construction instance) and an uploaded file."""

    project_id: int
    project_instance_id: int
    department_id: int
    actors: dict[str, Actor]
    pdf: dict


@pytest.fixture
def world(ctx) -> World:
    """Deploy everything; create 住建 and 交通 regulators, two bidders, a project whose procedure is running."""
    return make_world(ctx)


def make_world(ctx) -> World:
    """Build the world of these tests (the web tests use it too)."""
    deploy_paths(ctx, ROOT / "rules", ROOT / "forms", ROOT / "bpmn")
    with ctx.sessions.begin() as s:
        add_organisation(s, "zy-centre", "张掖市公共资源交易中心", "centre", level="city")
        county = add_organisation(s, "zy-linze", "临泽县公共资源交易分中心", "centre", level="county",
                                  parent_code="zy-centre")
        zjj = add_organisation(s, "dept-zjj", "张掖市住房和城乡建设局", "department")
        jtj = add_organisation(s, "dept-jtj", "张掖市交通运输局", "department")
        tenderer = add_organisation(s, "lz-water", "临泽县水务投资有限公司", "company", uscc="91620702MA7ABCD15K")
        first = add_organisation(s, "b-longyuan", "甘肃陇原建设工程有限公司", "company", uscc="91620702MA7ABCD12A")
        second = add_organisation(s, "b-hexi", "张掖市河西路桥有限责任公司", "company", uscc="91620702MA7ABCD13D")
        for name, roles, org in (("ten", ["tenderer"], tenderer), ("stf", ["staff"], county),
                                 ("reg", ["regulator"], zjj), ("jt", ["regulator"], jtj),
                                 ("bid1", ["bidder"], first), ("bid2", ["bidder"], second),
                                 ("exp", ["expert"], None)):
            add_user(s, name, roles, organisation_id=org.id if org else None, password=f"secret-{name}")
        actors = {n: load_actor(s, n) for n in ("ten", "stf", "reg", "jt", "bid1", "bid2", "exp")}
        project = Project(code="LZ-2026-0001", name="临泽县城区供水管网改造工程", category="construction",
                          sub_type="works", location_id=county.id, estimate=Decimal("8000000.00"), funding="state",
                          tenderer_id=tenderer.id, centre_id=county.id, department_id=zjj.id,
                          process_key="construction_tender", status="registered", registered_by="ten")
        s.add(project)
        s.flush()
        start = {"project_id": project.id, "project_code": project.code, "project_name": project.name,
                 "category": "construction", "sub_type": "works", "estimate": Decimal("8000000.00"),
                 "funding": "state", "location": "zy-linze", "centre_level": "county"}
        instance = runtime.start_instance(s, "construction_tender", start, actors["ten"], project_id=project.id,
                                          centre_id=county.id, department_id=zjj.id, tenderer_id=tenderer.id,
                                          category="construction", title=project.name)
        project.instance_id = instance.id
        pdf = files.value_of(files.store(s, b"%PDF-1.7\n% evidence\n", "证明材料.pdf", "application/pdf",
                                         actors["bid1"], config=ctx.config))
        return World(project.id, instance.id, zjj.id, actors, pdf)


def filing(world: World, **changes) -> dict:
    data = {"project_code": "LZ-2026-0001", "complainant_name": "甘肃陇原建设工程有限公司",
            "complainant_contact": "王工 13900000000", "matter": "other", "knew_on": "2026-09-19",
            "facts": "招标人在开标前向个别投标人透露了标底。", "grounds": "违反《招标投标法》第二十二条。",
            "claims": "责令改正，重新招标。", "evidence": [{"title": "录音整理稿", "file": world.pdf}]}
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def file(ctx, world: World, actor: str = "bid1", **changes) -> Complaint:
    with ctx.sessions.begin() as s:
        return complaints.file_complaint(s, world.actors[actor], filing(world, **changes))


def tasks(ctx, instance_id: int) -> dict[str, InboxTask]:
    with ctx.sessions() as s:
        rows = s.execute(select(InboxTask).where(InboxTask.instance_id == instance_id)).scalars()
        return {row.element_id: row for row in rows}


def do(ctx, instance_id: int, element: str, data: dict, actor: Actor) -> None:
    task = tasks(ctx, instance_id)[element]
    with ctx.sessions.begin() as s:
        runtime.complete_task(s, task.task_id, data, actor)


def row(ctx, model, key):
    with ctx.sessions() as s:
        return s.get(model, key)


def counts(ctx) -> tuple[int, int, int]:
    with ctx.sessions() as s:
        return (s.execute(select(func.count()).select_from(Complaint)).scalar(),
                s.execute(select(func.count()).select_from(Instance).where(Instance.process_key == "complaint"))
                .scalar(),
                s.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "complaint.file"))
                .scalar())


ACCEPT = {"acceptance": "accept", "acceptance_reason": "投诉人是投标人，投诉在期限内，材料齐全，予以受理。",
          "order_pause": True}
DECIDE = {"outcome": "upheld", "decision_text": "经查，招标人泄露标底属实，责令重新招标。",
          "measures": "责令重新招标。"}


def test_a_complaint_filed_in_time_starts_its_own_process_linked_to_the_project(ctx, fixed_clock, world):
    complaint = file(ctx, world)
    assert complaint.number == "LZ-2026-0001-TS01" and complaint.status == "filed"
    assert complaint.filing_deadline == datetime.fromisoformat("2026-09-30T00:00:00" + SH)
    instance = row(ctx, Instance, complaint.instance_id)
    assert (instance.process_key, instance.project_id, instance.department_id) == (
        "complaint", world.project_id, world.department_id)
    accept = tasks(ctx, instance.id)["accept_complaint"]
    assert accept.role == "regulator" and accept.department_id == world.department_id
    # 3 working days from 09-29: 09-30, 10-08, 10-09 (the National Day holidays do not count).
    assert accept.due_at == datetime.fromisoformat("2026-10-10T00:00:00" + SH)
    assert counts(ctx) == (1, 1, 1)
    second = file(ctx, world, actor="bid2", complainant_name="张掖市河西路桥有限责任公司")
    assert second.number == "LZ-2026-0001-TS02"


def test_a_filing_after_ten_days_is_refused_citing_article_60_and_nothing_is_stored(ctx, fixed_clock, world):
    with pytest.raises(FormValidationError) as refused:
        file(ctx, world, knew_on="2026-09-18")
    message = " ".join(refused.value.errors["knew_on"])
    assert "第六十条" in message and "2026-09-28 24:00" in message
    with pytest.raises(FormValidationError) as future:
        file(ctx, world, knew_on="2026-09-30")
    assert "knew_on" in future.value.errors
    assert counts(ctx) == (0, 0, 0)


def test_the_filing_period_ending_in_the_national_day_holidays_moves_to_the_next_working_day(ctx, fixed_clock,
                                                                                             world):
    assert complaints.filing_deadline(date(2026, 9, 24), "other") == datetime.fromisoformat(
        "2026-10-09T00:00:00" + SH)
    fixed_clock.set(datetime.fromisoformat("2026-10-08T16:00:00" + SH))
    assert file(ctx, world, knew_on="2026-09-24").status == "filed"
    fixed_clock.set(datetime.fromisoformat("2026-10-09T00:00:00" + SH))
    with pytest.raises(FormValidationError):
        file(ctx, world, knew_on="2026-09-24")


def test_a_complaint_on_the_evaluation_result_needs_a_prior_objection_whose_answer_time_does_not_count(
        ctx, fixed_clock, world):
    with pytest.raises(FormValidationError) as refused:
        file(ctx, world, matter="evaluation_result", knew_on="2026-09-25")
    message = " ".join(refused.value.errors["objection_reference"])
    assert "第六十条第二款" in message and "第五十四条" in message
    objection = {"matter": "evaluation_result", "knew_on": "2026-09-15", "objection_reference": "异议 YY-03",
                 "objection_raised_on": "2026-09-16"}
    with pytest.raises(FormValidationError) as late:  # answered 09-19: 3 days excluded, the period ended 09-28
        file(ctx, world, **objection, objection_answered_on="2026-09-19")
    assert "异议答复期间不计算在内" in " ".join(late.value.errors["knew_on"])
    with pytest.raises(FormValidationError) as backwards:
        file(ctx, world, **objection, objection_answered_on="2026-09-14")
    assert "objection_answered_on" in backwards.value.errors
    assert counts(ctx) == (0, 0, 0)
    complaint = file(ctx, world, **objection, objection_answered_on="2026-09-20")  # 4 days excluded: until 09-29
    assert complaint.filing_deadline == datetime.fromisoformat("2026-09-30T00:00:00" + SH)
    assert complaint.objection_reference == "异议 YY-03"


def test_only_bidders_and_interested_parties_may_complain_with_uploaded_evidence(ctx, fixed_clock, world):
    for name in ("exp", "stf", "reg"):
        with pytest.raises(PermissionDenied, match="第六十条"):
            file(ctx, world, actor=name)
    with pytest.raises(FormValidationError) as missing:
        file(ctx, world, evidence=[{"title": "伪造", "file": {**world.pdf, "sha256": "ab" * 32}}])
    assert "evidence/0/file" in missing.value.errors
    with pytest.raises(FormValidationError) as none:
        file(ctx, world, evidence=[], project_code="LZ-2026-9999")
    assert {"evidence", "project_code"} <= set(none.value.errors)
    assert counts(ctx) == (0, 0, 0)
    assert file(ctx, world, actor="ten").status == "filed"  # the project's tenderer is an interested party


def test_acceptance_with_a_pause_suspends_the_project_and_the_decision_is_published_and_resumes_it(
        ctx, fixed_clock, world):
    complaint = file(ctx, world)
    fixed_clock.set(datetime.fromisoformat("2026-09-30T10:00:00" + SH))
    do(ctx, complaint.instance_id, "accept_complaint", ACCEPT, world.actors["reg"])
    project = row(ctx, Instance, world.project_instance_id)
    assert project.status == "suspended"
    assert complaint.number in project.status_reason and "第六十二条" in project.status_reason
    with ctx.sessions() as s:
        event = s.execute(select(AuditEvent).where(AuditEvent.instance_id == world.project_instance_id,
                                                   AuditEvent.action == "instance.suspend")).scalar_one()
        assert event.actor == "reg"
        assert s.get(Complaint, complaint.id).status == "accepted" and s.get(Complaint, complaint.id).paused
    investigate = tasks(ctx, complaint.instance_id)["investigate"]
    # 30 working days after 09-30 (10-01..10-07 skipped, the make-up day 10-10 counted): through 11-17.
    assert investigate.due_at == datetime.fromisoformat("2026-11-18T00:00:00" + SH)
    do(ctx, complaint.instance_id, "investigate",
       {"investigation_findings": "调取开标记录和通话记录。", "excluded_working_days": 5, "next_step": "decide"},
       world.actors["reg"])
    # 5 working days spent on expert review do not count (§61 ¶2): through 11-24.
    assert tasks(ctx, complaint.instance_id)["decide_complaint"].due_at == datetime.fromisoformat(
        "2026-11-25T00:00:00" + SH)
    fixed_clock.set(datetime.fromisoformat("2026-10-20T15:00:00" + SH))
    do(ctx, complaint.instance_id, "decide_complaint", DECIDE, world.actors["reg"])
    assert row(ctx, Instance, complaint.instance_id).status == "completed"
    assert row(ctx, Instance, world.project_instance_id).status in runtime.ACTIVE
    with ctx.sessions.begin() as s:
        stored = s.get(Complaint, complaint.id)
        assert (stored.status, stored.outcome, stored.paused) == ("decided", "upheld", False)
        notice = s.get(Notice, stored.notice_id)
        assert notice.kind == "complaint_decision" and notice.project_id == world.project_id
        assert complaint.number in notice.title and "投诉成立" in notice.body and "责令重新招标" in notice.body
        assert notices.verify(notice)
        resume = s.execute(select(AuditEvent).where(AuditEvent.instance_id == world.project_instance_id,
                                                    AuditEvent.action == "instance.resume")).scalar_one()
        assert resume.actor == "reg"
        assert [n.id for n in notices.list_notices(s, kind="complaint_decision").items] == [notice.id]
    with pytest.raises(notices.NoticeImmutable), ctx.sessions.begin() as s:
        s.get(Notice, notice.id).body = "改写"
        s.flush()


def test_a_pause_ordered_during_the_investigation_and_no_pause_at_all(ctx, fixed_clock, world):
    complaint = file(ctx, world)
    do(ctx, complaint.instance_id, "accept_complaint", {**ACCEPT, "order_pause": False}, world.actors["reg"])
    assert row(ctx, Instance, world.project_instance_id).status in runtime.ACTIVE
    findings = {"investigation_findings": "初步核实。", "excluded_working_days": 0}
    do(ctx, complaint.instance_id, "investigate", {**findings, "next_step": "continue"}, world.actors["reg"])
    do(ctx, complaint.instance_id, "investigate", {**findings, "next_step": "pause"}, world.actors["reg"])
    assert row(ctx, Instance, world.project_instance_id).status == "suspended"
    assert set(tasks(ctx, complaint.instance_id)) == {"investigate"}
    do(ctx, complaint.instance_id, "investigate", {**findings, "next_step": "decide"}, world.actors["reg"])
    do(ctx, complaint.instance_id, "decide_complaint", {**DECIDE, "outcome": "dismissed"}, world.actors["reg"])
    assert row(ctx, Instance, world.project_instance_id).status in runtime.ACTIVE
    assert row(ctx, Complaint, complaint.id).outcome == "dismissed"


def test_a_refused_complaint_ends_without_a_notice(ctx, fixed_clock, world):
    complaint = file(ctx, world)
    do(ctx, complaint.instance_id, "accept_complaint",
       {"acceptance": "refuse", "acceptance_reason": "不属于本部门职责。", "order_pause": False}, world.actors["reg"])
    stored = row(ctx, Complaint, complaint.id)
    assert (stored.status, stored.status_reason) == ("refused", "不属于本部门职责。")
    assert row(ctx, Instance, complaint.instance_id).status == "completed"
    assert row(ctx, Instance, world.project_instance_id).status in runtime.ACTIVE
    with ctx.sessions() as s:
        assert s.execute(select(Notice).where(Notice.kind == "complaint_decision")).first() is None


def test_an_overdue_acceptance_opens_the_regulators_escalation_after_the_holidays(ctx, fixed_clock, world):
    complaint = file(ctx, world)
    assert timers.sweep(ctx.sessions, datetime.fromisoformat("2026-10-09T23:59:00" + SH)).fired == 0
    assert set(tasks(ctx, complaint.instance_id)) == {"accept_complaint"}
    timers.sweep(ctx.sessions, datetime.fromisoformat("2026-10-10T00:00:01" + SH))
    open_now = tasks(ctx, complaint.instance_id)
    assert set(open_now) == {"accept_complaint", "acceptance_escalation"}
    assert open_now["acceptance_escalation"].role == "regulator"
    do(ctx, complaint.instance_id, "acceptance_escalation",
       {"overdue_action": "urge", "overdue_opinion": "督促立即办理。"}, world.actors["reg"])
    assert set(tasks(ctx, complaint.instance_id)) == {"accept_complaint"}


def test_an_overdue_decision_opens_the_escalation_and_the_handling_goes_on(ctx, fixed_clock, world):
    complaint = file(ctx, world)
    do(ctx, complaint.instance_id, "accept_complaint", {**ACCEPT, "order_pause": False}, world.actors["reg"])
    timers.sweep(ctx.sessions, datetime.fromisoformat("2026-11-16T23:00:00" + SH))
    assert set(tasks(ctx, complaint.instance_id)) == {"investigate"}
    timers.sweep(ctx.sessions, datetime.fromisoformat("2026-11-17T00:00:01" + SH))
    assert set(tasks(ctx, complaint.instance_id)) == {"investigate", "decision_escalation"}


def test_only_the_supervising_department_and_the_complainant_see_the_complaint(ctx, fixed_clock, world):
    complaint = file(ctx, world)
    accept = tasks(ctx, complaint.instance_id)["accept_complaint"]
    actors = world.actors
    with ctx.sessions() as s:
        for name in ("reg", "bid1", "stf", "ten"):
            assert [c.id for c in complaints.list_complaints(s, actors[name])] == [complaint.id], name
            complaints.get_complaint(s, actors[name], complaint.id)
        for name in ("jt", "bid2", "exp"):
            assert complaints.list_complaints(s, actors[name]) == [], name
            with pytest.raises(PermissionDenied):
                complaints.get_complaint(s, actors[name], complaint.id)
        with pytest.raises(PermissionDenied):
            scope.check_task(actors["jt"], accept)
        assert not scope.can_view_instance(actors["jt"], s.get(Instance, complaint.instance_id))
    with pytest.raises(PermissionDenied), ctx.sessions.begin() as s:
        runtime.complete_task(s, accept.task_id, ACCEPT, actors["jt"])
    assert row(ctx, Complaint, complaint.id).status == "filed"
    assert row(ctx, Instance, world.project_instance_id).status in runtime.ACTIVE


def test_the_complainant_withdraws_and_the_pause_is_lifted(ctx, fixed_clock, world):
    complaint = file(ctx, world)
    do(ctx, complaint.instance_id, "accept_complaint", ACCEPT, world.actors["reg"])
    assert row(ctx, Instance, world.project_instance_id).status == "suspended"
    with pytest.raises(PermissionDenied), ctx.sessions.begin() as s:
        complaints.withdraw_complaint(s, complaint.id, world.actors["bid2"], "不是我的投诉")
    with pytest.raises(InvalidState), ctx.sessions.begin() as s:
        complaints.withdraw_complaint(s, complaint.id, world.actors["bid1"], "  ")
    with ctx.sessions.begin() as s:
        complaints.withdraw_complaint(s, complaint.id, world.actors["bid1"], "已与招标人协商解决。")
    assert row(ctx, Complaint, complaint.id).status == "withdrawn"
    assert row(ctx, Instance, complaint.instance_id).status == "terminated"
    assert row(ctx, Instance, world.project_instance_id).status in runtime.ACTIVE
    assert tasks(ctx, complaint.instance_id) == {}
    with ctx.sessions() as s:
        event = s.execute(select(AuditEvent).where(AuditEvent.action == "complaint.withdrawn")).scalar_one()
        assert event.actor == "bid1" and event.project_id == world.project_id
    with pytest.raises(InvalidState, match="撤回"), ctx.sessions.begin() as s:
        complaints.withdraw_complaint(s, complaint.id, world.actors["bid1"], "再次撤回")


def test_a_project_paused_by_someone_else_is_not_resumed_by_the_complaint(ctx, fixed_clock, world):
    with ctx.sessions.begin() as s:
        runtime.suspend(s, world.project_instance_id, "紧急纠错：核查开标记录", world.actors["stf"])
    complaint = file(ctx, world)
    do(ctx, complaint.instance_id, "accept_complaint", ACCEPT, world.actors["reg"])
    assert not row(ctx, Complaint, complaint.id).paused
    do(ctx, complaint.instance_id, "investigate",
       {"investigation_findings": "查明。", "excluded_working_days": 0, "next_step": "decide"}, world.actors["reg"])
    do(ctx, complaint.instance_id, "decide_complaint", DECIDE, world.actors["reg"])
    assert row(ctx, Instance, world.project_instance_id).status == "suspended"


def test_the_diagram_names_an_article_for_every_timer_and_pause_and_draws_every_element():
    root = etree.parse(str(DIAGRAM)).getroot()
    annotations = {a.get("id"): "".join(a.itertext()) for a in root.iterfind(".//bpmn:textAnnotation", NS)}
    annotated: dict[str, list[str]] = {}
    for association in root.iterfind(".//bpmn:association", NS):
        annotated.setdefault(association.get("targetRef"), []).append(annotations[association.get("sourceRef")])
    article = re.compile(r"第[一二三四五六七八九十百]+条")
    checked = [e.getparent().get("id") for e in root.iterfind(".//bpmn:timerEventDefinition", NS)]
    checked += ["filed", "pause_on_acceptance", "pause_project"]
    assert len(checked) == 5
    for element in checked:
        assert any(article.search(text) for text in annotated.get(element, [])), element
    drawn = {d.get("bpmnElement") for d in root.iter("{http://www.omg.org/spec/BPMN/20100524/DI}BPMNShape",
                                                     "{http://www.omg.org/spec/BPMN/20100524/DI}BPMNEdge")}
    process = root.find("bpmn:process", NS)
    ids = {e.get("id") for e in process.iterdescendants(f"{{{NS['bpmn']}}}*") if e.get("id")
           and etree.QName(e).localname != "laneSet" and not etree.QName(e).localname.endswith("EventDefinition")}
    assert ids - drawn == set()


def test_an_impossible_date_is_refused(ctx, fixed_clock, world):
    with pytest.raises(FormValidationError) as bad:
        with ctx.sessions.begin() as s:
            complaints.file_complaint(s, SYSTEM, filing(world, knew_on="2026-13-01"))
    assert "knew_on" in bad.value.errors
    assert counts(ctx) == (0, 0, 0)


def test_the_demo_complaints_leave_one_waiting_and_one_decided_and_published(ctx, fixed_clock, world):
    numbers = seed_demo_complaints(ctx, complainant="bid1", regulator="reg")
    assert numbers == ["LZ-2026-0001-TS01", "LZ-2026-0001-TS02"]
    with ctx.sessions() as s:
        waiting, decided = s.execute(select(Complaint).order_by(Complaint.id)).scalars()
        assert (waiting.status, decided.status, decided.outcome) == ("filed", "decided", "dismissed")
        assert s.get(Notice, decided.notice_id).kind == "complaint_decision"
    assert set(tasks(ctx, waiting.instance_id)) == {"accept_complaint"}
    assert row(ctx, Instance, world.project_instance_id).status in runtime.ACTIVE


def test_a_complaint_process_started_around_the_filing_cannot_pause_the_project(ctx, fixed_clock, world):
    complaint = file(ctx, world)
    with ctx.sessions.begin() as s:
        forged = runtime.start_instance(s, "complaint", {"complaint_id": complaint.id, "complaint_number": "X"},
                                        world.actors["ten"], department_id=world.department_id).id
    do(ctx, forged, "accept_complaint", ACCEPT, world.actors["reg"])
    errored = row(ctx, Instance, forged)
    assert errored.status == "error" and "file_complaint" in errored.error["message"]
    assert row(ctx, Instance, world.project_instance_id).status in runtime.ACTIVE
    assert row(ctx, Complaint, complaint.id).status == "filed"
