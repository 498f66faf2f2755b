"""Complaint pages: filing through the form and its refusals, who sees a complaint, withdrawal, public decisions."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from browser import browser_login, shot
from conftest import csrf_of, login
from sqlalchemy import func, select
from test_complaints import ACCEPT, DECIDE, World, do, make_world, tasks

from engine import complaints
from engine.complaints import Complaint
from engine.models import Instance

PDF = b"%PDF-1.7\n% complaint evidence\n"


@pytest.fixture
def world(ctx) -> World:
    """The complaint tests' world: 住建 and 交通 regulators, two bidders, a running project."""
    return make_world(ctx)


def client_as(app, username: str):
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


def post_complaint(client, **overrides):
    data = {"csrf_token": csrf_of(client, "/complaints/new"), "project_code": "LZ-2026-0001",
            "complainant_name": "甘肃陇原建设工程有限公司", "complainant_contact": "王工 13900000000",
            "matter": "other", "knew_on": "2026-09-19", "facts": "招标人向个别投标人透露标底。",
            "grounds": "《招标投标法》第二十二条。", "claims": "责令重新招标。", "objection_reference": "",
            "objection_raised_on": "", "objection_answered_on": "", "_group.evidence": "0",
            "evidence.0.title": "录音整理稿", "evidence.0.file": (io.BytesIO(PDF), "录音整理稿.pdf")}
    data.update(overrides)
    return client.post("/complaints/new", data={k: v for k, v in data.items() if v is not None},
                       content_type="multipart/form-data")


def count(ctx) -> int:
    with ctx.sessions() as s:
        return s.execute(select(func.count()).select_from(Complaint)).scalar()


def test_a_bidder_files_a_complaint_and_the_supervising_department_sees_it(app, ctx, fixed_clock, world):
    bidder = client_as(app, "bid1")
    form = bidder.get("/complaints/new?project=LZ-2026-0001").get_data(as_text=True)
    assert "LZ-2026-0001" in form and "甘肃陇原建设工程有限公司" in form and "第六十条" in form
    response = post_complaint(bidder)
    assert response.status_code == 302
    with ctx.sessions() as s:
        complaint = s.execute(select(Complaint)).scalar_one()
    assert response.headers["Location"].endswith(f"/complaints/{complaint.id}")
    page = bidder.get(response.headers["Location"]).get_data(as_text=True)
    assert "LZ-2026-0001-TS01" in page and "待受理" in page and "录音整理稿" in page and "撤回投诉" in page
    regulator = client_as(app, "reg")
    listing = regulator.get(f"/complaints?project={world.project_id}").get_data(as_text=True)
    assert "LZ-2026-0001-TS01" in listing
    shown = regulator.get(f"/complaints/{complaint.id}").get_data(as_text=True)
    assert "决定是否受理" in shown and "2026-10-09 24:00" in shown and "撤回投诉" not in shown
    for name in ("jt", "bid2"):
        other = client_as(app, name)
        assert other.get(f"/complaints/{complaint.id}").status_code == 403
        assert "LZ-2026-0001-TS01" not in other.get("/complaints").get_data(as_text=True)


def test_late_filings_and_missing_objections_come_back_on_the_form_and_store_nothing(app, ctx, fixed_clock, world):
    bidder = client_as(app, "bid1")
    late = post_complaint(bidder, knew_on="2026-09-18")
    assert late.status_code == 400
    assert "第六十条" in late.get_data(as_text=True) and "2026-09-28 24:00" in late.get_data(as_text=True)
    missing = post_complaint(bidder, matter="evaluation_result")
    assert missing.status_code == 400 and "第五十四条" in missing.get_data(as_text=True)
    assert count(ctx) == 0
    assert client_as(app, "exp").get("/complaints/new").status_code == 403


def test_a_complaint_needs_a_csrf_token(app, ctx, fixed_clock, world):
    bidder = client_as(app, "bid1")
    assert post_complaint(bidder, csrf_token=None).status_code == 400
    assert count(ctx) == 0


def test_the_complainant_withdraws_through_the_page(app, ctx, fixed_clock, world):
    bidder = client_as(app, "bid1")
    post_complaint(bidder)
    with ctx.sessions() as s:
        complaint = s.execute(select(Complaint)).scalar_one()
    other = client_as(app, "bid2")
    token = csrf_of(other, "/complaints")
    assert other.post(f"/complaints/{complaint.id}/withdraw",
                      data={"csrf_token": token, "reason": "x"}).status_code == 403
    token = csrf_of(bidder, f"/complaints/{complaint.id}")
    response = bidder.post(f"/complaints/{complaint.id}/withdraw",
                           data={"csrf_token": token, "reason": "已协商解决。"}, follow_redirects=True)
    assert response.status_code == 200 and "已撤回" in response.get_data(as_text=True)
    with ctx.sessions() as s:
        assert s.get(Instance, complaint.instance_id).status == "terminated"


def test_a_decision_is_public_and_linked_from_the_complaint(app, ctx, fixed_clock, world):
    with ctx.sessions.begin() as s:
        complaint = complaints.file_complaint(s, world.actors["bid1"], {
            "project_code": "LZ-2026-0001", "complainant_name": "甘肃陇原建设工程有限公司", "matter": "other",
            "knew_on": "2026-09-19", "facts": "事实", "grounds": "依据", "claims": "请求",
            "evidence": [{"title": "证据", "file": world.pdf}]})
    do(ctx, complaint.instance_id, "accept_complaint", ACCEPT, world.actors["reg"])
    regulator = client_as(app, "reg")
    paused = regulator.get(f"/complaints/{complaint.id}").get_data(as_text=True)
    assert "已责令暂停" in paused and "暂停招标投标活动" in paused
    fixed_clock.set(datetime.fromisoformat("2026-10-12T10:00:00+08:00"))
    do(ctx, complaint.instance_id, "investigate",
       {"investigation_findings": "查明。", "excluded_working_days": 0, "next_step": "decide"}, world.actors["reg"])
    do(ctx, complaint.instance_id, "decide_complaint", DECIDE, world.actors["reg"])
    assert tasks(ctx, complaint.instance_id) == {}
    public = app.test_client().get("/complaints/decisions").get_data(as_text=True)
    assert "投诉处理决定（LZ-2026-0001-TS01）" in public
    shown = client_as(app, "bid1").get(f"/complaints/{complaint.id}").get_data(as_text=True)
    assert "投诉成立" in shown and "/portal/notices/" in shown and "已处理" in shown


@pytest.mark.parametrize("username", ["bid1", "reg", "stf", "ten"])
def test_the_list_opens_for_every_viewer(app, ctx, fixed_clock, world, username):
    assert client_as(app, username).get("/complaints").status_code == 200


def test_a_bidder_files_in_the_browser_and_the_regulator_sees_the_pause(app, ctx, fixed_clock, world, page, tmp_path):
    evidence = tmp_path / "录音整理稿.pdf"
    evidence.write_bytes(PDF)
    browser_login(page, "bid1", "secret-bid1")
    page.goto(page.base_url + "/complaints/new?project=LZ-2026-0001")
    page.select_option("[name=matter]", "other")
    page.fill("[name=knew_on]", "2026-09-19")
    page.fill("[name=facts]", "招标人在开标前向个别投标人透露了标底。")
    page.fill("[name=grounds]", "违反《招标投标法》第二十二条。")
    page.fill("[name=claims]", "责令改正，重新招标。")
    page.fill("[name='evidence.0.title']", "录音整理稿")
    page.set_input_files("[name='evidence.0.file']", str(evidence))
    shot(page, "complaints-new")
    page.click("#task-form > button[type=submit]")
    page.wait_for_selector("text=LZ-2026-0001-TS01")
    shot(page, "complaints-filed")
    with ctx.sessions() as s:
        complaint = s.execute(select(Complaint)).scalar_one()
    do(ctx, complaint.instance_id, "accept_complaint", ACCEPT, world.actors["reg"])
    regulator = page.context.browser.new_context(locale="zh-CN", viewport={"width": 1366, "height": 900}).new_page()
    regulator.base_url = page.base_url
    browser_login(regulator, "reg", "secret-reg")
    regulator.goto(page.base_url + f"/complaints/{complaint.id}")
    assert regulator.locator("text=已责令暂停").count() == 1
    shot(regulator, "complaints-regulator")
    regulator.goto(page.base_url + f"/instances/{complaint.instance_id}")
    regulator.wait_for_selector(".djs-container")
    regulator.set_viewport_size({"width": 2400, "height": 1200})
    regulator.wait_for_timeout(300)
    regulator.locator(".djs-container").screenshot(path=str(shot(regulator, "complaints-instance").parent
                                                        / "complaints-diagram.png"))
    regulator.context.close()
    assert page.js_errors == []


def test_the_pages_speak_english_when_asked(app, ctx, fixed_clock, world):
    bidder = client_as(app, "bid1")
    bidder.get("/lang/en")
    post_complaint(bidder)
    listing = bidder.get("/complaints").get_data(as_text=True)
    assert "File a complaint" in listing and "Awaiting acceptance" in listing
    assert "Published complaint decisions" in listing
    public = app.test_client()
    public.get("/lang/en")
    assert "No complaint decisions have been published yet." in public.get("/complaints/decisions").get_data(
        as_text=True)
