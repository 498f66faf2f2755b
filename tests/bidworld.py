"""Bidders for the sealed-bid tests: companies, users, CA certificates and keys, a bank, bonds, sealed packages."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from engine import bank, bids, bonds, clock, guarantees, opening, pki, seal
from engine.actors import SYSTEM, Actor, add_user, load_actor
from engine.models import Organisation
from engine.orgs import add_organisation, uscc_check_char

BANK_CODE = "zybank"


@dataclass
class Bidder:
    """A bidding company, its user and the user's certificate with its private key."""

    name: str
    uscc: str
    organisation_id: int
    actor: Actor
    certificate_id: int
    certificate_pem: bytes
    key_pem: bytes

    @property
    def key(self):
        return seal.load_private_key(self.key_pem)


def uscc(serial: int) -> str:
    """Return a valid 统一社会信用代码 for a test company."""
    first = f"91620702MA7B{serial:05d}"
    return first + uscc_check_char(first)


@dataclass
class Market:
    """The PKI, the bank and the bidders of a test."""

    demo: pki.DemoPki
    bank_key: object
    bidders: list[Bidder]


def make_market(ctx, names: list[str], usccs: list[str] | None = None) -> Market:
    """Create the demo CAs, a bank partner and one bidder (company, user, certificate) per name."""
    bank_key = bank.generate_key()
    out = []
    with ctx.sessions.begin() as s:
        demo = pki.seed_demo_pki(s, ctx.config.home)
        bonds.register_bank(s, SYSTEM, code=BANK_CODE, name="张掖银行", public_key_pem=bank.public_pem(bank_key),
                            base_url="http://bank.invalid")
        for i, name in enumerate(names):
            code = usccs[i] if usccs else uscc(100 + i)
            org = add_organisation(s, f"bidder-{i}", name, "company", uscc=code)
            user = add_user(s, f"bidder{i}", ["bidder"], password="secret-bidder" + str(i), organisation_id=org.id,
                            display_name=name + "投标员")
            certificate, key_path = pki.issue_demo_certificate(s, demo, user, org, ca_index=i % 2)
            out.append(Bidder(name, code, org.id, load_actor(s, user.username), certificate.id,
                              certificate.pem.encode(), key_path.read_bytes()))
    return Market(demo, bank_key, out)


def sealed(bidder: Bidder, project_code: str, price: str, document: bytes, *, filename: str = "投标文件.pdf",
           author: str = "") -> bytes:
    """Seal a bid on the bidder's side (what `ggzy bid seal` and the browser do)."""
    return seal.seal(seal.Bid(Decimal(price), document, filename, "application/pdf",
                              {"author": author} if author else {}),
                     project_code=project_code, bidder_uscc=bidder.uscc, certificate_pem=bidder.certificate_pem,
                     private_key=bidder.key, sealed_at="2026-10-19T10:00:00+08:00")


def document(bidder: Bidder, marker: str = "") -> bytes:
    """Return a distinct bid document (PDF-like bytes) for a bidder."""
    body = f"{bidder.name} 投标文件 {marker} ".encode() * 20 + secrets.token_bytes(256)
    return b"%PDF-1.7\n" + body + b"\n%%EOF\n"


def pay_bond(ctx, market: Market, project_id: int, bidder: Bidder, amount: str, paid_at: datetime,
             payer_account: str | None = None) -> None:
    """Deliver a signed bank notification of a bond payment into the bidder's sub-account."""
    with ctx.sessions.begin() as s:
        account = bonds.open_account(s, project_id, bidder.organisation_id, SYSTEM)
        message = {"notification_id": "n-" + secrets.token_hex(8), "nonce": "c-" + secrets.token_hex(8),
                   "timestamp": paid_at.isoformat(), "account_number": account.account_number, "amount": amount,
                   "currency": "CNY", "payer_account": payer_account or f"6222{bidder.organisation_id:012d}",
                   "payer_name": bidder.name, "paid_at": paid_at.isoformat()}
        body = bank.canonical(message)
        bonds.receive_notification(s, bank_code=BANK_CODE, signature=bank.sign(market.bank_key, body), body=body)


def give_guarantee(ctx, market: Market, project_id: int, bidder: Bidder, amount: str, deadline: datetime,
                   tenderer: Organisation) -> None:
    """Have an approved insurer issue an electronic guarantee for the bidder and submit it."""
    at = deadline - timedelta(days=3)
    issuer_uscc = uscc(900)
    issued = pki.issue_certificate(market.demo.cas[0], common_name="张掖保险保函中心", uscc=issuer_uscc,
                                   not_before=at - timedelta(days=10), not_after=at + timedelta(days=400))
    body = {"format": guarantees.FORMAT, "guarantee_no": "BH-" + secrets.token_hex(4),
            "issuer": {"name": "张掖保险", "uscc": issuer_uscc},
            "applicant": {"name": bidder.name, "uscc": bidder.uscc},
            "beneficiary": {"name": tenderer.name, "uscc": tenderer.uscc}, "project_code": None,
            "amount": amount, "currency": "CNY", "valid_from": (deadline - timedelta(days=5)).isoformat(),
            "valid_until": (deadline + timedelta(days=120)).isoformat(), "issued_at": at.isoformat()}
    with ctx.sessions.begin() as s:
        if not any(i.uscc == issuer_uscc for i in guarantees.list_issuers(s)):
            guarantees.approve_issuer(s, SYSTEM, uscc=issuer_uscc, name="张掖保险")
        body["project_code"] = s.get(bids.Project, project_id).code
        document = guarantees.sign_guarantee(issued.key, issued.cert_pem, body)
        guarantees.submit_guarantee(s, project_id, document, bidder.actor)


def bid(ctx, market: Market, project_id: int, bidder: Bidder, price: str) -> int:
    """Register the bidder for the open round (if not yet), pay its bond now and submit a sealed bid; return its id."""
    with ctx.sessions.begin() as s:
        window = bids.bidding_window(s, project_id)
        registration = bids.my_registration(s, bidder.actor, project_id)
        if registration is None or registration.tender_round != window.tender_round:
            bids.register_for_project(s, project_id, bidder.actor)
        code, bond = window.project.code, bonds.project_terms(s, project_id).bid_bond
    pay_bond(ctx, market, project_id, bidder, f"{bond:.2f}", clock.now())
    with ctx.sessions.begin() as s:
        return bids.submit_bid(s, project_id, sealed(bidder, code, price, document(bidder)), bidder.actor,
                               config=ctx.config).id


def decrypt(ctx, market: Market, bid_ids: list[int]) -> None:
    """Each bidder unwraps its content key with its key file and hands it over (in the decryption window)."""
    by_org = {b.organisation_id: b for b in market.bidders}
    for bid_id in bid_ids:
        with ctx.sessions.begin() as s:
            row = s.get(bids.Bid, bid_id)
            bidder = by_org[row.organisation_id]
            key = seal.unwrap_key(seal.parse(bids.package_bytes(ctx.config, row)), bidder.key)
            opening.open_bid(s, bid_id, key, bidder.actor, config=ctx.config)
