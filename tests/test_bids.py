"""Sealed bids on one project: registration, submission, receipts, withdrawal, the sealing guarantee, the opening.

The issue's five bidders (one blacklisted, one late, one with an electronic guarantee, one whose
bond arrives after the deadline, one withdrawing and resubmitting) plus a sixth plain bidder, so
that three valid bids remain and the online opening takes place.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from bidworld import document, give_guarantee, make_market, pay_bond, sealed
from sqlalchemy import select, text
from test_construction_tender import Run, to_bidding, world  # noqa: F401 - the world fixture

from engine import audit, bids, bonds, credit, opening, pki, seal
from engine.actors import SYSTEM
from engine.credit import CreditInput, SanctionedError
from engine.errors import InvalidState
from engine.models import AuditEvent, Organisation, Project

DEADLINE = datetime.fromisoformat("2026-10-20T09:30:00+08:00")
CODE = "LZ-2026-0001"
NAMES = ["失信建设有限公司", "迟到工程有限公司", "保函路桥有限公司", "晚缴保证金建筑有限公司", "撤回重交安装有限公司",
         "按时水利工程有限公司"]
PRICES = {"guarantee": "7650000.00", "resubmit_first": "7999999.00", "resubmit": "7720000.00",
          "plain": "7810000.00", "late_bond": "7700000.00", "late": "7600000.00", "blacklisted": "7555555.00"}


def _submit(ctx, bidder, package, **kw):
    with ctx.sessions.begin() as s:
        bid = bids.submit_bid(s, bidder_project(ctx), package, bidder.actor, config=ctx.config, **kw)
        return bid.id, bid.receipt


def bidder_project(ctx) -> int:
    with ctx.sessions() as s:
        return s.execute(select(Project.id).where(Project.code == CODE)).scalar_one()


@pytest.fixture
def scenario(ctx, fixed_clock, world):  # noqa: F811
    run = Run(ctx, fixed_clock, world)
    with ctx.sessions.begin() as s:
        s.get(Project, world.project_id).instance_id = run.id  # as project registration links them
    to_bidding(run)
    market = make_market(ctx, NAMES)
    blacklisted, late, guaranteed, late_bond, resubmit, plain = market.bidders
    run.at("2026-10-08T10:00:00+08:00")
    for bidder in market.bidders:
        with ctx.sessions.begin() as s:
            bids.register_for_project(s, world.project_id, bidder.actor)
    return run, market, (blacklisted, late, guaranteed, late_bond, resubmit, plain)


def test_five_bidders_sealed_submission_and_the_opening(ctx, scenario, world):  # noqa: F811
    run, market, (blacklisted, late, guaranteed, late_bond, resubmit, plain) = scenario
    docs = {b.uscc: document(b) for b in market.bidders}
    with ctx.sessions() as s:
        tenderer = s.get(Organisation, world.tenderer_id)
    give_guarantee(ctx, market, world.project_id, guaranteed, "160000.00", DEADLINE, tenderer)
    run.at("2026-10-19T10:00:00+08:00")
    shared_payer = "6222000000000777"
    for bidder, payer in ((resubmit, shared_payer), (plain, shared_payer), (late, None), (blacklisted, None)):
        pay_bond(ctx, market, world.project_id, bidder, "160000.00", datetime.fromisoformat(
            "2026-10-19T10:00:00+08:00"), payer)

    # The blacklisted bidder is refused at submission, with the reason; nothing is stored for it.
    with ctx.sessions.begin() as s:
        credit.record_event(s, SYSTEM, CreditInput(blacklisted.organisation_id, "sanction", "张掖市住建局",
                                                   "张建罚〔2026〕9号", "串通投标", "2026-10-01", "2027-09-30"))
    with pytest.raises(SanctionedError, match="串通投标"):
        _submit(ctx, blacklisted, sealed(blacklisted, CODE, PRICES["blacklisted"], docs[blacklisted.uscc]))

    g_id, g_receipt = _submit(ctx, guaranteed, sealed(guaranteed, CODE, PRICES["guarantee"], docs[guaranteed.uscc],
                                                      author="王工"), remote_addr="10.1.1.7")
    first_id, _ = _submit(ctx, resubmit, sealed(resubmit, CODE, PRICES["resubmit_first"], docs[resubmit.uscc]))
    with ctx.sessions.begin() as s:
        assert bids.withdraw_bid(s, first_id, resubmit.actor).status == "withdrawn"
    r_id, _ = _submit(ctx, resubmit, sealed(resubmit, CODE, PRICES["resubmit"], docs[resubmit.uscc], author="王工"),
                      remote_addr="10.1.1.7")
    p_id, _ = _submit(ctx, plain, sealed(plain, CODE, PRICES["plain"], docs[plain.uscc]), device_fingerprint="fp-9")
    d_id, _ = _submit(ctx, late_bond, sealed(late_bond, CODE, PRICES["late_bond"], docs[late_bond.uscc]))

    # The platform's receipt verifies offline with the platform's public key.
    content = seal.verify_receipt(g_receipt.encode(), pki.platform_public_pem(ctx.config))
    assert content["bid_id"] == g_id and content["project_code"] == CODE

    # Sealing: the whole database and the file store reveal no price and no 32 bytes of any document.
    assert_sealed(ctx, [v for k, v in PRICES.items()], list(docs.values()))

    # The server refuses to open before the deadline, and the attempt is audited.
    with ctx.sessions() as s, s.begin():
        with pytest.raises(opening.BidSealed):
            opening.open_bid(s, g_id, bytes(32), guaranteed.actor, config=ctx.config)
        s.commit()
    with ctx.sessions() as s:
        assert s.execute(select(AuditEvent).where(AuditEvent.action == "bid.open_refused")).scalar_one()

    # Late: after the deadline instant (server clock) the submission is refused.
    run.at("2026-10-20T09:30:00+08:00")
    with pytest.raises(InvalidState, match="投标截止时间"):
        _submit(ctx, late, sealed(late, CODE, PRICES["late"], docs[late.uscc]))
    with ctx.sessions() as s, pytest.raises(InvalidState, match="投标截止时间"):
        bids.withdraw_bid(s, p_id, plain.actor)

    # The late bond arrives after the deadline; the deadline timer counts 3 valid bids of 4.
    assert run.sweep("2026-10-09T17:00:01+08:00") == 1
    run.at("2026-10-20T09:31:00+08:00")
    pay_bond(ctx, market, world.project_id, late_bond, "160000.00", datetime.fromisoformat(
        "2026-10-20T09:30:30+08:00"))
    assert run.sweep("2026-10-20T09:31:00+08:00") == 1
    assert run.data()["opening"]["bid_count"] == 3
    with ctx.sessions() as s:
        assert s.get(bids.Bid, d_id).status == "rejected" and "late" in s.get(bids.Bid, d_id).status_reason

    # In the window: two bidders decrypt with their key files, one does not (办法 §31); an objection.
    for bidder, bid_id in ((guaranteed, g_id), (resubmit, r_id)):
        with ctx.sessions() as s:
            key = seal.unwrap_key(seal.parse(bids.package_bytes(ctx.config, s.get(bids.Bid, bid_id))), bidder.key)
        with ctx.sessions.begin() as s:
            with pytest.raises(InvalidState, match="解密失败"):
                with s.begin_nested():
                    opening.open_bid(s, bid_id, bytes(32), bidder.actor, config=ctx.config)
            assert opening.open_bid(s, bid_id, key, bidder.actor, config=ctx.config).status == "decrypted"
    with ctx.sessions.begin() as s:
        objection = opening.raise_objection(s, world.project_id, "开标时间推迟了一分钟", plain.actor)
    assert run.sweep("2026-10-20T10:01:01+08:00") == 1
    assert set(run.open()) == {"confirm_opening"}

    with ctx.sessions() as s:
        (record,) = opening.opening_records(s, plain.actor, world.project_id)
        rows = {r["bidder_uscc"]: r for r in record.content["bids"]}
        assert opening.opening_records(s, blacklisted.actor, world.project_id) == []
        signals = opening.collusion_signals(s, SYSTEM, world.project_id)
        kinds = {(sig.kind, tuple(sig.organisation_ids)) for sig in signals}
    assert set(rows) == {guaranteed.uscc, resubmit.uscc, plain.uscc, late_bond.uscc}
    assert (rows[guaranteed.uscc]["price"], rows[guaranteed.uscc]["bond_state"]) == (PRICES["guarantee"], "guarantee")
    assert (rows[resubmit.uscc]["price"], rows[resubmit.uscc]["decryption"]) == (PRICES["resubmit"], "decrypted")
    assert (rows[plain.uscc]["price"], rows[plain.uscc]["decryption"]) == (None, "undecrypted")
    assert (rows[late_bond.uscc]["decryption"], rows[late_bond.uscc]["bond_state"]) == ("rejected", "late")
    pair = tuple(sorted((guaranteed.organisation_id, resubmit.organisation_id)))
    assert ("same_author", pair) in kinds and ("same_ip", pair) in kinds
    assert ("same_payer_account", tuple(sorted((resubmit.organisation_id, plain.organisation_id)))) in kinds
    with ctx.sessions() as s:  # the record reads all payer accounts at once, as bond_status states them one by one
        current = opening.latest_opening(s, world.project_id)
        payers = opening._payer_accounts(s, current)
        for bid in s.execute(select(bids.Bid).where(bids.Bid.project_id == world.project_id)).scalars():
            assert payers.get(bid.organisation_id) == bonds.bond_status(
                s, world.project_id, bid.organisation_id, deadline=current.bid_deadline).payer_account
        assert payers.get(guaranteed.organisation_id) is None and payers.get(plain.organisation_id)

    run.do("confirm_opening", {"opening_record_confirmed": True,
                               "opening_answers": [{"objection_id": objection.id, "answer": "系统时钟为准，未推迟。"}]})
    assert set(run.open()) == {"record_committee"}
    with ctx.sessions() as s:
        assert s.get(bids.OpeningObjection, objection.id).answer == "系统时钟为准，未推迟。"
        assert audit.verify(s).ok


def assert_sealed(ctx, prices: list[str], documents: list[bytes]) -> None:
    """Assert that neither the database (raw file and every row) nor the file store holds a price or document bytes."""
    blobs: list[bytes] = []
    home = Path(ctx.config.home)
    for path in home.rglob("*"):
        if path.is_file() and "demo-keys" not in path.parts:
            blobs.append(path.read_bytes())
    with ctx.sessions() as s:
        for table in bids.Base.metadata.sorted_tables:
            for row in s.execute(text(f'SELECT * FROM "{table.name}"')):
                blobs.append(repr(tuple(row)).encode("utf-8", "replace"))
    assert len(blobs) > 10
    chunks = [d[i:i + 32] for d in documents for i in range(0, len(d) - 32, 16)]
    for blob in blobs:
        for price in prices:
            assert price.encode() not in blob and price.replace(".00", "").encode() not in blob
        for chunk in chunks:
            assert chunk not in blob


def test_registration_first_and_a_wrong_key_or_tampered_package_is_refused(ctx, scenario, world):  # noqa: F811
    run, market, bidders = scenario
    a, b = bidders[2], bidders[4]
    run.at("2026-10-19T10:00:00+08:00")
    package = sealed(a, CODE, "7650000.00", document(a))
    # Signed with B's key but claiming A: refused, nothing stored.
    forged = seal.seal(seal.Bid(Decimal("1.00"), b"x", "x.pdf"), project_code=CODE,
                       bidder_uscc=a.uscc, certificate_pem=b.certificate_pem, private_key=b.key, sealed_at="x")
    with pytest.raises(InvalidState, match="another certificate"):
        _submit(ctx, a, forged)
    tampered = package.replace(b'"ciphertext":"', b'"ciphertext":"AAAA', 1)
    with pytest.raises(InvalidState, match="未按要求加密"):
        _submit(ctx, a, tampered)
    with pytest.raises(InvalidState, match="is for project"):
        _submit(ctx, a, sealed(a, "LZ-2026-0099", "1.00", b"x"))
    with ctx.sessions() as s:
        assert s.execute(select(bids.Bid)).first() is None
    bid_id, receipt = _submit(ctx, a, package)
    with ctx.sessions() as s:
        assert [x.id for x in bids.my_bids(s, a.actor, world.project_id)] == [bid_id]
        assert bids.my_bids(s, b.actor, world.project_id) == []
        with pytest.raises(bids.NotFound):
            bids.own_bid(s, bid_id, b.actor)
        with pytest.raises(InvalidState, match="已报名"):
            bids.register_for_project(s, world.project_id, a.actor)
    changed = receipt.replace('"bid_id":', '"bid_id":1', 1).encode()
    with pytest.raises(seal.SealError):
        seal.verify_receipt(changed, pki.platform_public_pem(ctx.config))


def test_fewer_than_three_valid_bids_fail_the_round(ctx, scenario, world):  # noqa: F811
    run, market, bidders = scenario
    run.at("2026-10-19T10:00:00+08:00")
    for bidder in bidders[4:]:
        pay_bond(ctx, market, world.project_id, bidder, "160000.00", datetime.fromisoformat(
            "2026-10-19T10:00:00+08:00"))
        _submit(ctx, bidder, sealed(bidder, CODE, "7700000.00", document(bidder)))
    _submit(ctx, bidders[1], sealed(bidders[1], CODE, "7700000.00", document(bidders[1])))  # no bond
    assert run.sweep("2026-10-09T17:00:01+08:00") == 1
    assert run.sweep("2026-10-20T09:30:01+08:00") == 1
    failure = run.notices()[-1]
    assert failure.kind == "failure" and failure.data["bid_count"] == 2
    assert set(run.open()) == {"prepare_tender"}
    with ctx.sessions() as s:
        assert opening.opening_records(s, SYSTEM, world.project_id) == []
        with pytest.raises(InvalidState):
            opening.open_bid(s, bids.my_bids(s, bidders[4].actor)[0].id, bytes(32), bidders[4].actor, config=ctx.config)
