"""Real sealed bids for the demo (``ggzy demo``): bidder users with CA certificates, a demo bank, sealing, opening.

Each demo bidder company gets a user (``bidder-longyuan`` …) holding a certificate of one
of the demo CAs; its PKCS#8 key file is written to ``$GGZY_HOME/demo-keys/<user>.key.pem``
(what the bidder selects in the browser at the opening). A demo bank partner
(``demo-bank``, its key under ``$GGZY_HOME/demo-bank/``) delivers signed bond payment
notifications; its base URL (where refund instructions are sent) is ``GGZY_DEMO_BANK_URL``, by
default ``http://127.0.0.1:8765``, where ``ggzy bonds banksim`` serves that bank. During
bidding every bidder of the script registers, pays its bond and submits a bid sealed on its
side (``engine.seal``, as ``ggzy bid seal`` does); at the opening it unwraps its content key
with its key file and hands it over.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import bank, bids, bonds, clock, opening, pki, seal
from engine.actors import SYSTEM, Actor, add_user, load_actor
from engine.models import Organisation, User
from engine.pki_tools import write_private

if TYPE_CHECKING:
    from engine.demo_projects import Run

BANK_CODE = "demo-bank"
BANK_URL_ENV = "GGZY_DEMO_BANK_URL"
DEFAULT_BANK_URL = "http://127.0.0.1:8765"  # `ggzy bonds banksim` (engine.bonds_cli.DEMO_BANK_PORT)


def username_of(bidder_code: str) -> str:
    """The demo user of a demo bidder company: ``demo-bidder-longyuan`` → ``bidder-longyuan``."""
    return bidder_code.removeprefix("demo-")


def _bank_key(home: Path):
    path = home / "demo-bank" / "bank.key.pem"
    if not path.exists():
        write_private(path, bank.private_pem(bank.generate_key()))
    return bank.load_private_key(path.read_bytes())


def bank_url(environ: dict[str, str] | None = None) -> str:
    """The demo bank's base URL: ``GGZY_DEMO_BANK_URL``, else where ``ggzy bonds banksim`` listens."""
    env = os.environ if environ is None else environ
    return (env.get(BANK_URL_ENV) or "").strip().rstrip("/") or DEFAULT_BANK_URL


def logins(session: Session, bidder_codes: list[str]) -> list[tuple[str, str, list[str]]]:
    """The demo bidder users that exist, as (username, display name, roles), in the order of ``bidder_codes``."""
    users = {u.username: u for u in session.execute(
        select(User).where(User.username.in_([username_of(c) for c in bidder_codes]))).scalars()}
    return [(u.username, u.display_name or u.username, sorted(r.role for r in u.roles))
            for u in (users.get(username_of(c)) for c in bidder_codes) if u is not None]


def seed_bidders(session: Session, home: Path, password: str, bidder_codes: list[str],
                 base_url: str | None = None) -> None:
    """Create a certified user per demo bidder company, and the demo bank partner (at ``base_url``, by default
    :func:`bank_url`)."""
    demo = pki.seed_demo_pki(session, home)
    for index, code in enumerate(bidder_codes):
        organisation = session.execute(select(Organisation).where(Organisation.code == code)).scalar_one()
        user = add_user(session, username_of(code), ["bidder"], password=password,
                        display_name=f"{organisation.name}投标员", organisation_id=organisation.id)
        pki.issue_demo_certificate(session, demo, user, organisation, ca_index=index % 2)
    bonds.register_bank(session, SYSTEM, code=BANK_CODE, name="张掖银行（演示）",
                        public_key_pem=bank.public_pem(_bank_key(home)), base_url=base_url or bank_url())


def _actor(session: Session, uscc: str) -> tuple[Actor, Organisation]:
    organisation = session.execute(select(Organisation).where(Organisation.uscc == uscc)).scalar_one()
    return load_actor(session, username_of(organisation.code)), organisation


def _document(run: Run, organisation: Organisation, tender_round: int) -> bytes:
    from engine.demo_projects import _pdf

    return _pdf(f"ggzy demo / {run.spec.key} / round {tender_round} / bid of {organisation.uscc}")


def submit(run: Run) -> None:
    """Every bidder of the round registers, pays its bond (signed bank notification) and submits a sealed bid."""
    ctx, home = run.ctx, run.ctx.config.home
    for bidder, price in run.round_bids():
        with ctx.sessions.begin() as s:
            actor, organisation = _actor(s, bidder.uscc)
            registration = bids.register_for_project(s, run.project_id, actor)
            certificate = s.get(pki.Certificate, registration.certificate_id)
            account = bonds.open_account(s, run.project_id, organisation.id, actor)
            _pay(s, home, account.account_number, account.required_amount, organisation)
            bid = seal.Bid(price, _document(run, organisation, registration.tender_round), "投标文件.pdf",
                           "application/pdf", {"author": f"{organisation.name}投标员"})
            package = seal.seal(bid, project_code=run.code, bidder_uscc=organisation.uscc,
                                certificate_pem=certificate.pem.encode(), private_key=_key(home, actor),
                                sealed_at=clock.now().isoformat())
            bids.submit_bid(s, run.project_id, package, actor, config=ctx.config, remote_addr="192.0.2.10")


def _key(home: Path, actor: Actor):
    return seal.load_private_key((home / "demo-keys" / f"{actor.username}.key.pem").read_bytes())


def _pay(session: Session, home: Path, account_number: str, amount, organisation: Organisation) -> None:
    now = clock.now()
    token = hashlib.sha256(f"{account_number}/{now.isoformat()}".encode()).hexdigest()[:24]
    body = bank.canonical({"notification_id": "demo-" + token, "nonce": "nonce-" + token, "timestamp": now.isoformat(),
                           "account_number": account_number, "amount": f"{amount:.2f}", "currency": "CNY",
                           "payer_account": f"6222{organisation.id:012d}", "payer_name": organisation.name,
                           "paid_at": now.isoformat()})
    bonds.receive_notification(session, bank_code=BANK_CODE, signature=bank.sign(_bank_key(home), body), body=body)


def decrypt(run: Run) -> None:
    """In the decryption window each bidder unwraps its content key with its key file and hands it over."""
    ctx, home = run.ctx, run.ctx.config.home
    with ctx.sessions() as s:
        ids = [b.id for b in s.execute(select(bids.Bid).where(bids.Bid.project_id == run.project_id,
                                                               bids.Bid.status == "submitted")).scalars()]
    for bid_id in ids:
        with ctx.sessions.begin() as s:
            row = s.get(bids.Bid, bid_id)
            user = s.execute(select(User).where(User.organisation_id == row.organisation_id,
                                                User.username.like("bidder-%"))).scalar_one()
            actor = load_actor(s, user.username)
            content_key = seal.unwrap_key(seal.parse(bids.package_bytes(ctx.config, row)), _key(home, actor))
            opening.open_bid(s, bid_id, content_key, actor, config=ctx.config)
