"""Company pages: readers look companies up online; a bidder maintains its own company, uploads scans, no other."""

from __future__ import annotations

import io
import re

import pytest
from browser import browser_login, shot
from conftest import csrf_of, login
from sqlalchemy import func, select
from test_market import ID_NUMBER, PDF, make_market_world, org

from engine import credit, market
from engine.actors import add_user, load_actor
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


def post(client, path: str, data: dict, **kwargs):
    return client.post(path, data={**data, "csrf_token": csrf_of(client, "/company")}, **kwargs)


def text_of(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


LICENCE = {"kind": "建筑工程施工总承包", "grade": "一级", "number": "D262012345", "issuer": "甘肃省住房和城乡建设厅",
           "valid_from": "2024-01-01", "valid_until": "2028-12-31"}


def test_a_bidder_maintains_its_company_with_a_scan_and_staff_read_it(app, world):
    bidder = signed_in(app, "bid_a")
    page = text_of(bidder.get("/company"))
    assert "甘肃甲建设有限公司" in page and "维护本单位信息" in page
    response = post(bidder, "/company/licences", {**LICENCE, "file": (io.BytesIO(PDF), "资质证书.pdf",
                                                                      "application/pdf")},
                    content_type="multipart/form-data")
    assert response.status_code == 302
    assert post(bidder, "/company/personnel", {
        "name": "王建国", "id_number": ID_NUMBER, "role": "项目经理", "certificate_kind": "一级注册建造师",
        "certificate_number": "甘1622016000123", "certificate_valid_until": "2027-06-30"}).status_code == 302
    assert post(bidder, "/company/profile", {"legal_representative": "李建平", "registered_capital": "120000000.00",
                                            "address": "兰州市城关区", "established_on": "1998-05-18"}).status_code \
        == 302
    assert post(bidder, "/company/performance", {"project_name": "滨河路改造", "tenderer": "张掖市城投",
                                                "amount": "8600000.00", "completed_on": "2025-06-30"}).status_code \
        == 302
    assert post(bidder, "/company/commitments", {"stands_in_for": "近三年无重大安全事故证明", "text": "本单位承诺……",
                                                "signer_name": "李建平"}).status_code == 302
    own = text_of(bidder.get("/company"))
    assert "D262012345" in own and "**************002X" in own and ID_NUMBER not in own
    staff = signed_in(app, "staff")
    listing = text_of(staff.get("/companies?q=甲建设"))
    assert "甘肃甲建设有限公司" in listing and "甘肃乙建设有限公司" not in listing
    page = text_of(staff.get(f"/companies/{org(world, 'co-a')}"))
    for part in ("李建平", "120,000,000.00 元", "D262012345", "一级注册建造师", "滨河路改造",
                 "近三年无重大安全事故证明"):
        assert part in page
    link = re.search(r'href="(/companies/\d+/files/[0-9a-f]{64})"', page).group(1)
    for username, status in (("staff", 200), ("exp", 200), ("bid_a", 200), ("bid_b", 403)):
        download = signed_in(app, username).get(link)
        assert download.status_code == status
        if status == 200:
            assert download.data == PDF
        download.close()


def test_bad_input_comes_back_next_to_the_field_and_nothing_is_saved(app, world):
    bidder = signed_in(app, "bid_a")
    response = post(bidder, "/company/licences", {**LICENCE, "valid_until": "2023-01-01"})
    assert response.status_code == 400
    assert "早于 2024-01-01" in text_of(response) and 'id="form-licence" open' in text_of(response)
    response = post(bidder, "/company/personnel", {"name": "王建国", "id_number": "110105194912310021",
                                                  "role": "项目经理"})
    assert response.status_code == 400 and "校验码应为 X" in text_of(response)
    response = post(bidder, "/company/licences", {**LICENCE, "file": (io.BytesIO(b"MZ\x90\x00binary"), "x.pdf",
                                                                      "application/pdf")},
                    content_type="multipart/form-data")
    assert response.status_code == 400
    with world.sessions() as s:
        assert s.execute(select(func.count()).select_from(market.Licence)).scalar_one() == 0
        assert s.execute(select(func.count()).select_from(market.Person)).scalar_one() == 0


def test_a_bidder_cannot_touch_another_companys_records(app, world):
    a = org(world, "co-a")
    with world.sessions.begin() as s:
        row = market.add_person(s, load_actor(s, "bid_a"), a, market.PersonInput(
            "王建国", ID_NUMBER, "项目经理"))
    other = signed_in(app, "bid_b")
    assert post(other, f"/company/person/{row.id}/withdraw", {}).status_code == 403
    assert post(other, f"/company/personnel/{row.id}/certificates",
                {"kind": "一级注册建造师", "number": "1", "valid_until": "2030-01-01"}).status_code == 403
    assert other.get(f"/companies/{org(world, 'co-a')}").status_code == 403
    assert "王建国" not in text_of(other.get("/company"))
    with world.sessions() as s:
        assert s.get(market.Person, row.id).withdrawn_at is None and not s.get(market.Person, row.id).certificates
    own = signed_in(app, "bid_a")
    assert post(own, f"/company/person/{row.id}/withdraw", {}).status_code == 302
    assert "已撤回" in text_of(own.get("/company"))


def test_a_bidder_without_a_company_is_told_so(app, world):
    client = signed_in(app, "loner")
    assert "没有关联企业" in text_of(client.get("/company"))
    assert post(client, "/company/licences", LICENCE).status_code == 404


def test_posts_without_a_csrf_token_are_refused(app, world):
    bidder = signed_in(app, "bid_a")
    assert bidder.post("/company/licences", data=LICENCE).status_code == 400
    with world.sessions() as s:
        assert s.execute(select(func.count()).select_from(market.Licence)).scalar_one() == 0


@pytest.mark.parametrize("username", ["reg", "aud", "exp"])
def test_a_sanction_shows_on_the_company_page(app, world, username):
    b = org(world, "co-b")
    with world.sessions.begin() as s:
        credit.record_event(s, load_actor(s, "reg"), credit.CreditInput(
            b, "sanction", "张掖市住房和城乡建设局", "张建信惩〔2026〕3号", "串通投标", "2026-09-01",
            "2028-08-31"))
    client = signed_in(app, username)
    assert "失信惩戒中" in text_of(client.get("/companies"))
    page = text_of(client.get(f"/companies/{org(world, 'co-b')}"))
    assert "失信联合惩戒中" in page and "张建信惩〔2026〕3号" in page


def test_browser_a_bidder_adds_a_licence_with_its_scan(page, world, tmp_path):
    scan = tmp_path / "资质证书.pdf"
    scan.write_bytes(PDF)
    browser_login(page, "bid_a", "pw-bid_a-123")
    page.goto(page.base_url + "/company")
    page.click("#form-licence summary")
    form = page.locator("#form-licence form")
    form.locator("input[name=kind]").fill("市政公用工程施工总承包")
    form.locator("select[name=grade]").select_option("二级")
    form.locator("input[name=number]").fill("D362098765")
    form.locator("input[name=issuer]").fill("甘肃省住房和城乡建设厅")
    form.locator("input[name=valid_from]").fill("2024-03-01")
    form.locator("input[name=valid_until]").fill("2029-02-28")
    form.locator("input[name=file]").set_input_files(str(scan))
    form.locator("button[type=submit]").click()
    page.wait_for_selector("text=资质已添加。")
    row = page.locator("tr.licence-row").first
    assert "D362098765" in row.inner_text() and "有效" in row.inner_text()
    assert row.locator("a.file-link").count() == 1
    shot(page, "market_own_company")
    assert page.js_errors == []


def test_browser_staff_see_expired_certificates_and_the_sanction(page, world, fixed_clock):
    with world.sessions.begin() as s:
        add_user(s, "regulator", ["regulator"], organisation_id=get_by_code(s, "dept-zjj").id)
        market.seed_demo_market(s, ["co-a", "co-b"], load_actor(s, "regulator"))
    fixed_clock.advance(days=680)  # past the certificates' 30 June, inside the sanction's period
    browser_login(page, "staff", "pw-staff-123")
    page.goto(page.base_url + "/companies")
    page.click("text=" + market.DEMO_BLACKLISTED[1])
    assert page.locator(".sanction-banner").count() == 1
    assert "已过期" in page.locator("tr.certificate-row").first.inner_text()
    assert "有效" in page.locator("tr.licence-row").first.inner_text()
    shot(page, "market_company_page")
    assert page.js_errors == []
