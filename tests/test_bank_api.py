"""The bank interface over real HTTP: the platform and the simulated bank each on a local port.

The bank pays bonds with signed notifications to ``POST /bank/v1/notifications``; the platform computes the
refunds in its ``refund_bonds`` service task (interest from 住建's ``ct_bond_refund``) and posts signed
instructions to the bank, which answers with signed acknowledgements.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from bondkit import BID_BOND, DEADLINE, complete, make_world
from sqlalchemy import select
from werkzeug.serving import make_server

from engine import bank, bond_refunds, bonds, clock, pki
from engine.banksim import BankSim
from engine.errors import InvalidState
from engine.models import AuditEvent

PAYERS = ("622200000000", "622200000001", "622200000002")
SIGNED = datetime.fromisoformat("2026-11-20T10:00:00+08:00")


def _serve(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def net(ctx, app):
    """The platform's web app and the simulated bank, both served over HTTP on local ports."""
    sim = BankSim("simbank", bank.generate_key(), "", "")
    bank_server, bank_thread = _serve(sim)
    platform_server, platform_thread = _serve(app)
    world = make_world(ctx, bank_url=f"http://127.0.0.1:{bank_server.server_port}")
    sim.key = world.bank_key
    sim.platform_url = f"http://127.0.0.1:{platform_server.server_port}/bank/v1/notifications"
    sim.platform_public_pem = pki.platform_public_pem(ctx.config).decode()
    for number, name in zip(PAYERS, world.names, strict=True):
        sim.open_payer(number, name, "1000000.00")
    yield world, sim
    for server, thread in ((platform_server, platform_thread), (bank_server, bank_thread)):
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def accounts(ctx, world) -> list[str]:
    with ctx.sessions.begin() as s:
        return [bonds.open_account(s, world.project_id, org, world.actors[f"b{i}"]).account_number
                for i, org in enumerate(world.bidders)]


def answer_of(ctx, response: bank.Response) -> dict:
    """The platform's answer, after checking the platform's signature on it."""
    signature = base64.b64decode(bank.header(response.headers, bank.HEADER_SIGNATURE))
    assert pki.verify_platform(pki.platform_public_pem(ctx.config), response.body, signature)
    return json.loads(response.body)


def test_payments_over_http_are_signed_both_ways(ctx, net):
    world, sim = net
    numbers = accounts(ctx, world)
    response = sim.pay(numbers[0], BID_BOND, PAYERS[0])
    assert response.status == 200
    answer = answer_of(ctx, response)
    assert answer["status"] == "accepted" and answer["account_number"] == numbers[0]
    assert sim.accounts[PAYERS[0]].balance == Decimal("920000.00")
    with ctx.sessions() as s:
        assert bonds.bond_status(s, world.project_id, world.bidders[0], deadline=DEADLINE).state == "paid"


def test_refused_messages_over_http(ctx, net):
    world, sim = net
    number = accounts(ctx, world)[0]
    body = sim.notification(number, BID_BOND, PAYERS[0], nonce="nonce-http-0001")
    assert sim.deliver(body).status == 200
    again = sim.deliver(body)
    assert again.status == 200 and answer_of(ctx, again) == answer_of(ctx, sim.sent[0])
    cases = [
        (sim.notification(number, "1.00", PAYERS[0], nonce="nonce-http-0001"), None, 409, "replayed"),
        (sim.notification(number, "1.00", PAYERS[0], timestamp=clock.now() - timedelta(minutes=10)), None, 401,
         "stale"),
        (sim.notification("8000000990000019", "1.00", PAYERS[0]), None, 422, "unknown_account"),
        (body, {}, 400, "malformed"),
        (body, BankSim("simbank", bank.generate_key(), "", "").headers(body), 401, "bad_signature"),
        (body, BankSim("otherbank", world.bank_key, "", "").headers(body), 401, "unknown_bank"),
    ]
    for message, headers, status, code in cases:
        response = sim.deliver(message, headers)
        assert (response.status, answer_of(ctx, response)["code"]) == (status, code)
    with ctx.sessions() as s:
        assert [r.code for r in reversed(bonds.refusals(s))] == [c[3] for c in cases]
        assert len(bonds.payments_of(s, s.execute(select(bonds.BondAccount)).scalars().first().id)) == 1


def pay_all(ctx, world, sim) -> list[str]:
    numbers = accounts(ctx, world)
    for number, payer in zip(numbers, PAYERS, strict=True):
        assert sim.pay(number, BID_BOND, payer).status == 200
    return numbers


def test_refunds_with_interest_are_sent_acknowledged_and_idempotent(ctx, net, fixed_clock):
    world, sim = net
    pay_all(ctx, world, sim)
    fixed_clock.set(SIGNED)
    complete(ctx, world, "sign_contract", {})  # the refund_bonds service task runs right after it
    with ctx.sessions() as s:
        rows = bond_refunds.refunds_of(s, world.project_id)
    days = (SIGNED.date() - datetime.fromisoformat("2026-09-29").date()).days
    interest = (BID_BOND * Decimal("0.0035") * days / 360).quantize(Decimal("0.01"))
    assert [(r.principal, r.interest, r.days, r.status) for r in rows] == [(BID_BOND, interest, days, "pending")] * 3
    assert rows[0].due_at == datetime.fromisoformat("2026-11-26T00:00:00+08:00")  # 5 days, ends at 24:00
    with ctx.sessions.begin() as s:
        sent = bond_refunds.send_refunds(s, world.project_id, config=ctx.config, actor=world.actors["stf"])
        assert {r.status for r in sent} == {"acknowledged"}
    assert sim.accounts[PAYERS[1]].balance == Decimal("1000000.00") + interest
    with ctx.sessions.begin() as s:
        assert bond_refunds.send_refunds(s, world.project_id, config=ctx.config) == []
        row = bond_refunds.refunds_of(s, world.project_id)[0]
        assert bank.verify(s.get(bonds.BankPartner, row.bank_id).public_key_pem, row.ack_body.encode(),
                           row.ack_signature)
    resent = bank.post(f"{world_bank_url(ctx, world)}/refunds", row.body.encode(),
                       {bank.HEADER_SIGNATURE: row.signature})
    assert (resent.status, resent.body.decode()) == (200, row.ack_body)
    assert sim.accounts[PAYERS[0]].balance == Decimal("1000000.00") + interest
    changed = row.body.replace(row.to_account, PAYERS[2]).encode()
    forged = bank.post(f"{world_bank_url(ctx, world)}/refunds", changed, {bank.HEADER_SIGNATURE: row.signature})
    assert forged.status == 401
    with ctx.sessions() as s:
        actions = list(s.execute(select(AuditEvent.action).where(AuditEvent.action.like("bond.refund%"))).scalars())
    assert actions.count("bond.refund_compute") == 3 and actions.count("bond.refund_ack") == 3


def world_bank_url(ctx, world) -> str:
    with ctx.sessions() as s:
        return s.execute(select(bonds.BankPartner.base_url)).scalar_one()


def test_unreachable_bank_is_retried_with_the_same_bytes(ctx, net, fixed_clock):
    world, sim = net
    pay_all(ctx, world, sim)
    fixed_clock.set(SIGNED)
    complete(ctx, world, "sign_contract", {})
    good_url = world_bank_url(ctx, world)
    with ctx.sessions.begin() as s:
        s.execute(select(bonds.BankPartner)).scalar_one().base_url = "http://127.0.0.1:9"
    with ctx.sessions.begin() as s:
        failed = bond_refunds.send_refunds(s, world.project_id, config=ctx.config)
        assert {r.status for r in failed} == {"failed"} and "could not be reached" in failed[0].last_error
        first_bodies = [r.body for r in failed]
    with ctx.sessions.begin() as s:
        s.execute(select(bonds.BankPartner)).scalar_one().base_url = good_url
    with ctx.sessions.begin() as s:
        done = bond_refunds.send_refunds(s, world.project_id, config=ctx.config)
        assert [r.body for r in done] == first_bodies
        assert {(r.status, r.attempts) for r in done} == {("acknowledged", 2)}


def test_withdrawal_refund_has_no_interest_and_needs_notice_before_the_deadline(ctx, net, fixed_clock):
    world, sim = net
    pay_all(ctx, world, sim)
    fixed_clock.set(DEADLINE - timedelta(days=3))
    notice = bond_refunds.Withdrawal(world.bidders[1], clock.now())
    with ctx.sessions.begin() as s:
        (row,) = bond_refunds.compute_refunds(s, world.project_id, withdrawal=notice, actor=world.actors["stf"])
        assert (row.reason, row.interest, row.amount, row.to_account) == ("withdrawal", 0, BID_BOND, PAYERS[1])
    with ctx.sessions() as s:
        assert bond_refunds.compute_refunds(s, world.project_id, withdrawal=notice, actor=world.actors["stf"]) == []
        late = bond_refunds.Withdrawal(world.bidders[0], DEADLINE)
        with pytest.raises(InvalidState, match="第三十五条"):
            bond_refunds.compute_refunds(s, world.project_id, withdrawal=late, actor=world.actors["stf"])
        with pytest.raises(Exception, match="staff of its centre"):
            bond_refunds.compute_refunds(s, world.project_id, withdrawal=notice, actor=world.actors["ten"])


def test_cli_status_and_send_refunds(ctx, config, net, fixed_clock, monkeypatch, capsys):
    from engine.cli import main

    world, sim = net
    pay_all(ctx, world, sim)
    fixed_clock.set(SIGNED)
    complete(ctx, world, "sign_contract", {})
    monkeypatch.setenv("GGZY_HOME", str(config.home))
    if config.database_url:
        monkeypatch.setenv("DATABASE_URL", config.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["bonds", "status", "lz-2026-0007", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [b["state"] for b in listed["bonds"]] == ["paid"] * 3
    assert main(["bonds", "send-refunds", "LZ-2026-0007", "--json", "--as", "stf"]) == 0
    assert {r["status"] for r in json.loads(capsys.readouterr().out)} == {"acknowledged"}
    assert main(["bonds", "send-refunds", "LZ-2099-0001"]) == 1
    assert "没有交易编码" in capsys.readouterr().err
