"""Credit events: only regulators record and remove; sanctions bite at registration, expire, and are published."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import func, select
from test_projects import make_world, register

from engine import clock, credit
from engine.actors import add_user, load_actor
from engine.credit import CreditEvent, CreditInput, SanctionedError
from engine.errors import FormValidationError, InvalidState, NotFound, PermissionDenied
from engine.models import AuditEvent, Project
from engine.orgs import add_organisation, get_by_code, uscc_check_char

BAD_CO = ("bad-co", "张掖市失信建设有限公司", "91620700MA71DDDD4" + uscc_check_char("91620700MA71DDDD4"))


@pytest.fixture
def world(ctx):
    """The projects world plus a bidder company and its bidder user."""
    make_world(ctx)
    with ctx.sessions.begin() as s:
        add_organisation(s, BAD_CO[0], BAD_CO[1], "company", uscc=BAD_CO[2])
        add_user(s, "badbid", ["bidder"], password="pw-badbid-123", organisation_id=get_by_code(s, "bad-co").id)
    return ctx


def sanction(org_id: int, **overrides) -> CreditInput:
    values = {"organisation_id": org_id, "kind": "sanction", "authority": "张掖市住房和城乡建设局",
              "document_no": "张建罚〔2026〕12号", "reason": "围标串标", "period_start": "2026-09-01",
              "period_end": "2027-08-31"}
    values.update(overrides)
    return CreditInput(**values)


def org_id(ctx, code: str) -> int:
    with ctx.sessions() as s:
        return get_by_code(s, code).id


def record(ctx, username: str, data: CreditInput) -> CreditEvent:
    with ctx.sessions.begin() as s:
        return credit.record_event(s, load_actor(s, username), data)


def counts(ctx) -> tuple[int, int]:
    with ctx.sessions() as s:
        return (s.execute(select(func.count()).select_from(CreditEvent)).scalar_one(),
                s.execute(select(func.count()).select_from(AuditEvent)
                          .where(AuditEvent.action.like("credit.%"))).scalar_one())


def test_a_regulator_records_a_sanction_and_it_is_audited(world):
    event = record(world, "zjj", sanction(org_id(world, "bad-co")))
    assert (event.kind, event.period_start, event.period_end) == ("sanction", date(2026, 9, 1), date(2027, 8, 31))
    assert event.recorded_by == "zjj" and event.source == "张掖市住房和城乡建设局（张建罚〔2026〕12号）"
    with world.sessions() as s:
        found = credit.active_sanction(s, org_id(world, "bad-co"), clock.now())
        assert found is not None and found.id == event.id
        audit_row = s.execute(select(AuditEvent).where(AuditEvent.action == "credit.record")).scalar_one()
        assert "围标串标" in audit_row.payload


@pytest.mark.parametrize("username", ["staff_linze", "ten", "agent", "auditor", "admin", "bidder", "badbid"])
def test_only_regulators_record_credit_events(world, username):
    before = counts(world)
    with pytest.raises(PermissionDenied, match="只有行业监管部门"):
        record(world, username, sanction(org_id(world, "bad-co")))
    assert counts(world) == before


@pytest.mark.parametrize(("overrides", "field", "text"), [
    ({"kind": "blacklist"}, "kind", "未知的信用记录类别"),
    ({"authority": "  "}, "authority", "必填"),
    ({"document_no": ""}, "document_no", "必填"),
    ({"reason": ""}, "reason", "必填"),
    ({"reason": "x" * 2001}, "reason", "最多"),
    ({"period_start": "2026-13-01"}, "period_start", "不是有效日期"),
    ({"period_start": None}, "period_start", "必填"),
    ({"period_end": None}, "period_end", "必填"),
    ({"period_end": "2026-08-31"}, "period_end", "早于 2026-09-01"),
    ({"period_start": "2025-01-01", "period_end": "2025-12-31"}, "period_end", "已于 2025-12-31 届满"),
    ({"period_end": 20270831}, "period_end", "不是有效日期"),
    ({"organisation_id": 99999}, "organisation_id", "不是已登记的企业"),
])
def test_every_bad_field_is_named_and_nothing_is_written(world, overrides, field, text):
    data = sanction(org_id(world, "bad-co"), **overrides)
    before = counts(world)
    with pytest.raises(FormValidationError) as caught:
        record(world, "zjj", data)
    assert any(text in message for message in caught.value.errors[field])
    assert counts(world) == before


def test_departments_and_centres_are_not_credit_subjects(world):
    with pytest.raises(FormValidationError) as caught:
        record(world, "zjj", sanction(org_id(world, "dept-zjj")))
    assert "organisation_id" in caught.value.errors


def test_a_violation_needs_no_end_date(world):
    event = record(world, "zjj", sanction(org_id(world, "bad-co"), kind="violation", period_end=None))
    assert event.period_end is None and event.period == "2026-09-01 起"
    with world.sessions() as s:
        assert credit.active_sanction(s, org_id(world, "bad-co"), clock.now()) is None


def test_a_blacklisted_tenderer_is_refused_at_registration_with_the_reason(world):
    record(world, "zjj", sanction(org_id(world, "t-chengtou")))
    with pytest.raises(SanctionedError) as caught:
        register(world)
    message = str(caught.value)
    for part in ("一处失信、处处受限", "张掖市城市建设投资有限公司", "围标串标", "张掖市住房和城乡建设局",
                 "张建罚〔2026〕12号", "2026-09-01 至 2027-08-31", "登记交易项目"):
        assert part in message
    with world.sessions() as s:
        assert s.execute(select(func.count()).select_from(Project)).scalar_one() == 0
        assert s.execute(select(AuditEvent).where(AuditEvent.action == "project.register")).first() is None


def test_a_blacklisted_agency_is_refused_at_registration(world):
    record(world, "zjj", sanction(org_id(world, "a-gansu"), reason="出借资质"))
    with pytest.raises(SanctionedError, match="出借资质"):
        register(world, "agent", agency_code="a-gansu")


def test_a_sanction_ends_with_its_last_day(world, fixed_clock):
    bad = org_id(world, "bad-co")
    record(world, "zjj", sanction(bad, period_start="2026-09-01", period_end="2026-10-07"))
    with world.sessions() as s:
        last_day = clock.local_now().replace(year=2026, month=10, day=7, hour=23, minute=59)
        assert credit.active_sanction(s, bad, last_day) is not None
        assert credit.active_sanction(s, bad, last_day.replace(day=8, hour=0, minute=0)) is None
        assert credit.active_sanction(s, bad, date(2026, 8, 31)) is None
        with pytest.raises(SanctionedError):
            credit.ensure_not_sanctioned(s, bad, at=clock.now(), action="投标")
        credit.ensure_not_sanctioned(s, bad, at=date(2026, 10, 8), action="投标")


def test_an_expired_sanction_lets_the_tenderer_register_again(world, fixed_clock):
    record(world, "zjj", sanction(org_id(world, "t-chengtou"), period_end="2026-10-09"))
    with pytest.raises(SanctionedError):
        register(world)
    fixed_clock.advance(days=11)
    assert register(world).code.startswith("LZ-2026-")


def test_removal_keeps_the_history_and_lifts_the_sanction(world, fixed_clock):
    tenderer = org_id(world, "t-chengtou")
    event = record(world, "zjj", sanction(tenderer))
    before_removal = clock.now()
    fixed_clock.advance(hours=2)
    with world.sessions.begin() as s:
        credit.remove_event(s, load_actor(s, "fgw"), event.id, "经复核，处罚决定已撤销")
    assert register(world).tenderer_id == tenderer
    with world.sessions() as s:
        row = s.get(CreditEvent, event.id)
        assert (row.removed_by, row.removal_reason) == ("fgw", "经复核，处罚决定已撤销")
        assert credit.active_sanction(s, tenderer, before_removal) is not None
        assert credit.active_sanction(s, tenderer, clock.now()) is None
        assert [e.id for e in credit.events_of(s, tenderer)] == [event.id]
        assert s.execute(select(AuditEvent).where(AuditEvent.action == "credit.remove")).scalar_one()


def test_removal_needs_a_reason_a_regulator_and_an_unremoved_event(world):
    event = record(world, "zjj", sanction(org_id(world, "bad-co")))
    before = counts(world)
    with world.sessions.begin() as s, pytest.raises(PermissionDenied):
        credit.remove_event(s, load_actor(s, "staff_linze"), event.id, "理由")
    with world.sessions.begin() as s, pytest.raises(Exception, match="撤销理由"):
        credit.remove_event(s, load_actor(s, "zjj"), event.id, "  ")
    with world.sessions.begin() as s, pytest.raises(NotFound):
        credit.remove_event(s, load_actor(s, "zjj"), 99999, "理由")
    assert counts(world) == before
    with world.sessions.begin() as s:
        credit.remove_event(s, load_actor(s, "zjj"), event.id, "理由")
    with world.sessions.begin() as s, pytest.raises(InvalidState, match="已于"):
        credit.remove_event(s, load_actor(s, "zjj"), event.id, "再次")


def test_the_public_list_shows_sanctions_and_violations_in_force(world, fixed_clock):
    bad, tenderer = org_id(world, "bad-co"), org_id(world, "t-chengtou")
    record(world, "zjj", sanction(bad))
    record(world, "zjj", sanction(tenderer, kind="violation", reason="未按规定公示", period_end=None))
    record(world, "zjj", sanction(tenderer, kind="commendation", reason="优质工程", period_end=None))
    removed = record(world, "zjj", sanction(tenderer, reason="已撤销的惩戒"))
    with world.sessions.begin() as s:
        credit.remove_event(s, load_actor(s, "zjj"), removed.id, "撤销")
    with world.sessions() as s:
        rows, total = credit.public_events(s)
        assert total == 2 and sorted(e.reason for e, _ in rows) == ["围标串标", "未按规定公示"]
        rows, total = credit.public_events(s, search="失信建设")
        assert total == 1 and rows[0][1].code == "bad-co"
        rows, total = credit.public_events(s, kind="violation")
        assert [e.reason for e, _ in rows] == ["未按规定公示"]
        assert credit.public_events(s, search="100%_")[1] == 0
    fixed_clock.advance(days=400)
    with world.sessions() as s:
        assert [e.reason for e, _ in credit.public_events(s)[0]] == ["未按规定公示"]
