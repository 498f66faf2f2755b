"""Electronic guarantees: verified online, and every refusal names the check that failed."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from bondkit import BID_BOND, CODE, DEADLINE, make_world
from sqlalchemy import func, select

from engine import bank, bonds, clock, guarantees, pki
from engine.errors import PermissionDenied
from engine.models import AuditEvent


@pytest.fixture
def world(ctx):
    return make_world(ctx)


def document(world, **changes) -> dict:
    body = {
        "format": guarantees.FORMAT, "guarantee_no": "BH-2026-000123",
        "issuer": {"name": "张掖某担保有限公司", "uscc": world.issuer_uscc},
        "applicant": {"name": world.names[0], "uscc": world.bidder_usccs[0]},
        "beneficiary": {"name": "临泽县水务投资有限公司", "uscc": world.tenderer_uscc},
        "project_code": CODE, "amount": f"{BID_BOND:.2f}", "currency": "CNY",
        "valid_from": "2026-09-29T00:00:00+08:00",
        "valid_until": (DEADLINE + timedelta(days=90)).isoformat(),
        "issued_at": clock.now().astimezone(clock.SHANGHAI).isoformat(),
    }
    body.update(changes)
    return body


def envelope(world, body, signer=None) -> bytes:
    signer = signer or world.issuer
    return guarantees.sign_guarantee(signer.key, signer.cert_pem, body)


def submit(ctx, world, data: bytes, who: str = "b0"):
    with ctx.sessions.begin() as s:
        return guarantees.submit_guarantee(s, world.project_id, data, world.actors[who])


def refused(ctx, world, data: bytes, check: str, who: str = "b0") -> str:
    with ctx.sessions() as s, s.begin():
        with pytest.raises(guarantees.GuaranteeRefused) as caught:
            guarantees.submit_guarantee(s, world.project_id, data, world.actors[who])
    assert caught.value.check == check, caught.value
    with ctx.sessions() as s:
        assert s.scalar(select(func.count()).select_from(guarantees.Guarantee)) == 0
        last = s.execute(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).scalar_one()
        assert last.action == "guarantee.refused" and json.loads(last.payload)["check"] == check
    return caught.value.message


def status(ctx, world, i=0):
    with ctx.sessions() as s:
        return bonds.bond_status(s, world.project_id, world.bidders[i], deadline=DEADLINE)


def test_good_guarantee_stands_for_the_bond(ctx, world):
    row = submit(ctx, world, envelope(world, document(world)))
    assert (row.amount, row.guarantee_no, row.issuer_name) == (BID_BOND, "BH-2026-000123", "张掖某担保有限公司")
    state = status(ctx, world)
    assert state.state == "guarantee" and state.ok and state.guarantee_no == "BH-2026-000123"
    assert status(ctx, world, 1).state == "missing"
    with ctx.sessions() as s, s.begin(), pytest.raises(guarantees.GuaranteeRefused, match="duplicate"):
        guarantees.submit_guarantee(s, world.project_id, envelope(world, document(world)), world.actors["b0"])


def test_tampered_guarantee_is_refused(ctx, world):
    signed = json.loads(envelope(world, document(world, amount="800.00")))
    signed["guarantee"]["amount"] = f"{BID_BOND:.2f}"
    message = refused(ctx, world, bank.canonical(signed), "signature")
    assert "篡改" in message


def test_guarantee_signed_by_another_key_is_refused(ctx, world):
    forged = pki.Issued(world.issuer.certificate, bank.generate_key())
    refused(ctx, world, envelope(world, document(world), signer=forged), "signature")


def test_untrusted_issuer_is_refused(ctx, world):
    now = clock.now()
    rogue_ca = pki.make_root("伪造 CA", not_before=now - timedelta(days=1), not_after=now + timedelta(days=30))
    rogue = pki.issue_certificate(rogue_ca, common_name="伪造担保公司", uscc=world.issuer_uscc, usage=("signature",),
                                  not_before=now - timedelta(days=1), not_after=now + timedelta(days=30))
    assert "untrusted issuer" in refused(ctx, world, envelope(world, document(world), signer=rogue), "certificate")


def test_issuer_not_approved_is_refused(ctx, world):
    now = clock.now()
    other = pki.issue_certificate(world.ca, common_name="未核准担保公司", uscc=world.bidder_usccs[2],
                                  usage=("signature",), not_before=now - timedelta(days=1),
                                  not_after=now + timedelta(days=30))
    refused(ctx, world, envelope(world, document(world), signer=other), "issuer")


def test_amount_too_low_is_refused(ctx, world):
    assert "低于投标保证金" in refused(ctx, world, envelope(world, document(world, amount="79999.99")), "amount")


def test_validity_too_short_is_refused(ctx, world):
    short = document(world, valid_until=(DEADLINE + timedelta(days=89)).isoformat())
    assert "投标有效期" in refused(ctx, world, envelope(world, short), "validity")
    late_start = document(world, valid_from=(DEADLINE + timedelta(hours=1)).isoformat())
    refused(ctx, world, envelope(world, late_start), "validity")


def test_wrong_beneficiary_is_refused(ctx, world):
    body = document(world, beneficiary={"name": world.names[1], "uscc": world.bidder_usccs[1]})
    assert "受益人须为招标人" in refused(ctx, world, envelope(world, body), "beneficiary")


def test_wrong_project_is_refused(ctx, world):
    refused(ctx, world, envelope(world, document(world, project_code="LZ-2026-0099")), "project")


def test_someone_elses_guarantee_is_refused(ctx, world):
    refused(ctx, world, envelope(world, document(world)), "applicant", who="b1")


def test_after_the_deadline_and_malformed_are_refused(ctx, world, fixed_clock):
    refused(ctx, world, b"not json", "format")
    body = document(world)
    del body["currency"]
    refused(ctx, world, envelope(world, body), "format")
    fixed_clock.set(DEADLINE)
    refused(ctx, world, envelope(world, document(world)), "deadline")


def test_only_bidders_submit_and_only_admins_approve_issuers(ctx, world):
    with ctx.sessions() as s:
        with pytest.raises(PermissionDenied):
            guarantees.submit_guarantee(s, world.project_id, b"{}", world.actors["stf"])
        with pytest.raises(PermissionDenied):
            guarantees.approve_issuer(s, world.actors["stf"], uscc=world.issuer_uscc, name="x")
        wrong = world.issuer_uscc[:-1] + ("1" if world.issuer_uscc[-1] == "0" else "0")
        with pytest.raises(Exception, match="check character"):
            guarantees.approve_issuer(s, world.actors["adm"], uscc=wrong, name="x")


def test_the_demo_issuer_is_approved_and_its_guarantees_verify(ctx, world):
    from engine.bonds_cli import DEMO_GUARANTOR_USCC, seed_demo_bonds

    with ctx.sessions.begin() as s:
        issuer = seed_demo_bonds(s, ctx.config.home)
    with ctx.sessions.begin() as s:
        again = seed_demo_bonds(s, ctx.config.home)
        assert again.cert_pem == issuer.cert_pem
        assert DEMO_GUARANTOR_USCC in [i.uscc for i in guarantees.list_issuers(s)]
    body = document(world, issuer={"name": "甘肃省融资担保集团（演示）", "uscc": DEMO_GUARANTOR_USCC})
    assert submit(ctx, world, envelope(world, body, signer=issuer)).issuer_name == "甘肃省融资担保集团（演示）"
