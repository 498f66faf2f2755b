"""Public notices: published by a step at its instant, immutable, hashed, listed for the portal."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from conftest import deploy_texts
from helpers import instance
from sqlalchemy import delete, select, text, update

from engine import notices, runtime
from engine.actors import SYSTEM
from engine.errors import InvalidState, NotFound
from engine.models import AuditEvent, Notice, Project
from engine.orgs import add_organisation

PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="notify" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l" name="staff"><bpmn:flowNodeRef>done</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:serviceTask id="first">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id="publish_notice" resultVariable="first_notice">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="kind" type="any" value="FIRST_KIND"/>
            <spiffworkflow:parameter id="title" type="any" value="name + '招标公告'"/>
            <spiffworkflow:parameter id="body" type="any" value="'投标截止时间：' + deadline"/>
            <spiffworkflow:parameter id="data" type="any" value="{'bond': bond, 'deadline': deadline}"/>
          </spiffworkflow:parameters>
        </spiffworkflow:serviceTaskOperator>
      </bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:serviceTask id="second">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id="publish_notice" resultVariable="second_notice">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="kind" type="any" value="'amendment'"/>
            <spiffworkflow:parameter id="amends" type="any" value="'tender'"/>
            <spiffworkflow:parameter id="title" type="any" value="name + '变更公告'"/>
            <spiffworkflow:parameter id="body" type="any" value="'投标截止时间顺延。'"/>
          </spiffworkflow:parameters>
        </spiffworkflow:serviceTaskOperator>
      </bpmn:extensionElements>
      <bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f3</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:userTask id="done"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f4</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="first"/>
    <bpmn:sequenceFlow id="f2" sourceRef="first" targetRef="second"/>
    <bpmn:sequenceFlow id="f3" sourceRef="second" targetRef="done"/>
    <bpmn:sequenceFlow id="f4" sourceRef="done" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>
"""
START = {"name": "甘州区东环路改造工程", "deadline": "2026-10-20T09:30:00+08:00", "bond": Decimal("80000.00")}


@pytest.fixture
def places(ctx):
    """Create a county centre, a department, a tenderer and one project; return their ids."""
    with ctx.sessions.begin() as s:
        centre = add_organisation(s, "zy-ganzhou", "甘州区公共资源交易分中心", "centre", level="county")
        other = add_organisation(s, "zy-gaotai", "高台县公共资源交易分中心", "centre", level="county")
        tenderer = add_organisation(s, "gz-roads", "甘州区城市建设投资有限公司", "company", uscc="91620702MA7ABCD15K")
        projects = [Project(code=f"{prefix}-2026-0001", name=START["name"], category="construction",
                            sub_type="works", location_id=where.id, estimate=Decimal("4000000.00"), funding="state",
                            tenderer_id=tenderer.id, centre_id=where.id, status="registered", registered_by="system")
                    for prefix, where in (("GZ", centre), ("GT", other))]
        s.add_all(projects)
        s.flush()
        return {"centre": centre.id, "other": other.id, "project": projects[0].id, "other_project": projects[1].id}


def run_process(ctx, places, first_kind="'tender'") -> int:
    deploy_texts(ctx, {"notify.bpmn": PROCESS.replace("FIRST_KIND", first_kind)})
    with ctx.sessions.begin() as s:
        return runtime.start_instance(s, "notify", dict(START), SYSTEM, project_id=places["project"],
                                      centre_id=places["centre"], category="construction").id


def test_a_service_task_publishes_and_an_amendment_links_to_the_notice_it_amends(ctx, fixed_clock, places):
    iid = run_process(ctx, places)
    with ctx.sessions() as s:
        tender, amendment = s.execute(select(Notice).order_by(Notice.id)).scalars()
        events = s.execute(select(AuditEvent).where(AuditEvent.action == "notice.publish")).scalars().all()
    assert (tender.kind, tender.title, tender.body) == ("tender", "甘州区东环路改造工程招标公告",
                                                        "投标截止时间：2026-10-20T09:30:00+08:00")
    assert tender.data == {"bond": "80000.00", "deadline": "2026-10-20T09:30:00+08:00"}
    assert (tender.category, tender.centre_id, tender.project_id, tender.instance_id) == (
        "construction", places["centre"], places["project"], iid)
    assert tender.published_at == fixed_clock.now() and tender.published_by == "system"
    assert (amendment.kind, amendment.amends_id) == ("amendment", tender.id)
    assert [(e.instance_id, e.project_id) for e in events] == [(iid, places["project"])] * 2
    assert all(notices.verify(n) for n in (tender, amendment))
    with ctx.sessions() as s:
        data = runtime.load(s, iid).workflow.last_task.data
    assert data["second_notice"]["amends_id"] == data["first_notice"]["id"] == tender.id
    assert data["first_notice"]["published_at"] == "2026-09-29T09:00:00+08:00"


def test_an_amendment_without_the_notice_it_amends_is_an_error(ctx, fixed_clock, places):
    iid = run_process(ctx, places, first_kind="'candidates'")
    row = instance(ctx, iid)
    assert row.status == "error" and row.error["element_id"] == "second"
    assert "no 'tender' notice to amend" in row.error["message"]
    with ctx.sessions() as s:
        assert [n.kind for n in s.execute(select(Notice)).scalars()] == ["candidates"]


def test_unknown_kinds_and_empty_texts_are_refused(session):
    with pytest.raises(InvalidState, match="unknown notice kind 'rumour'"):
        notices.publish(session, kind="rumour", title="t", body="b", actor="system")
    with pytest.raises(InvalidState, match="title and a body"):
        notices.publish(session, kind="tender", title="  ", body="b", actor="system")


def test_a_published_notice_cannot_be_edited_or_deleted(ctx, fixed_clock, places):
    run_process(ctx, places)
    with ctx.sessions() as s:
        notice_id, title = s.execute(select(Notice.id, Notice.title).order_by(Notice.id)).first()
    attempts = [
        lambda s: setattr(s.get(Notice, notice_id), "title", "改过的标题"),
        lambda s: setattr(s.get(Notice, notice_id), "data", {"bond": "1.00"}),
        lambda s: s.delete(s.get(Notice, notice_id)),
        lambda s: s.execute(update(Notice).where(Notice.id == notice_id).values(title="改过的标题")),
        lambda s: s.execute(update(Notice.__table__).values(body="")),
        lambda s: s.execute(delete(Notice).where(Notice.id == notice_id)),
    ]
    for attempt in attempts:
        with pytest.raises(notices.NoticeImmutable), ctx.sessions.begin() as s:
            attempt(s)
    with ctx.sessions() as s:
        notice = notices.get_notice(s, notice_id)
        assert notice.title == title and notices.verify(notice)


def test_an_edit_behind_the_orm_is_detected_by_the_hash(ctx, fixed_clock, places):
    run_process(ctx, places)
    with ctx.sessions.begin() as s:
        s.execute(text("UPDATE notices SET body = :body WHERE kind = 'tender'"), {"body": "投标截止时间：2026-10-21"})
    with ctx.sessions() as s:
        checked = {n.kind: notices.verify(n) for n in s.execute(select(Notice)).scalars()}
    assert checked == {"tender": False, "amendment": True}


def test_the_portal_lists_by_category_centre_date_and_kind_newest_first(ctx, fixed_clock, places):
    day = datetime.fromisoformat("2026-09-01T09:00:00+08:00")
    with ctx.sessions.begin() as s:
        for i in range(25):  # one a day from 09-01 09:00; every fifth at the other centre
            fixed_clock.set(day + timedelta(days=i))
            project = places["other_project"] if i % 5 == 4 else places["project"]
            notices.publish(s, kind="result" if i % 2 else "tender", title=f"公告{i}", body="正文", actor="system",
                            project_id=project, data={"i": i})
    with ctx.sessions() as s:
        first = notices.list_notices(s, category="construction", per_page=10)
        assert (first.total, first.pages, [n.title for n in first.items][:3]) == (25, 3, ["公告24", "公告23", "公告22"])
        assert len(notices.list_notices(s, category="construction", page=3, per_page=10).items) == 5
        ours = notices.list_notices(s, centre_id=places["centre"], kind="tender")
        assert [n.title for n in ours.items] == [f"公告{i}" for i in range(24, -1, -1) if i % 2 == 0 and i % 5 != 4]
        window = notices.list_notices(s, since=date(2026, 9, 10), until=date(2026, 9, 12))
        assert [n.title for n in window.items] == ["公告11", "公告10", "公告9"]
        instant = notices.list_notices(s, since=datetime.fromisoformat("2026-09-10T09:00:00.000001+08:00"),
                                       until=datetime.fromisoformat("2026-09-12T09:00:00+08:00"))
        assert [n.title for n in instant.items] == ["公告10"]
        assert notices.list_notices(s, category="procurement").total == 0
        with pytest.raises(NotFound):
            notices.get_notice(s, 999)


def test_amendments_of_a_notice_in_order(ctx, fixed_clock, places):
    with ctx.sessions.begin() as s:
        tender = notices.publish(s, kind="tender", title="招标公告", body="正文", actor="system")
        later = [notices.publish(s, kind="amendment", title=f"变更{i}", body="正文", actor="system",
                                 amends_id=tender.id) for i in range(2)]
        ids = (tender.id, [n.id for n in later])
    with ctx.sessions() as s:
        assert [n.id for n in notices.amendments_of(s, ids[0])] == ids[1]
