"""Certificate pages: 我的数字证书 (register, refusals with the reason), the staff lookup, trusted CAs and CRLs."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from browser import browser_login, shot
from conftest import csrf_of, login
from sqlalchemy import func, select
from test_web_matrix import EXPECTED

from engine import clock
from engine.actors import SYSTEM, add_user
from engine.models import ROLES, User
from engine.orgs import add_organisation
from engine.pki import (
    Certificate,
    RevocationList,
    TrustedRoot,
    add_trusted_root,
    issue_certificate,
    make_crl,
    make_root,
    upload_crl,
)

USCC = "91350100M000100Y43"
DAY = timedelta(days=1)


@pytest.fixture
def cas(ctx):
    """Two trusted CAs with CRLs; a company with a bidder; an admin and a staff member."""
    at = clock.now()
    made = [make_root(name, not_before=at - DAY, not_after=at + 3650 * DAY) for name in ("甘肃CA", "国信CA")]
    with ctx.sessions.begin() as s:
        for ca in made:
            add_trusted_root(s, SYSTEM, ca.cert_pem)
            upload_crl(s, SYSTEM, make_crl(ca, [], this_update=at, next_update=at + 7 * DAY))
        company = add_organisation(s, "c-1", "张掖某建设集团", "company", uscc=USCC)
        add_user(s, "sun", ["bidder"], password="pw-sun-123", organisation_id=company.id, display_name="孙涛")
        add_user(s, "root", ["admin"], password="pw-root-123")
        add_user(s, "li", ["staff"], password="pw-li-123")
    return made


def user_cert(ca, uscc=USCC, **kw):
    at = clock.now()
    return issue_certificate(ca, common_name="孙涛", uscc=uscc, not_before=at - DAY, not_after=at + 365 * DAY, **kw)


def as_user(app, name):
    client = app.test_client()
    assert login(client, name, f"pw-{name}-123").status_code == 302
    return client


def post_file(client, path, field, body: bytes, page=None, **form):
    data = {"csrf_token": csrf_of(client, page or path), field: (io.BytesIO(body), "file.pem"), **form}
    return client.post(path, data=data, content_type="multipart/form-data")


def count(ctx, model) -> int:
    with ctx.sessions() as s:
        return s.execute(select(func.count()).select_from(model)).scalar()


def test_register_certificates_of_two_cas(app, ctx, cas):
    client = as_user(app, "sun")
    page = client.get("/certificates").get_data(as_text=True)
    assert "我的数字证书" in page and "甘肃CA" in page and "国信CA" in page and "没有登记的数字证书" in page
    for ca in cas:
        response = post_file(client, "/certificates", "certificate", user_cert(ca).cert_pem)
        assert response.status_code == 302
    page = client.get("/certificates").get_data(as_text=True)
    assert "证书已登记" in page and page.count('class="badge ok"') == 2
    assert "CN=甘肃CA" in page and "CN=国信CA" in page


def test_pasted_pem_is_accepted(app, ctx, cas):
    client = as_user(app, "sun")
    data = {"csrf_token": csrf_of(client, "/certificates"), "pem": user_cert(cas[1]).cert_pem.decode()}
    assert client.post("/certificates", data=data).status_code == 302
    assert count(ctx, Certificate) == 1


@pytest.mark.parametrize(("make", "reason"), [
    (lambda cas: user_cert(make_root("某未备案CA", not_before=clock.now() - DAY,
                                      not_after=clock.now() + DAY)).cert_pem, "签发机构（CA）不受平台信任"),
    (lambda cas: user_cert(cas[0], uscc="91110000600037341L").cert_pem, "与您所在单位不符"),
    (lambda cas: user_cert(cas[0], usage=("encryption",)).cert_pem, "密钥用途不符"),
    (lambda cas: b"not a certificate at all", "不是有效的 X.509 证书"),
])
def test_refused_upload_shows_the_reason(app, ctx, cas, make, reason):
    client = as_user(app, "sun")
    response = post_file(client, "/certificates", "certificate", make(cas))
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "证书未登记" in page and reason in page
    assert count(ctx, Certificate) == 0


def test_revoked_certificate_shows_its_state(app, ctx, cas, fixed_clock):
    client = as_user(app, "sun")
    issued = user_cert(cas[0])
    assert post_file(client, "/certificates", "certificate", issued.cert_pem).status_code == 302
    at = fixed_clock.advance(hours=1)
    with ctx.sessions.begin() as s:
        upload_crl(s, SYSTEM, make_crl(cas[0], [(issued.serial, at)], this_update=at, next_update=at + 7 * DAY))
    page = client.get("/certificates").get_data(as_text=True)
    assert "证书已被吊销" in page and "不可用" in page


def test_upload_without_csrf_is_refused(app, ctx, cas):
    client = as_user(app, "sun")
    data = {"certificate": (io.BytesIO(user_cert(cas[0]).cert_pem), "c.pem")}
    assert client.post("/certificates", data=data, content_type="multipart/form-data").status_code == 400
    assert count(ctx, Certificate) == 0


def test_withdraw_own_certificate(app, ctx, cas):
    client = as_user(app, "sun")
    post_file(client, "/certificates", "certificate", user_cert(cas[0]).cert_pem)
    with ctx.sessions() as s:
        certificate_id = s.execute(select(Certificate.id)).scalar_one()
    token = csrf_of(client, "/certificates")
    response = client.post(f"/certificates/{certificate_id}/withdraw", data={"csrf_token": token})
    assert response.status_code == 302
    assert "已注销" in client.get("/certificates").get_data(as_text=True)


def test_staff_look_up_a_company(app, ctx, cas):
    post_file(as_user(app, "sun"), "/certificates", "certificate", user_cert(cas[0]).cert_pem)
    staff = as_user(app, "li")
    page = staff.get(f"/certificates/lookup?q={USCC}").get_data(as_text=True)
    assert "张掖某建设集团" in page and "孙涛" in page and "注销" not in page
    assert "没有找到" in staff.get("/certificates/lookup?q=nothing").get_data(as_text=True)
    assert as_user(app, "sun").get(f"/certificates/lookup?q={USCC}").status_code == 403


def test_admin_trusts_a_ca_uploads_crls_and_deactivates(app, ctx, cas):
    admin = as_user(app, "root")
    at = clock.now()
    third = make_root("第三CA", not_before=at - DAY, not_after=at + 100 * DAY)
    assert post_file(admin, "/admin/ca", "certificate", third.cert_pem, name="第三方CA").status_code == 302
    page = admin.get("/admin/ca").get_data(as_text=True)
    assert "第三方CA" in page and "未上传" in page
    crl = make_crl(third, [], this_update=at, next_update=at + 7 * DAY)
    assert post_file(admin, "/admin/ca/crl", "crl", crl, page="/admin/ca").status_code == 302
    forged = make_crl(make_root("第三CA", not_before=at - DAY, not_after=at + DAY), [], this_update=at + DAY,
                      next_update=at + 8 * DAY)
    before = count(ctx, RevocationList)
    response = post_file(admin, "/admin/ca/crl", "crl", forged, page="/admin/ca")
    assert response.status_code == 400 and "签名无效" in response.get_data(as_text=True)
    assert count(ctx, RevocationList) == before
    response = post_file(admin, "/admin/ca", "certificate", user_cert(cas[0]).cert_pem)
    assert response.status_code == 400 and "不是 CA 证书" in response.get_data(as_text=True)
    with ctx.sessions() as s:
        root_id = s.execute(select(TrustedRoot.id).where(TrustedRoot.name == "第三方CA")).scalar_one()
    token = csrf_of(admin, "/admin/ca")
    assert admin.post(f"/admin/ca/{root_id}/active", data={"csrf_token": token, "active": "0"}).status_code == 302
    assert "已停止信任 CA" in admin.get("/admin/ca").get_data(as_text=True)
    with ctx.sessions() as s:
        assert s.get(TrustedRoot, root_id).active is False


def test_english_catalog(app, ctx, cas):
    client = as_user(app, "sun")
    with ctx.sessions.begin() as s:
        s.execute(select(User).where(User.username == "sun")).scalar_one().locale = "en"
    page = client.get("/certificates").get_data(as_text=True)
    assert "My certificates" in page and "Register a certificate" in page


def test_browser_registers_a_certificate(app, ctx, cas, page, tmp_path):
    path = tmp_path / "sun.cert.pem"
    path.write_bytes(user_cert(cas[1]).cert_pem)
    browser_login(page, "sun", "pw-sun-123")
    page.goto(page.base_url + "/certificates")
    page.set_input_files("input[name=certificate]", str(path))
    page.click("form[enctype] button[type=submit]")
    page.wait_for_selector(".badge.ok")
    shot(page, "certificates-mine")
    assert "国信CA" in page.content() and page.js_errors == []
    page.set_input_files("input[name=certificate]", str(path))
    page.click("form[enctype] button[type=submit]")
    assert "证书已登记（duplicate" in page.inner_text("p.error")
    shot(page, "certificates-refused")


def test_browser_admin_page(app, ctx, cas, page):
    browser_login(page, "root", "pw-root-123")
    page.goto(page.base_url + "/admin/ca")
    assert page.locator("table >> text=甘肃CA").count() >= 1
    shot(page, "certificates-admin")
    assert page.js_errors == []


@pytest.mark.parametrize("role", [None, *ROLES])
def test_certificate_routes_follow_the_matrix(app, ctx, role):
    """Every certificates.* route answers each role as the authorization matrix says (checked on its own)."""
    client = app.test_client()
    if role is not None:
        with ctx.sessions.begin() as s:
            add_user(s, f"u_{role}", [role], password=f"pw-u_{role}-123")
        assert login(client, f"u_{role}", f"pw-u_{role}-123").status_code == 302
    app.config["WTF_CSRF_ENABLED"] = False
    routes = [(rule.endpoint, method, rule.rule.replace("<int:certificate_id>", "1").replace("<int:root_id>", "1"))
              for rule in app.url_map.iter_rules() if rule.endpoint.startswith("certificates.")
              for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    assert {endpoint for endpoint, _, _ in routes} == {e for e in EXPECTED if e.startswith("certificates.")}
    for endpoint, method, url in routes:
        response = client.open(url, method=method)
        where = f"{method} {url} as {role or 'anonymous'}"
        if role is None:
            assert response.status_code == 302 and "/login" in response.headers["Location"], where
        elif role in EXPECTED[endpoint]:
            assert response.status_code not in (401, 403, 500), where
        else:
            assert response.status_code == 403, where
