"""Electronic guarantees (电子保函, R9): a signed guarantee in place of a cash bid bond, verified online.

A guarantee is a JSON document uploaded by the bidder (the applicant) before the
bid deadline. The upload is an envelope::

    {"guarantee": {...}, "signature": "<base64 DER ECDSA-SHA256>", "certificate": "<issuer's PEM>"}

and the signature covers the canonical bytes of ``guarantee`` (``engine.bank.canonical``:
keys sorted, no spaces, UTF-8; amounts and instants as strings). The guarantee's
fields are exactly::

    format        "ggzy-guarantee/1"
    guarantee_no  the issuer's number (unique per issuer)
    issuer        {"name", "uscc"}   the guarantor (a bank, insurer or guarantee company)
    applicant     {"name", "uscc"}   the bidder
    beneficiary   {"name", "uscc"}   the tenderer (招标人)
    project_code  the trading code, e.g. "LZ-2026-0001"
    amount        "80000.00" (CNY)
    currency      "CNY"
    valid_from    ISO-8601 instant with offset
    valid_until   ISO-8601 instant with offset
    issued_at     ISO-8601 instant with offset

The checks, each named in its refusal: ``format``, ``deadline`` (uploaded strictly
before the bid deadline), ``certificate`` (chains to a trusted CA root, valid,
digitalSignature, not revoked: ``engine.pki.verify_certificate``), ``issuer`` (the
certificate's organisation is an admin-approved guarantee issuer and the document
names it), ``signature``, ``project``, ``beneficiary``, ``applicant``, ``amount``
(at least the bid bond), ``validity`` (from the deadline at the latest, through the
bid validity period: 条例 §26 "投标保证金有效期应当与投标有效期一致"), ``duplicate``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine import audit, bank, bonds, clock, pki
from engine.actors import SYSTEM, Actor
from engine.db import Base, Money, UTCDateTime
from engine.errors import EngineError, PermissionDenied
from engine.models import Organisation
from engine.orgs import validate_uscc

FORMAT = "ggzy-guarantee/1"
FIELDS = ("format", "guarantee_no", "issuer", "applicant", "beneficiary", "project_code", "amount", "currency",
          "valid_from", "valid_until", "issued_at")
CHECKS = ("format", "deadline", "certificate", "issuer", "signature", "project", "beneficiary", "applicant", "amount",
          "validity", "duplicate")
MAX_BYTES = 64 * 1024


class GuaranteeRefused(EngineError):
    """A guarantee failed a check; ``check`` names it (one of CHECKS)."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(f"电子保函未通过核验（{check}）: {message}", check=check)
        self.check = check


class GuaranteeIssuer(Base):
    """An organisation an administrator approved to issue bid guarantees (bank, insurer, guarantee company)."""

    __tablename__ = "guarantee_issuers"

    id: Mapped[int] = mapped_column(primary_key=True)
    uscc: Mapped[str] = mapped_column(String(18), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    approved_by: Mapped[str] = mapped_column(String(64))
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class Guarantee(Base):
    """An accepted electronic guarantee, with the exact document and signature that were verified."""

    __tablename__ = "guarantees"
    __table_args__ = (UniqueConstraint("issuer_id", "guarantee_no"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    bidder_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    issuer_id: Mapped[int] = mapped_column(ForeignKey("guarantee_issuers.id"))
    issuer_name: Mapped[str] = mapped_column(String(200))
    guarantee_no: Mapped[str] = mapped_column(String(64))
    amount: Mapped[Decimal] = mapped_column(Money)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime)
    document: Mapped[str] = mapped_column(Text)
    document_sha256: Mapped[str] = mapped_column(String(64))
    certificate_fingerprint: Mapped[str] = mapped_column(String(64))
    submitted_by: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)


def approve_issuer(session: Session, actor: Actor, *, uscc: str, name: str) -> GuaranteeIssuer:
    """Approve (or re-activate) a guarantee issuer by its 统一社会信用代码 (admins only; audited)."""
    if not actor.has_role("admin") and actor.username != SYSTEM.username:
        raise PermissionDenied(f"{actor.username} 不能核准保函出具机构 (only administrators approve issuers)")
    uscc, name = validate_uscc((uscc or "").strip().upper()), (name or "").strip()
    if not name or len(name) > 200:
        raise EngineError("请填写出具机构名称（1-200 字）(name)")
    issuer = session.execute(select(GuaranteeIssuer).where(GuaranteeIssuer.uscc == uscc)).scalar_one_or_none()
    if issuer is None:
        issuer = GuaranteeIssuer(uscc=uscc, approved_by=actor.username, approved_at=clock.now())
        session.add(issuer)
    issuer.name, issuer.active = name, True
    session.flush()
    audit.append(session, actor=actor.username, action="guarantee.issuer_approve", payload={"uscc": uscc, "name": name})
    return issuer


def list_issuers(session: Session) -> list[GuaranteeIssuer]:
    """Return the approved guarantee issuers, by name."""
    return list(session.execute(select(GuaranteeIssuer).order_by(GuaranteeIssuer.name)).scalars())


def sign_guarantee(key: ec.EllipticCurvePrivateKey, certificate_pem: bytes, guarantee: dict[str, Any]) -> bytes:
    """Return an envelope (the issuer's side): the guarantee, its signature over the canonical bytes, the cert."""
    signature = base64.b64encode(key.sign(bank.canonical(guarantee), ec.ECDSA(hashes.SHA256()))).decode()
    return bank.canonical({"guarantee": guarantee, "signature": signature,
                           "certificate": certificate_pem.decode("ascii")})


@dataclass(frozen=True)
class _Parsed:
    guarantee: dict[str, Any]
    signature: bytes
    certificate: bytes
    amount: Decimal
    valid_from: datetime
    valid_until: datetime


def _parse(document: bytes) -> _Parsed:
    if len(document) > MAX_BYTES:
        raise GuaranteeRefused("format", f"the document is larger than {MAX_BYTES} bytes")
    try:
        envelope = bank.parse_json(document, "the guarantee")
    except bank.MessageRefused as err:
        raise GuaranteeRefused("format", err.message) from None
    if set(envelope) != {"guarantee", "signature", "certificate"} or not isinstance(envelope["guarantee"], dict) \
            or not isinstance(envelope["signature"], str) or not isinstance(envelope["certificate"], str):
        raise GuaranteeRefused("format", "the envelope must hold exactly guarantee (object), signature and "
                                         "certificate (strings)")
    body = envelope["guarantee"]
    if set(body) != set(FIELDS):
        missing, extra = sorted(set(FIELDS) - set(body)), sorted(set(body) - set(FIELDS))
        raise GuaranteeRefused("format", f"guarantee fields: missing {missing or 'none'}, unknown {extra or 'none'}")
    if body["format"] != FORMAT or body["currency"] != bank.CURRENCY:
        raise GuaranteeRefused("format", f"format must be {FORMAT!r} and currency {bank.CURRENCY!r}")
    for party in ("issuer", "applicant", "beneficiary"):
        if not isinstance(body[party], dict) or set(body[party]) != {"name", "uscc"} \
                or not all(isinstance(v, str) for v in body[party].values()):
            raise GuaranteeRefused("format", f"{party} must be {{\"name\": ..., \"uscc\": ...}}")
    if not isinstance(body["guarantee_no"], str) or not 1 <= len(body["guarantee_no"]) <= 64:
        raise GuaranteeRefused("format", "guarantee_no must be 1-64 characters")
    try:
        amount = bank.amount_of(body["amount"])
        instants = [bank.instant_of(body[f], f) for f in ("valid_from", "valid_until", "issued_at")]
        signature = base64.b64decode(envelope["signature"].encode("ascii"), validate=True)
    except (bank.MessageRefused, binascii.Error, UnicodeEncodeError) as err:
        raise GuaranteeRefused("format", str(err)) from None
    return _Parsed(body, signature, envelope["certificate"].encode("ascii", "replace"), amount, instants[0],
                   instants[1])


def submit_guarantee(session: Session, project_id: int, document: bytes, actor: Actor) -> Guarantee:
    """Verify a bidder's guarantee online and record it; a refusal is audited and raised naming its check."""
    if not actor.has_role("bidder") or actor.organisation_id is None:
        raise PermissionDenied(f"{actor.username} 不是投标单位的用户 (only a bidder's user submits its guarantee)")
    try:
        with session.begin_nested():
            return _submit(session, project_id, document, actor)
    except GuaranteeRefused as err:
        audit.append(session, actor=actor.username, action="guarantee.refused", project_id=project_id,
                     payload={"check": err.check, "message": err.message,
                              "document_sha256": hashlib.sha256(document).hexdigest()})
        raise


def _submit(session: Session, project_id: int, document: bytes, actor: Actor) -> Guarantee:
    parsed = _parse(document)
    body = parsed.guarantee
    terms = bonds.project_terms(session, project_id)
    now = clock.now()
    if terms.bid_deadline is None or terms.bid_bond is None:
        raise GuaranteeRefused("deadline", f"项目 {terms.project.code} 尚未发布招标文件 (no bid deadline yet)")
    if now >= terms.bid_deadline:
        raise GuaranteeRefused("deadline", f"投标截止时间 {terms.bid_deadline.isoformat()} 已过 (after the deadline)")
    try:
        verified = pki.verify_certificate(session, parsed.certificate, at=now, usage="signature")
    except EngineError as err:
        raise GuaranteeRefused("certificate", str(err)) from None
    issuer = session.execute(select(GuaranteeIssuer).where(GuaranteeIssuer.uscc == (verified.uscc or ""),
                                                           GuaranteeIssuer.active.is_(True))).scalar_one_or_none()
    if issuer is None:
        raise GuaranteeRefused("issuer", f"证书主体（{verified.subject}）不是经核准的保函出具机构 "
                                         "(the signer is not an approved guarantee issuer)")
    if body["issuer"]["uscc"].upper() != issuer.uscc:
        raise GuaranteeRefused("issuer", f"保函载明的出具机构 {body['issuer']['uscc']} 与签名证书 {issuer.uscc} 不符")
    if not pki.public_key_verifies(verified.public_key, bank.canonical(body), parsed.signature):
        raise GuaranteeRefused("signature", "签名与保函内容不符（内容被篡改或非该证书签发）"
                                            "(the signature does not match the document and the certificate)")
    _check_content(session, terms, parsed, actor)
    if session.execute(select(Guarantee.id).where(Guarantee.issuer_id == issuer.id,
                                                  Guarantee.guarantee_no == body["guarantee_no"])).first():
        raise GuaranteeRefused("duplicate", f"保函 {body['guarantee_no']} 已提交过 (already submitted)")
    row = Guarantee(project_id=project_id, bidder_id=actor.organisation_id, issuer_id=issuer.id,
                    issuer_name=issuer.name, guarantee_no=body["guarantee_no"], amount=parsed.amount,
                    valid_from=parsed.valid_from, valid_until=parsed.valid_until,
                    document=document.decode("utf-8"), document_sha256=hashlib.sha256(document).hexdigest(),
                    certificate_fingerprint=verified.fingerprint, submitted_by=actor.username, submitted_at=now)
    session.add(row)
    session.flush()
    audit.append(session, actor=actor.username, action="guarantee.accept", project_id=project_id,
                 payload={"guarantee_no": row.guarantee_no, "issuer": issuer.uscc, "amount": row.amount,
                          "valid_from": row.valid_from, "valid_until": row.valid_until,
                          "document_sha256": row.document_sha256, "certificate": row.certificate_fingerprint})
    return row


def _check_content(session: Session, terms: bonds.Terms, parsed: _Parsed, actor: Actor) -> None:
    body, project = parsed.guarantee, terms.project
    if body["project_code"] != project.code:
        raise GuaranteeRefused("project", f"保函项目编号 {body['project_code']} 不是本项目 {project.code}")
    tenderer = session.get(Organisation, project.tenderer_id)
    if body["beneficiary"]["uscc"].upper() != (tenderer.uscc or "") or body["beneficiary"]["name"] != tenderer.name:
        raise GuaranteeRefused("beneficiary", f"受益人须为招标人 {tenderer.name}（{tenderer.uscc}），"
                                              f"保函为 {body['beneficiary']['name']}（{body['beneficiary']['uscc']}）")
    bidder = session.get(Organisation, actor.organisation_id)
    if body["applicant"]["uscc"].upper() != (bidder.uscc or ""):
        raise GuaranteeRefused("applicant", f"申请人须为投标人 {bidder.name}（{bidder.uscc}），"
                                            f"保函为 {body['applicant']['name']}（{body['applicant']['uscc']}）")
    if parsed.amount < terms.bid_bond:
        raise GuaranteeRefused("amount", f"保函金额 {parsed.amount} 元低于投标保证金 {terms.bid_bond} 元")
    until = terms.bid_deadline + timedelta(days=terms.bid_validity_days)
    if parsed.valid_from > terms.bid_deadline or parsed.valid_until < until:
        raise GuaranteeRefused("validity", "保函有效期须覆盖投标有效期：自投标截止时间 "
                                           f"{terms.bid_deadline.isoformat()} "
                                           f"起 {terms.bid_validity_days} 日至 {until.isoformat()}；保函为 "
                                           f"{body['valid_from']} 至 {body['valid_until']}")


def accepted_guarantee(session: Session, project_id: int, bidder_id: int, *, deadline: datetime) -> Guarantee | None:
    """Return the bidder's latest guarantee for the project submitted before ``deadline``, if any."""
    return session.execute(select(Guarantee).where(Guarantee.project_id == project_id, Guarantee.bidder_id == bidder_id,
                                                   Guarantee.submitted_at < deadline)
                           .order_by(Guarantee.submitted_at.desc(), Guarantee.id.desc()).limit(1)).scalar_one_or_none()


def guarantees_of(session: Session, project_id: int, bidder_id: int | None = None) -> list[Guarantee]:
    """Return the guarantees of a project (of one bidder), oldest first."""
    query = select(Guarantee).where(Guarantee.project_id == project_id)
    if bidder_id is not None:
        query = query.where(Guarantee.bidder_id == bidder_id)
    return list(session.execute(query.order_by(Guarantee.submitted_at, Guarantee.id)).scalars())
