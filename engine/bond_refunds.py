"""Bond refunds (退还投标保证金): computed by 住建's rule, sent to the banks as signed instructions.

:func:`compute_refunds` turns every bond payment of a project into one refund
instruction back to the account it came from (原路退回): after the written
contract (条例 §57: bond and the bank's same-period deposit interest, within 5
days) or after a withdrawal before the deadline (条例 §35: within 5 days of the
written notice). Whether interest is due, the annual rate, the day basis and the
refund period come from the deployed decision ``ct_bond_refund`` owned by
``dept-zjj`` (``rules/ct_bond_refund.dmn``); interest = principal × rate × days /
day basis, days from the day paid to the day the instruction is made (Shanghai),
rounded half-up to the fen. Instructions are written first (an outbox), so the
BPMN step that computes them (``@service("refund_bonds")``) never waits on a bank.

:func:`send_refunds` posts each instruction not yet acknowledged to its bank
(``{base_url}/refunds``), signed with the platform key (``engine.pki``). The body
is fixed at the first attempt, so a retry sends identical bytes and the bank can
answer it idempotently by ``instruction_id``; the bank's answer must be signed with
its registered key and name the instruction, else the attempt is recorded as failed.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine import audit, bank, clock, decisions, periods, pki
from engine.actors import SYSTEM, Actor
from engine.bonds import BankPartner, BondAccount, BondPayment, check_manage, project_terms
from engine.config import Config
from engine.db import Base, Money, UTCDateTime
from engine.errors import EngineError, InvalidState, NotFound
from engine.services import ServiceCall, service

DECISION = "ct_bond_refund"
REASONS = ("contract", "withdrawal")
CENT = Decimal("0.01")


class RefundInstruction(Base):
    """One refund of one bond payment, and what its bank answered."""

    __tablename__ = "bond_refunds"

    id: Mapped[int] = mapped_column(primary_key=True)
    instruction_id: Mapped[str] = mapped_column(String(64), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("bond_accounts.id"), index=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("bond_payments.id"), unique=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("bank_partners.id"))
    reason: Mapped[str] = mapped_column(String(16))
    principal: Mapped[Decimal] = mapped_column(Money)
    interest: Mapped[Decimal] = mapped_column(Money)
    amount: Mapped[Decimal] = mapped_column(Money)
    rate: Mapped[str] = mapped_column(String(20))
    day_basis: Mapped[int] = mapped_column(Integer)
    days: Mapped[int] = mapped_column(Integer)
    rule_version: Mapped[int] = mapped_column(Integer)
    from_account: Mapped[str] = mapped_column(String(40))
    to_account: Mapped[str] = mapped_column(String(40))
    to_name: Mapped[str] = mapped_column(String(200))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text)
    signature: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ack_body: Mapped[str | None] = mapped_column(Text)
    ack_signature: Mapped[str | None] = mapped_column(Text)
    bank_reference: Mapped[str | None] = mapped_column(String(64))
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class RefundRule:
    """What ``ct_bond_refund`` says for one reason."""

    with_interest: bool
    annual_rate: Decimal
    day_basis: int
    refund_days: int
    article: str
    version: int


@dataclass(frozen=True)
class Withdrawal:
    """A bidder's written withdrawal notice (条例 §35)."""

    bidder_id: int
    notified_at: datetime


def refund_rule(session: Session, reason: str) -> RefundRule:
    """Evaluate the latest deployed ``ct_bond_refund`` for a reason (contract, withdrawal)."""
    if reason not in REASONS:
        raise EngineError(f"unknown refund reason {reason!r}; reasons are {', '.join(REASONS)}")
    version = decisions.latest(session, DECISION)
    if version is None:
        raise NotFound(f"住建部门的决策表 {DECISION} 尚未部署 (the refund rule {DECISION} is not deployed)")
    try:
        out = decisions.evaluate(version, reason=reason)
    except Exception as err:
        raise EngineError(f"{DECISION} v{version.version} failed for reason {reason!r}: {err}") from err
    if not isinstance(out, dict) or not {"with_interest", "annual_rate", "day_basis", "refund_days"} <= set(out):
        raise EngineError(f"{DECISION} v{version.version} has no rule for reason {reason!r} (got {out!r})")
    rate, basis, days = Decimal(str(out["annual_rate"])), int(out["day_basis"]), int(out["refund_days"])
    if not (Decimal(0) <= rate < 1 and basis in (360, 365) and 0 < days <= 30):
        raise EngineError(f"{DECISION} v{version.version} gave rate {rate}, day basis {basis}, refund days {days}")
    return RefundRule(bool(out["with_interest"]), rate, basis, days, str(out.get("article") or ""), version.version)



def interest_of(principal: Decimal, rule: RefundRule, days: int) -> Decimal:
    """Return the same-period deposit interest on a bond held ``days`` days, half-up to the fen."""
    if not rule.with_interest or days <= 0:
        return Decimal("0.00")
    return (principal * rule.annual_rate * days / rule.day_basis).quantize(CENT, ROUND_HALF_UP)


def compute_refunds(session: Session, project_id: int, *, contract_signed_at: datetime | None = None,
                    withdrawal: Withdrawal | None = None, actor: Actor = SYSTEM) -> list[RefundInstruction]:
    """Write a refund instruction for every bond payment not yet refunded (all, or the withdrawing bidder's).

    Give ``contract_signed_at`` (条例 §57) or ``withdrawal`` (条例 §35), not both. Idempotent: a payment that
    already has an instruction is skipped. Returns the new instructions.
    """
    if (contract_signed_at is None) == (withdrawal is None):
        raise EngineError("give either contract_signed_at or withdrawal")
    terms = project_terms(session, project_id)
    check_manage(actor, terms.project)
    reason, start = ("contract", contract_signed_at) if withdrawal is None else ("withdrawal", withdrawal.notified_at)
    if withdrawal is not None and (terms.bid_deadline is None or withdrawal.notified_at >= terms.bid_deadline):
        raise InvalidState("撤回通知须在投标截止时间前送达；截止后撤销投标文件的，投标保证金可以不予退还"
                           "（条例第三十五条）(withdrawal after the deadline)", project=project_id)
    rule = refund_rule(session, reason)
    due_at = periods.to_datetime(periods.add_days(start, rule.refund_days))
    query = (select(BondPayment, BondAccount).join(BondAccount, BondAccount.id == BondPayment.account_id)
             .where(BondAccount.project_id == project_id,
                    BondPayment.id.not_in(select(RefundInstruction.payment_id)))
             .order_by(BondPayment.id))
    if withdrawal is not None:
        query = query.where(BondAccount.bidder_id == withdrawal.bidder_id)
    today, now, made = clock.local_now().date(), clock.now(), []
    for payment, account in session.execute(query).all():
        days = max((today - payment.paid_at.astimezone(clock.SHANGHAI).date()).days, 0)
        interest = interest_of(payment.amount, rule, days)
        row = RefundInstruction(
            instruction_id=f"RF-{terms.project.code}-{payment.id}", project_id=project_id, account_id=account.id,
            payment_id=payment.id, bank_id=payment.bank_id, reason=reason, principal=payment.amount,
            interest=interest, amount=payment.amount + interest, rate=format(rule.annual_rate, "f"),
            day_basis=rule.day_basis, days=days, rule_version=rule.version, from_account=account.account_number,
            to_account=payment.payer_account, to_name=payment.payer_name, due_at=due_at, created_by=actor.username,
            created_at=now, status="pending", attempts=0)
        session.add(row)
        made.append(row)
    session.flush()
    for row in made:
        audit.append(session, actor=actor.username, action="bond.refund_compute", project_id=project_id,
                     payload={"instruction_id": row.instruction_id, "reason": reason, "principal": row.principal,
                              "interest": row.interest, "rate": row.rate, "days": row.days,
                              "day_basis": row.day_basis, "rule": f"{DECISION} v{rule.version}",
                              "article": rule.article, "to_account": row.to_account, "due_at": row.due_at})
    return made


def refunds_of(session: Session, project_id: int) -> list[RefundInstruction]:
    """Return a project's refund instructions, in order."""
    return list(session.execute(select(RefundInstruction).where(RefundInstruction.project_id == project_id)
                                .order_by(RefundInstruction.id)).scalars())


def _message(row: RefundInstruction, project_code: str) -> dict[str, Any]:
    return {"instruction_id": row.instruction_id, "nonce": secrets.token_hex(16),
            "timestamp": clock.now().astimezone(clock.SHANGHAI).isoformat(timespec="seconds"),
            "project_code": project_code, "from_account": row.from_account, "to_account": row.to_account,
            "to_name": row.to_name, "principal": format(row.principal, "f"), "interest": format(row.interest, "f"),
            "amount": format(row.amount, "f"), "currency": bank.CURRENCY, "reason": row.reason}


def send_refunds(session: Session, project_id: int, *, config: Config, actor: Actor = SYSTEM,
                 timeout: float = 10.0) -> list[RefundInstruction]:
    """Send every instruction of the project not yet acknowledged; record each bank's signed answer.

    Safe to repeat: acknowledged instructions are skipped, others are resent with the same bytes.
    """
    terms = project_terms(session, project_id)
    check_manage(actor, terms.project)
    rows = session.execute(select(RefundInstruction).where(RefundInstruction.project_id == project_id,
                                                           RefundInstruction.status != "acknowledged")
                           .order_by(RefundInstruction.id)).scalars().all()
    for row in rows:
        partner = session.get(BankPartner, row.bank_id)
        if row.body is None:
            body = bank.canonical(_message(row, terms.project.code))
            row.body, row.signature = body.decode("utf-8"), base64.b64encode(pki.sign_platform(config, body)).decode()
        row.attempts += 1
        row.sent_at = clock.now()
        try:
            answer = bank.post(f"{partner.base_url}/refunds", row.body.encode("utf-8"),
                               {bank.HEADER_SIGNATURE: row.signature}, timeout=timeout)
            _acknowledge(row, partner, answer)
        except bank.MessageRefused as err:
            row.status, row.last_error = "failed", err.message
            audit.append(session, actor=actor.username, action="bond.refund_failed", project_id=project_id,
                         payload={"instruction_id": row.instruction_id, "error": err.message,
                                  "attempt": row.attempts})
            continue
        audit.append(session, actor=actor.username, action="bond.refund_ack", project_id=project_id,
                     payload={"instruction_id": row.instruction_id, "bank": partner.code,
                              "bank_reference": row.bank_reference, "amount": row.amount,
                              "ack_sha256": hashlib.sha256(row.ack_body.encode()).hexdigest()})
    session.flush()
    return list(rows)


def _acknowledge(row: RefundInstruction, partner: BankPartner, answer: bank.Response) -> None:
    """Check the bank's answer (signed by it, naming this instruction, accepted) and record it."""
    if answer.status != 200:
        raise bank.MessageRefused("bank_error", f"bank {partner.code} answered {answer.status}: "
                                                f"{answer.body[:300].decode('utf-8', 'replace')}")
    if bank.header(answer.headers, bank.HEADER_BANK) != partner.code:
        raise bank.MessageRefused("unknown_bank", f"the answer does not come from bank {partner.code}")
    signature = bank.header(answer.headers, bank.HEADER_SIGNATURE) or ""
    if not bank.verify(partner.public_key_pem, answer.body, signature):
        raise bank.MessageRefused("bad_signature", f"the answer is not signed with bank {partner.code}'s key")
    ack = bank.parse_json(answer.body, "the bank's answer")
    if set(ack) != set(bank.ACK_FIELDS) or ack["instruction_id"] != row.instruction_id or ack["status"] != "accepted":
        raise bank.MessageRefused("malformed", f"the answer does not accept instruction {row.instruction_id}: {ack}")
    row.status, row.last_error = "acknowledged", None
    row.ack_body, row.ack_signature = answer.body.decode("utf-8"), signature
    row.bank_reference = str(ack["bank_reference"])[:64]
    row.acknowledged_at = bank.instant_of(ack["accepted_at"], "accepted_at")


def refund_totals(session: Session, project_id: int) -> tuple[int, Decimal, Decimal]:
    """Return a project's number of refund instructions, their principal and interest (exact sums)."""
    rows = refunds_of(session, project_id)
    return (len(rows), sum((r.principal for r in rows), Decimal("0.00")),
            sum((r.interest for r in rows), Decimal("0.00")))


@service("refund_bonds")
def refund_bonds(call: ServiceCall, contract_signed_at: str | None = None) -> dict[str, Any]:
    """Service task: write the §57 refund instructions of the project (sent afterwards by ``send_refunds``)."""
    signed = contract_signed_at or call.data.get("contract_signed_at")
    if call.project_id is None or not signed:
        raise InvalidState("refund_bonds needs a project and contract_signed_at", instance=call.instance_id)
    made = compute_refunds(call.session, call.project_id, contract_signed_at=periods.to_datetime(signed),
                           actor=SYSTEM)
    return {"instructions": [r.instruction_id for r in made],
            "principal": format(sum((r.principal for r in made), Decimal("0.00")), "f"),
            "interest": format(sum((r.interest for r in made), Decimal("0.00")), "f"),
            "due_at": made[0].due_at.astimezone(clock.SHANGHAI).isoformat() if made else None}
