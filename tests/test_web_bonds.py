"""Bond pages: a bidder's accounts and guarantees, a project's bonds (counts before the opening), admin registries."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta

import pytest
from bondkit import BID_BOND, CODE, DEADLINE, complete, make_world
from browser import browser_login, shot
from conftest import csrf_of, login
from sqlalchemy import select

from engine import bank, bonds, clock, guarantees
from engine.banksim import BankSim
from engine.models import AuditEvent


@pytest.fixture
def world(ctx):
    return make_world(ctx)


def client_of(app, name):
    client = app.test_client()
    assert login(client, name, f"secret-{name}").status_code == 302
    return client


def post(client, path, data, page="/bonds", **kw):
    return client.post(path, data={**data, "csrf_token": csrf_of(client, page)}, **kw)


def guarantee_file(world, **changes) -> bytes:
    body = {"format": guarantees.FORMAT, "guarantee_no": "BH-WEB-0001",
            "issuer": {"name": "张掖某担保有限公司", "uscc": world.issuer_uscc},
            "applicant": {"name": world.names[1], "uscc": world.bidder_usccs[1]},
            "beneficiary": {"name": "临泽县水务投资有限公司", "uscc": world.tenderer_uscc},
            "project_code": CODE, "amount": f"{BID_BOND:.2f}", "currency": "CNY",
            "valid_from": "2026-09-29T00:00:00+08:00", "valid_until": (DEADLINE + timedelta(days=120)).isoformat(),
            "issued_at": "2026-09-29T08:00:00+08:00", **changes}
    return guarantees.sign_guarantee(world.issuer.key, world.issuer.cert_pem, body)


def pay(ctx, world, i, amount=BID_BOND, payer=None):
    sim = BankSim("simbank", world.bank_key, "", "")
    sim.open_payer(payer or f"62220000000{i}", world.names[i] if payer is None else "某劳务公司", "1000000.00")
    with ctx.sessions.begin() as s:
        number = bonds.open_account(s, world.project_id, world.bidders[i], world.actors[f"b{i}"]).account_number
    body = sim.notification(number, amount, payer or f"62220000000{i}")
    with ctx.sessions.begin() as s:
        bonds.receive_notification(s, bank_code="simbank", signature=sim.headers(body)[bank.HEADER_SIGNATURE],
                                   body=body)


def test_a_bidder_opens_its_account_and_sees_its_state(app, world):
    b0 = client_of(app, "b0")
    assert "还没有保证金子账号" in b0.get("/bonds").get_data(as_text=True)
    response = post(b0, "/bonds/account", {"project_code": CODE.lower()}, follow_redirects=True)
    html = response.get_data(as_text=True)
    number = re.search(r'<code class="account-number">(\d+)</code>', html).group(1)
    assert bonds.valid_account_number(number) and "保证金子账号：" + number in html
    assert 'data-state="missing"' in html and "80,000.00 元" in html
    unknown = post(b0, "/bonds/account", {"project_code": "LZ-2099-0001"}, follow_redirects=True)
    assert "没有交易编码为" in unknown.get_data(as_text=True)


def test_a_bidder_uploads_a_guarantee_and_a_tampered_one_is_refused_by_name(app, world):
    b1 = client_of(app, "b1")
    tampered = json.loads(guarantee_file(world, guarantee_no="BH-WEB-0000"))
    tampered["guarantee"]["amount"] = "900000.00"
    bad = post(b1, "/bonds/guarantee", {"project_code": CODE,
                                        "document": (io.BytesIO(bank.canonical(tampered)), "bh.json")},
               follow_redirects=True, content_type="multipart/form-data")
    assert "电子保函未通过核验（signature）" in bad.get_data(as_text=True)
    good = post(b1, "/bonds/guarantee", {"project_code": CODE, "document": (io.BytesIO(guarantee_file(world)),
                                                                            "bh.json")},
                follow_redirects=True, content_type="multipart/form-data")
    html = good.get_data(as_text=True)
    assert "电子保函 BH-WEB-0001 核验通过" in html and 'data-state="guarantee"' in html


def test_a_refused_guarantee_stays_audited_and_an_unknown_code_is_a_message(app, ctx, world):
    b1 = client_of(app, "b1")
    bad = post(b1, "/bonds/guarantee", {"project_code": CODE, "document": (io.BytesIO(b"{}"), "bh.json")},
               follow_redirects=True, content_type="multipart/form-data")
    assert bad.status_code == 200 and "电子保函未通过核验（format）" in bad.get_data(as_text=True)
    unknown = post(b1, "/bonds/guarantee", {"project_code": "LZ-2099-0001",
                                            "document": (io.BytesIO(guarantee_file(world)), "bh.json")},
                   follow_redirects=True, content_type="multipart/form-data")
    assert unknown.status_code == 200 and "没有交易编码为 &#39;LZ-2099-0001&#39; 的项目" in unknown.get_data(
        as_text=True)
    with ctx.sessions.begin() as s:
        refused = s.execute(select(AuditEvent).where(AuditEvent.action == "guarantee.refused")).scalars().all()
        assert [json.loads(e.payload)["check"] for e in refused] == ["format"]
        assert guarantees.accepted_guarantee(s, world.project_id, world.bidders[1], deadline=DEADLINE) is None


def test_bond_notes_read_in_the_reader_s_language_only(app, ctx, world):
    pay(ctx, world, 0, payer="622299999999")
    b0 = client_of(app, "b0")
    zh = b0.get("/bonds").get_data(as_text=True)
    assert "截止时间前到账 80000.00 元" in zh and "付款人不是投标人本单位账户（条例第二十六条）" in zh
    assert "paid in full" not in zh and "the bidder&#39;s own" not in zh
    b0.get("/lang/en")
    en = b0.get("/bonds").get_data(as_text=True)
    assert "CNY 80000.00 arrived before the deadline" in en
    assert "Paid from an account that is not the bidder&#39;s own (Regulations art. 26)" in en
    assert "截止时间前到账" not in en and "付款人不是" not in en


def test_a_missing_bond_names_the_deadline_in_shanghai_wall_time(app, ctx, world):
    with ctx.sessions.begin() as s:
        bonds.open_account(s, world.project_id, world.bidders[2], world.actors["b2"])
    html = client_of(app, "b2").get("/bonds").get_data(as_text=True)
    local = DEADLINE.astimezone(clock.SHANGHAI).strftime("%Y-%m-%d %H:%M")
    assert f"截止时间 {local} 前未到账" in html and "T09:30:00+08:00" not in html


def test_before_the_opening_staff_see_counts_and_the_tenderer_nothing(app, ctx, world, fixed_clock):
    pay(ctx, world, 0)
    pay(ctx, world, 1, "100.00")
    staff = client_of(app, "stf")
    html = staff.get(f"/projects/{world.project_id}/bonds").get_data(as_text=True)
    assert re.search(r'data-state="paid">1<', html) and re.search(r'data-state="short">1<', html)
    assert all(name not in html for name in world.names) and "100.00" not in html
    tenderer = client_of(app, "ten").get(f"/projects/{world.project_id}/bonds").get_data(as_text=True)
    assert "开标前不公开投标人名称" in tenderer and 'data-state="paid"' not in tenderer
    assert client_of(app, "b0").get(f"/projects/{world.project_id}/bonds").status_code == 403
    fixed_clock.set(DEADLINE)
    after = staff.get(f"/projects/{world.project_id}/bonds").get_data(as_text=True)
    assert world.names[0] in after and world.names[1] in after and "金额不足" in after


def test_staff_compute_and_send_refunds_and_see_failures(app, ctx, world, fixed_clock):
    pay(ctx, world, 0, payer="622299999999")
    fixed_clock.set(DEADLINE + timedelta(days=20))
    complete(ctx, world, "sign_contract", {})
    staff = client_of(app, "stf")
    page = f"/projects/{world.project_id}/bonds"
    html = staff.get(page).get_data(as_text=True)
    assert "非投标人本单位账户转出" in html and 'data-status="pending"' in html
    assert "已生成 0 条退还指令" in post(staff, f"{page}/refunds", {}, page=page, follow_redirects=True).get_data(
        as_text=True)
    sent = post(staff, f"{page}/refunds/send", {}, page=page, follow_redirects=True).get_data(as_text=True)
    assert "银行已受理 0 条" in sent and 'data-status="failed"' in sent and "could not be reached" in sent


def test_admin_registers_a_bank_and_an_issuer(app, world):
    admin = client_of(app, "adm")
    key = bank.public_pem(bank.generate_key())
    bad = post(admin, "/admin/banks", {"code": "icbc-zy", "name": "工商银行张掖分行", "base_url": "https://b.example",
                                       "public_key_pem": "garbage"}, page="/admin/banks")
    assert bad.status_code == 400 and "PEM" in bad.get_data(as_text=True)
    ok = post(admin, "/admin/banks", {"code": "icbc-zy", "name": "工商银行张掖分行", "base_url": "https://b.example/",
                                      "public_key_pem": key}, page="/admin/banks", follow_redirects=True)
    assert "合作银行 icbc-zy 已登记" in ok.get_data(as_text=True) and "https://b.example<" in ok.get_data(as_text=True)
    issuer = post(admin, "/admin/guarantee-issuers", {"name": "某保险公司", "uscc": world.bidder_usccs[2]},
                  page="/admin/banks", follow_redirects=True)
    assert "保函出具机构 某保险公司 已核准" in issuer.get_data(as_text=True)


def test_english_catalog(app, world):
    b0 = client_of(app, "b0")
    b0.get("/lang/en")
    html = b0.get("/bonds").get_data(as_text=True)
    assert "Bid bonds" in html and "Open a bond sub-account" in html


def test_in_the_browser(page, ctx, world, fixed_clock):
    pay(ctx, world, 0)
    browser_login(page, "b0", "secret-b0")
    page.goto(f"{page.base_url}/bonds")
    assert page.locator("tr[data-state=paid] code.account-number").count() == 1
    shot(page, "bonds-bidder")
    fixed_clock.set(DEADLINE + timedelta(hours=1))
    page.context.clear_cookies()
    browser_login(page, "stf", "secret-stf")
    page.goto(f"{page.base_url}/projects/{world.project_id}/bonds")
    assert page.locator("table.bonds-project tr[data-state=paid]").count() == 1
    shot(page, "bonds-project")
    assert page.js_errors == [] and clock.now() > DEADLINE


def test_the_bank_api_answers_unsigned_and_oversized_requests_with_json_errors(app, ctx, world):
    client = app.test_client()
    unsigned = client.post("/bank/v1/notifications", data=b"{}", content_type="application/json")
    assert unsigned.status_code == 400 and unsigned.get_json()["code"] == "malformed"
    huge = client.post("/bank/v1/notifications", data=b" " * (bank.MAX_BODY + 1), content_type="application/json")
    assert huge.status_code == 413
    with ctx.sessions() as s:
        assert [r.code for r in bonds.refusals(s)] == ["malformed"]
