"""Bid bonds: sub-accounts, signed bank notifications (good, replayed, stale, forged...), states at the deadline."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from bondkit import BID_BOND, DEADLINE, make_world
from sqlalchemy import func, select

from engine import bank, bonds, clock
from engine.banksim import BankSim
from engine.errors import InvalidState, PermissionDenied
from engine.models import AuditEvent


@pytest.fixture
def world(ctx):
    return make_world(ctx)


@pytest.fixture
def sim(world):
    """The bank's side, used here only to build and sign messages (delivery is tested in test_bank_api)."""
    bank_sim = BankSim("simbank", world.bank_key, "http://127.0.0.1:9/unused", "")
    for i, name in enumerate(world.names):
        bank_sim.open_payer(f"62220000000{i}", name, "1000000.00")
    bank_sim.open_payer("622299999999", "某劳务公司", "1000000.00")
    return bank_sim


def account(ctx, world, i=0):
    with ctx.sessions.begin() as s:
        return bonds.open_account(s, world.project_id, world.bidders[i], world.actors[f"b{i}"]).account_number


def receive(ctx, sim, body, headers=None):
    headers = headers if headers is not None else sim.headers(body)
    with ctx.sessions.begin() as s:
        return bonds.receive_notification(s, bank_code=headers.get(bank.HEADER_BANK),
                                          signature=headers.get(bank.HEADER_SIGNATURE), body=body)


def counts(ctx):
    with ctx.sessions() as s:
        return (s.scalar(select(func.count()).select_from(bonds.BondPayment)),
                s.scalar(select(func.count()).select_from(bonds.BankRefusal)))


def refused(ctx, sim, body, code, headers=None):
    """Deliver a message that must be refused with ``code``; the refusal alone is stored (and audited)."""
    payments, refusals = counts(ctx)
    with ctx.sessions() as s, s.begin():
        with pytest.raises(bank.MessageRefused) as caught:
            headers = headers if headers is not None else sim.headers(body)
            bonds.receive_notification(s, bank_code=headers.get(bank.HEADER_BANK),
                                       signature=headers.get(bank.HEADER_SIGNATURE), body=body)
    assert caught.value.code == code, caught.value
    assert counts(ctx) == (payments, refusals + 1)
    with ctx.sessions() as s:
        last = s.execute(select(bonds.BankRefusal).order_by(bonds.BankRefusal.id.desc()).limit(1)).scalar_one()
        assert last.code == code
        assert s.execute(select(AuditEvent.action).order_by(AuditEvent.seq.desc()).limit(1)).scalar() == "bond.refused"
    return caught.value


def status(ctx, world, i=0, deadline=DEADLINE):
    with ctx.sessions() as s:
        return bonds.bond_status(s, world.project_id, world.bidders[i], deadline=deadline)


def test_account_is_idempotent_unique_and_check_digited(ctx, world):
    first, again, other = account(ctx, world, 0), account(ctx, world, 0), account(ctx, world, 1)
    assert first == again != other
    assert bonds.valid_account_number(first) and bonds.valid_account_number(other)
    assert not bonds.valid_account_number(first[:-1] + str((int(first[-1]) + 1) % 10))
    with ctx.sessions() as s:
        row = s.execute(select(bonds.BondAccount).where(bonds.BondAccount.account_number == first)).scalar_one()
        assert row.required_amount == BID_BOND
        actions = s.execute(select(AuditEvent.action).where(AuditEvent.action == "bond.account_open")).scalars()
        assert len(list(actions)) == 2


def test_account_only_for_own_organisation_and_after_the_tender(ctx, world):
    with ctx.sessions() as s, pytest.raises(PermissionDenied):
        bonds.open_account(s, world.project_id, world.bidders[1], world.actors["b0"])
    with ctx.sessions.begin() as s:
        from engine.models import Project
        s.get(Project, world.project_id).instance_id = None
    with ctx.sessions() as s, pytest.raises(InvalidState, match="投标保证金金额未定"):
        bonds.open_account(s, world.project_id, world.bidders[0], world.actors["b0"])


def test_good_notification_marks_the_bond_paid(ctx, world, sim):
    number = account(ctx, world)
    receipt = receive(ctx, sim, sim.notification(number, BID_BOND, "622200000000"))
    assert receipt.answer["status"] == "accepted" and not receipt.repeated and receipt.answer["flags"] == []
    state = status(ctx, world)
    assert (state.state, state.amount, state.payer_account, state.ok) == ("paid", BID_BOND, "622200000000", True)


def test_same_id_same_body_is_idempotent(ctx, world, sim):
    body = sim.notification(account(ctx, world), BID_BOND, "622200000000")
    first = receive(ctx, sim, body)
    again = receive(ctx, sim, body)
    assert again.repeated and again.answer == first.answer
    assert counts(ctx) == (1, 0)
    assert status(ctx, world).amount == BID_BOND


def test_same_id_different_body_is_refused(ctx, world, sim):
    number = account(ctx, world)
    receive(ctx, sim, sim.notification(number, BID_BOND, "622200000000", notification_id="N-dup-00001"))
    err = refused(ctx, sim, sim.notification(number, "1.00", "622200000000", notification_id="N-dup-00001"),
                  "conflict")
    assert "other content" in err.message
    assert status(ctx, world).amount == BID_BOND


def test_replayed_nonce_is_refused(ctx, world, sim):
    number = account(ctx, world)
    receive(ctx, sim, sim.notification(number, "40000.00", "622200000000", nonce="nonce-replay-1"))
    err = refused(ctx, sim, sim.notification(number, "40000.00", "622200000000", nonce="nonce-replay-1"), "replayed")
    assert "nonce-replay-1" in err.message
    assert status(ctx, world).state == "short"


@pytest.mark.parametrize("skew", [timedelta(minutes=-6), timedelta(minutes=6)])
def test_stale_timestamp_is_refused(ctx, world, sim, skew):
    body = sim.notification(account(ctx, world), BID_BOND, "622200000000", timestamp=clock.now() + skew)
    assert "5 minutes" in refused(ctx, sim, body, "stale").message


def test_forged_signature_is_refused(ctx, world, sim):
    body = sim.notification(account(ctx, world), BID_BOND, "622200000000")
    forger = BankSim("simbank", bank.generate_key(), "", "")
    refused(ctx, sim, body, "bad_signature", headers=forger.headers(body))
    tampered = body.replace(b'"80000.00"', b'"90000.00"')
    refused(ctx, sim, tampered, "bad_signature", headers=sim.headers(body))
    assert status(ctx, world).state == "missing"


def test_unknown_bank_and_missing_headers_are_refused(ctx, world, sim):
    body = sim.notification(account(ctx, world), BID_BOND, "622200000000")
    other = BankSim("nobank", bank.generate_key(), "", "")
    assert "nobank" in refused(ctx, sim, body, "unknown_bank", headers=other.headers(body)).message
    refused(ctx, sim, body, "malformed", headers={})


def test_unknown_account_and_malformed_amount_are_refused(ctx, world, sim):
    account(ctx, world)
    assert "not a bond sub-account" in refused(
        ctx, sim, sim.notification("8000000990000019", BID_BOND, "622200000000"), "unknown_account").message
    bad = sim.notification(account(ctx, world), BID_BOND, "622200000000").replace(b'"80000.00"', b'"8e4"')
    refused(ctx, sim, bad, "bad_amount")
    not_json = b'{"amount": 80000.00}'
    refused(ctx, sim, not_json, "malformed")


def test_bond_after_the_deadline_is_late(ctx, world, sim, fixed_clock):
    number = account(ctx, world)
    fixed_clock.set(DEADLINE + timedelta(minutes=1))
    receive(ctx, sim, sim.notification(number, BID_BOND, "622200000000"))
    state = status(ctx, world)
    assert state.state == "late" and not state.ok and "截止后到账 80000.00" in state.detail


def test_short_amount_and_missing(ctx, world, sim):
    number = account(ctx, world)
    assert status(ctx, world).state == "missing"
    receive(ctx, sim, sim.notification(number, "79999.99", "622200000000"))
    short = status(ctx, world)
    assert (short.state, short.amount, short.required) == ("short", Decimal("79999.99"), BID_BOND)
    receive(ctx, sim, sim.notification(number, "0.01", "622200000000"))
    assert status(ctx, world).state == "paid"


def test_bond_from_another_account_holder_is_flagged(ctx, world, sim):
    number = account(ctx, world)
    receipt = receive(ctx, sim, sim.notification(number, BID_BOND, "622299999999"))
    assert receipt.answer["flags"] == [bonds.FLAG_FOREIGN_PAYER]
    state = status(ctx, world)
    assert state.state == "paid" and state.flags == (bonds.FLAG_FOREIGN_PAYER,)
    # One message as the engine writes them: the Chinese notes first, then the English once in brackets.
    assert state.detail == ("截止时间前到账 80000.00 元；付款人不是投标人本单位账户（条例第二十六条） "
                            "(paid in full before the deadline; paid from an account not the bidder's own)")
    # The same notes, by code with their values, for pages that say them in the reader's language.
    assert state.notes == (bonds.BondNote("paid", {"on_time": "80000.00"}), bonds.BondNote(bonds.FLAG_FOREIGN_PAYER))


def test_register_bank_checks_its_input(ctx, world):
    with ctx.sessions() as s:
        with pytest.raises(PermissionDenied):
            bonds.register_bank(s, world.actors["stf"], code="x", name="x", public_key_pem="", base_url="http://x")
        with pytest.raises(Exception, match="EC P-256|PEM"):
            bonds.register_bank(s, world.actors["adm"], code="b2", name="银行", public_key_pem="not a key",
                                base_url="https://bank.example")
        with pytest.raises(Exception, match="base_url"):
            bonds.register_bank(s, world.actors["adm"], code="b2", name="银行",
                                public_key_pem=bank.public_pem(bank.generate_key()), base_url="ftp://x")
        assert [b.code for b in bonds.list_banks(s)] == ["simbank"]


def test_the_refund_rule_is_zjj_s_deployed_table(ctx, world):
    from conftest import ROOT

    from engine import bond_refunds
    from engine.actors import add_user, load_actor
    from engine.deploy import Upload, deploy
    from engine.errors import EngineError, NotFound
    from engine.models import DefinitionVersion
    from engine.orgs import add_organisation

    with ctx.sessions() as s:
        rule = bond_refunds.refund_rule(s, "contract")
        assert (rule.with_interest, rule.annual_rate, rule.day_basis, rule.refund_days, rule.version) == (
            True, Decimal("0.0035"), 360, 5, 1)
        assert "第五十七条" in rule.article
        with pytest.raises(EngineError, match="unknown refund reason"):
            bond_refunds.refund_rule(s, "lottery")
    source = (ROOT / "rules" / "ct_bond_refund.dmn").read_text(encoding="utf-8").replace("0.0035", "0.0150")
    with ctx.sessions.begin() as s:
        fgw = add_organisation(s, "dept-fgw", "张掖市发展和改革委员会", "department")
        add_user(s, "fgw", ["regulator"], organisation_id=fgw.id)
    with ctx.sessions() as s, pytest.raises(PermissionDenied):
        deploy(s, [Upload("ct_bond_refund.dmn", source.encode())], load_actor(s, "fgw"))
    with ctx.sessions.begin() as s:
        deploy(s, [Upload("ct_bond_refund.dmn", source.encode())], world.actors["reg"])
    with ctx.sessions.begin() as s:
        rule = bond_refunds.refund_rule(s, "contract")
        assert (rule.annual_rate, rule.version) == (Decimal("0.0150"), 2)
        for row in s.execute(select(DefinitionVersion).where(DefinitionVersion.key == "ct_bond_refund")).scalars():
            row.active = False
    with ctx.sessions() as s, pytest.raises(NotFound, match="ct_bond_refund"):
        bond_refunds.compute_refunds(s, world.project_id, contract_signed_at=clock.now())
