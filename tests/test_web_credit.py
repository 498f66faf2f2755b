"""Credit pages: the public list (no login), regulators record and remove, nobody else does."""

from __future__ import annotations

import re

import pytest
from browser import shot
from conftest import csrf_of, login
from sqlalchemy import func, select
from test_market import make_market_world, org

from engine import credit
from engine.actors import load_actor
from engine.credit import CreditEvent
from engine.orgs import get_by_code


@pytest.fixture
def world(ctx):
    """Two companies with their bidders, a bidder without a company, and readers."""
    make_market_world(ctx)
    return ctx


def signed_in(app, username: str):
    client = app.test_client()
    assert login(client, username, f"pw-{username}-123").status_code == 302
    return client


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def form(organisation_id: int, **overrides) -> dict:
    values = {"organisation_id": str(organisation_id), "kind": "sanction", "authority": "张掖市住房和城乡建设局",
              "document_no": "张建信惩〔2026〕3号", "reason": "串通投标", "period_start": "2026-09-01",
              "period_end": "2028-08-31"}
    values.update(overrides)
    return values


def events(ctx) -> int:
    with ctx.sessions() as s:
        return s.execute(select(func.count()).select_from(CreditEvent)).scalar_one()


def test_a_regulator_records_a_sanction_and_the_public_sees_it_without_login(app, world):
    regulator = signed_in(app, "reg")
    token = csrf_of(regulator, "/credit/events/new")
    response = regulator.post("/credit/events/new", data={**form(org(world, "co-b")), "csrf_token": token})
    assert response.status_code == 302
    public = app.test_client()
    page = text_of(public.get("/credit"))
    for part in ("甘肃乙建设有限公司", "串通投标", "张掖市住房和城乡建设局（张建信惩〔2026〕3号）",
                 "2026-09-01 至 2028-08-31", "失信惩戒（黑名单）"):
        assert part in page
    assert "甘肃乙建设有限公司" not in text_of(public.get("/credit?q=甲建设"))
    assert "甘肃乙建设有限公司" in text_of(public.get("/credit?q=张建信惩&kind=sanction"))
    assert "甘肃乙建设有限公司" not in text_of(public.get("/credit?kind=violation"))
    assert 'href="/credit"' in text_of(public.get("/portal/notices"))


def test_bad_fields_come_back_named_and_nothing_is_recorded(app, world):
    regulator = signed_in(app, "reg")
    token = csrf_of(regulator, "/credit/events/new")
    response = regulator.post("/credit/events/new", data={
        **form(org(world, "co-b"), period_end="2026-08-01", reason=""), "csrf_token": token})
    page = text_of(response)
    assert response.status_code == 400 and "早于 2026-09-01" in page and "必填" in page
    response = regulator.post("/credit/events/new", data={**form("abc"), "csrf_token": token})
    assert response.status_code == 400 and "不是已登记的企业或代理机构" in text_of(response)
    assert events(world) == 0


@pytest.mark.parametrize("username", ["staff", "exp", "aud", "bid_a", "ten"])
def test_only_regulators_record_and_remove(app, world, username):
    b = org(world, "co-b")
    with world.sessions.begin() as s:
        event = credit.record_event(s, load_actor(s, "reg"), credit.CreditInput(
            b, "violation", "张掖市住房和城乡建设局", "张建罚〔2026〕27号", "未按规定配备项目经理", "2026-09-01"))
    client = signed_in(app, username)
    token = csrf_of(client, "/credit")
    assert client.post("/credit/events/new", data={**form(event.organisation_id), "csrf_token": token}) \
        .status_code == 403
    assert client.post(f"/credit/events/{event.id}/remove", data={"removal_reason": "x", "csrf_token": token}) \
        .status_code == 403
    assert events(world) == 1
    with world.sessions() as s:
        assert s.get(CreditEvent, event.id).removed_at is None


def test_removal_keeps_the_history_and_takes_the_event_off_the_public_page(app, world):
    b = org(world, "co-b")
    with world.sessions.begin() as s:
        event = credit.record_event(s, load_actor(s, "reg"), credit.CreditInput(
            b, "sanction", "张掖市住房和城乡建设局", "张建信惩〔2026〕3号", "串通投标", "2026-09-01", "2028-08-31"))
    regulator = signed_in(app, "reg")
    token = csrf_of(regulator, "/credit/events")
    assert regulator.post(f"/credit/events/{event.id}/remove", data={"removal_reason": "", "csrf_token": token}) \
        .status_code == 400
    response = regulator.post(f"/credit/events/{event.id}/remove",
                              data={"removal_reason": "行政复议撤销原处罚决定", "csrf_token": token})
    assert response.status_code == 302
    assert "串通投标" not in text_of(app.test_client().get("/credit"))
    history = text_of(signed_in(app, "aud").get("/credit/events"))
    assert "串通投标" in history and "行政复议撤销原处罚决定" in history and "已撤销" in history
    assert regulator.post(f"/credit/events/{event.id}/remove",
                          data={"removal_reason": "再次", "csrf_token": token}).status_code == 409


def test_forms_without_csrf_are_refused(app, world):
    regulator = signed_in(app, "reg")
    assert regulator.post("/credit/events/new", data=form(org(world, "co-b"))).status_code == 400
    assert events(world) == 0


def test_browser_the_public_credit_page_lists_the_blacklist(page, world):
    b = org(world, "co-b")
    with world.sessions.begin() as s:
        credit.record_event(s, load_actor(s, "reg"), credit.CreditInput(
            b, "sanction", "张掖市住房和城乡建设局", "张建信惩〔2026〕3号", "在道路工程投标中串通投标", "2026-09-01",
            "2028-08-31"))
        credit.record_event(s, load_actor(s, "reg"), credit.CreditInput(
            org_id_of(s, "co-a"), "violation", "张掖市住房和城乡建设局", "张建罚〔2026〕27号", "擅自更换项目经理",
            "2026-08-15"))
    page.goto(page.base_url + "/portal/notices")
    page.click("header >> text=信用信息")
    assert page.locator("tr.credit-row").count() == 2
    page.fill("input[name=q]", "串通")
    page.click("form[role=search] button[type=submit]")
    assert page.locator("tr.credit-row").count() == 1
    assert "甘肃乙建设有限公司" in page.locator("tr.credit-row").inner_text()
    shot(page, "market_public_credit")
    assert page.js_errors == []


def org_id_of(session, code: str) -> int:
    return get_by_code(session, code).id


def test_the_credit_pages_speak_english(app, world):
    client = app.test_client()
    client.get("/lang/en")
    page = text_of(client.get("/credit"))
    assert "Untrustworthy in one place, restricted everywhere" in page
    assert "Company, credit code, reason or document number" in page
    regulator = signed_in(app, "reg")
    regulator.get("/lang/en")
    assert "Record a credit event" in text_of(regulator.get("/credit/events"))
