"""The company registry: bidders keep their own company's records, others read them; bad input is named."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from engine import credit, files, market
from engine.actors import SYSTEM, add_user, load_actor
from engine.errors import FormValidationError, InvalidState, NotFound, PermissionDenied
from engine.market import (
    CertificateInput,
    CommitmentInput,
    LicenceInput,
    PerformanceInput,
    PersonInput,
    ProfileInput,
)
from engine.models import AuditEvent
from engine.orgs import add_organisation, get_by_code, seed_zhangye, uscc_check_char, validate_uscc

PDF = b"%PDF-1.4\n% ggzy test licence scan\n"
ID_NUMBER = "11010519491231002X"  # GB 11643's published example


def uscc(serial: int) -> str:
    first17 = f"91620700MA7T{serial:05d}"
    return first17 + uscc_check_char(first17)


@pytest.fixture
def world(ctx):
    """Two companies with a bidder each, and one user per reading role."""
    make_market_world(ctx)
    return ctx


def make_market_world(ctx) -> None:
    """Seed Zhangye, two companies (co-a, co-b) with a bidder each, a bidder without one, and readers."""
    with ctx.sessions.begin() as s:
        seed_zhangye(s)
        add_organisation(s, "co-a", "甘肃甲建设有限公司", "company", uscc=uscc(1))
        add_organisation(s, "co-b", "甘肃乙建设有限公司", "company", uscc=uscc(2))
        for name, roles, org in (("bid_a", ["bidder"], "co-a"), ("bid_b", ["bidder"], "co-b"),
                                 ("loner", ["bidder"], None), ("staff", ["staff"], "zy-centre"),
                                 ("reg", ["regulator"], "dept-zjj"), ("exp", ["expert"], None),
                                 ("aud", ["auditor"], "sup-jw"), ("ten", ["tenderer"], "co-a")):
            add_user(s, name, roles, password=f"pw-{name}-123",
                     organisation_id=get_by_code(s, org).id if org else None)


def org(ctx, code: str) -> int:
    with ctx.sessions() as s:
        return get_by_code(s, code).id


def licence(**overrides) -> LicenceInput:
    values = {"kind": "建筑工程施工总承包", "grade": "一级", "number": "D262012345", "issuer": "甘肃省住房和城乡建设厅",
              "valid_from": "2024-01-01", "valid_until": "2028-12-31"}
    values.update(overrides)
    return LicenceInput(**values)


def person(**overrides) -> PersonInput:
    values = {"name": "王建国", "id_number": ID_NUMBER, "role": "项目经理",
              "certificates": (CertificateInput("一级注册建造师", "甘1622016000123", "2027-06-30"),)}
    values.update(overrides)
    return PersonInput(**values)


def as_user(ctx, username: str, call, *args):
    with ctx.sessions.begin() as s:
        return call(s, load_actor(s, username), *args)


def rows(ctx) -> tuple[int, ...]:
    with ctx.sessions() as s:
        models = (market.CompanyProfile, market.Licence, market.Person, market.PersonCertificate,
                  market.Performance, market.Commitment, AuditEvent)
        return tuple(s.execute(select(func.count()).select_from(m)).scalar_one() for m in models)


def test_a_bidder_keeps_its_companys_records_and_readers_see_them(world):
    a = org(world, "co-a")
    with world.sessions.begin() as s:
        bidder = load_actor(s, "bid_a")
        scan = files.store(s, PDF, "营业执照.pdf", "application/pdf", bidder, config=world.config)
        market.save_profile(s, bidder, a, ProfileInput("李建平", "120000000.00", "兰州市城关区", "1998-05-18",
                                                       scan.sha256))
        market.add_licence(s, bidder, a, licence(file_sha256=scan.sha256))
        market.add_person(s, bidder, a, person())
        market.add_performance(s, bidder, a, PerformanceInput("张掖市滨河路改造", "张掖市城投", "8600000.00",
                                                              "2025-06-30", scan.sha256))
        market.add_commitment(s, bidder, a, CommitmentInput("近三年无重大安全事故证明", "本单位承诺……", "李建平"))
    for reader in ("staff", "reg", "exp", "aud", "bid_a"):
        with world.sessions() as s:
            found = market.company_records(s, load_actor(s, reader), a)
            assert found.profile.registered_capital == Decimal("120000000.00")
            assert [x.number for x in found.licences] == ["D262012345"]
            assert found.personnel[0].id_number_masked == "**************002X"
            assert found.personnel[0].certificates[0].kind == "一级注册建造师"
            assert found.commitments[0].text_sha256 and found.performances[0].amount == Decimal("8600000.00")
    with world.sessions() as s:
        assert market.company_files(s, a) == {scan.sha256}
        summary = market.company_summary(s, a)
        assert summary["licences"][0]["grade"] == "一级" and summary["performance_count"] == 1
        assert summary["project_managers"] == [{"name": "王建国", "certificates": [
            {"kind": "一级注册建造师", "number": "甘1622016000123", "valid_until": date(2027, 6, 30), "valid": True}]}]
        assert summary["active_sanctions"] == []
        actions = s.execute(select(AuditEvent.action).where(AuditEvent.action.like("company.%"))
                            .order_by(AuditEvent.seq)).scalars().all()
        assert actions == ["company.profile", "company.licence.add", "company.person.add",
                           "company.performance.add", "company.commitment.add"]
        assert ID_NUMBER not in "".join(s.execute(select(AuditEvent.payload)).scalars())


@pytest.mark.parametrize("username", ["bid_b", "loner", "staff", "reg", "exp", "aud", "ten"])
def test_nobody_but_its_own_bidder_edits_a_company(world, username):
    a = org(world, "co-a")
    before = rows(world)
    for call, data in ((market.add_licence, licence()), (market.add_person, person()),
                       (market.save_profile, ProfileInput("x", "1.00", "x", "2000-01-01")),
                       (market.add_performance, PerformanceInput("x", "x", "1.00", "2020-01-01")),
                       (market.add_commitment, CommitmentInput("x", "x", "x"))):
        with pytest.raises(PermissionDenied, match="只能维护本单位"):
            as_user(world, username, call, a, data)
    assert rows(world) == before


def test_another_companys_records_cannot_be_withdrawn_or_extended(world):
    added = as_user(world, "bid_a", market.add_person, org(world, "co-a"), person())
    before = rows(world)
    with pytest.raises(PermissionDenied):
        as_user(world, "bid_b", market.withdraw, "person", added.id)
    with pytest.raises(PermissionDenied):
        as_user(world, "bid_b", market.add_certificate, added.id, CertificateInput("x", "1", "2030-01-01"))
    assert rows(world) == before


def test_bidders_and_tenderers_cannot_read_other_companies(world):
    a, department = org(world, "co-a"), org(world, "dept-zjj")
    with world.sessions() as s:
        for username in ("bid_b", "loner", "ten"):
            with pytest.raises(PermissionDenied):
                market.company_records(s, load_actor(s, username), a)
        with pytest.raises(PermissionDenied):
            market.list_companies(s, load_actor(s, "bid_a"))
        with pytest.raises(NotFound):
            market.company_records(s, load_actor(s, "staff"), department)


@pytest.mark.parametrize(("overrides", "field", "text"), [
    ({"grade": "超级"}, "grade", "不是可选值"),
    ({"kind": ""}, "kind", "必填"),
    ({"number": "x" * 101}, "number", "最多 100 字"),
    ({"valid_from": "2024-02-30"}, "valid_from", "不是有效日期"),
    ({"valid_until": "2023-12-31"}, "valid_until", "早于 2024-01-01"),
    ({"valid_from": "2020-01-01", "valid_until": "2025-12-31"}, "valid_until", "资质已于 2025-12-31 过期"),
    ({"file_sha256": "0" * 64}, "file_sha256", "未上传"),
])
def test_bad_licences_are_refused_by_field(world, overrides, field, text):
    before = rows(world)
    with pytest.raises(FormValidationError) as caught:
        as_user(world, "bid_a", market.add_licence, org(world, "co-a"), licence(**overrides))
    assert any(text in m for m in caught.value.errors[field])
    assert rows(world) == before


@pytest.mark.parametrize(("overrides", "field", "text"), [
    ({"id_number": "11010519491231002"}, "id_number", "18 位"),
    ({"id_number": "110105194902310029"}, "id_number", "出生日期"),
    ({"id_number": "110105194912310021"}, "id_number", "校验码应为 X"),
    ({"role": "老板"}, "role", "不是可选值"),
    ({"name": " "}, "name", "必填"),
    ({"certificates": (CertificateInput("一级注册建造师", "甘1", "2025-01-01"),)}, "certificates/0/valid_until",
     "证书已于 2025-01-01 过期"),
    ({"certificates": (CertificateInput("", "甘1", "2027-01-01"),)}, "certificates/0/kind", "必填"),
])
def test_bad_personnel_are_refused_by_field(world, overrides, field, text):
    before = rows(world)
    with pytest.raises(FormValidationError) as caught:
        as_user(world, "bid_a", market.add_person, org(world, "co-a"), person(**overrides))
    assert any(text in m for m in caught.value.errors[field])
    assert rows(world) == before


@pytest.mark.parametrize(("amount", "text"), [
    ("-5", "大于 0"), ("0", "大于 0"), ("1.005", "两位小数"), ("abc", "不是以元为单位"), ("1e17", "小于 10^16"),
    (0.5, "不是以元为单位"),
])
def test_bad_amounts_are_refused(world, amount, text):
    before = rows(world)
    with pytest.raises(FormValidationError) as caught:
        as_user(world, "bid_a", market.add_performance, org(world, "co-a"),
                PerformanceInput("某工程", "某招标人", amount, "2025-01-01"))
    assert any(text in m for m in caught.value.errors["amount"])
    with pytest.raises(FormValidationError) as caught:
        as_user(world, "bid_a", market.save_profile, org(world, "co-a"),
                ProfileInput("李建平", amount, "兰州", "1998-01-01"))
    assert any(text in m for m in caught.value.errors["registered_capital"])
    assert rows(world) == before


def test_dates_in_the_future_are_refused_where_they_cannot_be(world):
    with pytest.raises(FormValidationError) as caught:
        as_user(world, "bid_a", market.add_performance, org(world, "co-a"),
                PerformanceInput("某工程", "某招标人", "100.00", "2030-01-01"))
    assert "completed_on" in caught.value.errors
    with pytest.raises(FormValidationError) as caught:
        as_user(world, "bid_a", market.save_profile, org(world, "co-a"),
                ProfileInput("李", "1.00", "兰州", "2030-01-01"))
    assert "established_on" in caught.value.errors


def test_a_company_profile_needs_a_company(world):
    with pytest.raises(NotFound):
        as_user(world, "bid_a", market.add_licence, org(world, "dept-zjj"), licence())


def test_expiry_and_withdrawal_change_what_is_valid(world, fixed_clock):
    a = org(world, "co-a")
    short = as_user(world, "bid_a", market.add_licence, a, licence(number="SHORT", valid_until="2026-10-31"))
    as_user(world, "bid_a", market.add_licence, a, licence(number="LONG"))
    with world.sessions() as s:
        assert [x.number for x in market.valid_licences(s, a, date(2026, 10, 31))] == ["SHORT", "LONG"]
        assert [x.number for x in market.valid_licences(s, a, date(2026, 11, 1))] == ["LONG"]
        assert s.get(market.Licence, short.id).valid_on(date(2026, 10, 31))
    as_user(world, "bid_a", market.withdraw, "licence", short.id)
    with world.sessions() as s:
        assert [x.number for x in market.valid_licences(s, a, date(2026, 10, 1))] == ["LONG"]
        assert len(market.company_records(s, SYSTEM, a, withdrawn=True).licences) == 2
        assert len(market.company_records(s, SYSTEM, a).licences) == 1
    with pytest.raises(InvalidState, match="已于"):
        as_user(world, "bid_a", market.withdraw, "licence", short.id)
    with pytest.raises(NotFound):
        as_user(world, "bid_a", market.withdraw, "bank_account", 1)


def test_a_certificate_is_added_to_a_person_and_counted_as_expired_later(world, fixed_clock):
    a = org(world, "co-a")
    added = as_user(world, "bid_a", market.add_person, a, person(certificates=()))
    as_user(world, "bid_a", market.add_certificate, added.id, CertificateInput("一级注册建造师", "甘1", "2026-12-31"))
    fixed_clock.advance(days=120)
    with world.sessions() as s:
        (manager,) = market.company_summary(s, a)["project_managers"]
        assert manager["certificates"][0]["valid"] is False


def test_the_summary_names_an_active_sanction(world):
    a = org(world, "co-a")
    with world.sessions.begin() as s:
        credit.record_event(s, load_actor(s, "reg"), credit.CreditInput(
            a, "sanction", "张掖市住房和城乡建设局", "张建信惩〔2026〕3号", "串通投标", "2026-09-01", "2028-08-31"))
    with world.sessions() as s:
        (sanction,) = market.company_summary(s, a)["active_sanctions"]
        assert sanction["reason"] == "串通投标" and sanction["period_end"] == date(2028, 8, 31)


def test_company_search_by_name_and_uscc(world):
    with world.sessions() as s:
        staff = load_actor(s, "staff")
        assert [o.code for o in market.list_companies(s, staff, search="乙建设")[0]] == ["co-b"]
        assert [o.code for o in market.list_companies(s, staff, search=uscc(1)[:18])[0]] == ["co-a"]
        assert market.list_companies(s, staff)[1] == 2


def test_bad_usccs_are_refused_when_companies_are_registered(world):
    good = uscc(3)
    bad = good[:17] + ("0" if good[17] != "0" else "1")
    with world.sessions.begin() as s, pytest.raises(Exception, match="check character"):
        add_organisation(s, "co-x", "某公司", "company", uscc=bad)
    with pytest.raises(Exception, match="18 characters"):
        validate_uscc(good[:17])


def test_the_demo_seed_fills_the_registry_and_blacklists_one_company(world):
    with world.sessions.begin() as s:
        add_user(s, "regulator", ["regulator"], organisation_id=get_by_code(s, "dept-zjj").id)
        market.seed_demo_market(s, ["co-a", "co-b"], load_actor(s, "regulator"))
    b = org(world, "co-b")
    with world.sessions() as s:
        blacklisted = get_by_code(s, market.DEMO_BLACKLISTED[0])
        for code in ("co-a", "co-b", blacklisted.code):
            summary = market.company_summary(s, get_by_code(s, code).id)
            assert summary["licences"] and summary["project_managers"][0]["certificates"][0]["valid"]
            assert summary["performance_count"] == (0 if code == blacklisted.code else 1)
        assert market.company_summary(s, blacklisted.id)["active_sanctions"]
        assert not market.company_summary(s, b)["active_sanctions"]
        assert [e.kind for e in credit.events_of(s, b)] == ["violation"]


def test_a_record_may_only_name_a_scan_its_bidder_uploaded(world):
    a = org(world, "co-a")
    with world.sessions.begin() as s:
        theirs = files.store(s, PDF, "乙的文件.pdf", "application/pdf", load_actor(s, "bid_b"), config=world.config)
    before = rows(world)
    with pytest.raises(FormValidationError) as caught:
        as_user(world, "bid_a", market.add_licence, a, licence(file_sha256=theirs.sha256))
    assert any("不是 bid_a 上传的" in m for m in caught.value.errors["file_sha256"])
    assert rows(world) == before
    with world.sessions.begin() as s:
        files.store(s, PDF, "甲的文件.pdf", "application/pdf", load_actor(s, "bid_a"), config=world.config)
    assert as_user(world, "bid_a", market.add_licence, a, licence(file_sha256=theirs.sha256)).file_sha256 \
        == theirs.sha256
