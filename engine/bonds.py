"""Bid bonds (投标保证金, R9): virtual sub-accounts, signed bank notifications, and each bond's state.

Every bidder of a project gets a virtual sub-account (虚拟子账号) of the platform's
bond accounts: :func:`open_account` (idempotent) gives the number to pay into, a
digit string with a Luhn check digit, derived from the project and the bidder so
that it reveals nothing about other bidders (not even how many there are,
法 §22). Banks registered by an administrator (:class:`BankPartner`) report the
money arriving with signed notifications (:func:`receive_notification`, see
``engine.bank`` for the wire format): verified against the bank's key over the
exact body bytes, idempotent by ``notification_id``, replay-protected by
``nonce`` and a ±5 minute ``timestamp`` window. A refused message stores nothing
but an audited :class:`BankRefusal`. A bond paid from an account whose holder
is not the bidder is accepted (the money is there) and flagged: 条例 §26 wants it
from the bidder's own basic account.

:func:`bond_status` tells, for the opening, whether a bidder's bond is ``paid``
(in full, strictly before the deadline), ``guarantee`` (an accepted electronic
guarantee, ``engine.guarantees``), ``late``, ``short`` or ``missing``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine import audit, bank, clock, runtime
from engine.actors import SYSTEM, Actor
from engine.db import Base, Money, UTCDateTime
from engine.errors import EngineError, InvalidState, NotFound, PermissionDenied
from engine.models import Organisation, Project

STATES = ("paid", "guarantee", "late", "short", "missing", "not_required")
GOOD_STATES = ("paid", "guarantee", "not_required")
DEFAULT_BID_VALIDITY_DAYS = 90
ACCOUNT_PREFIX = "8"
FLAG_FOREIGN_PAYER = "foreign_payer"


class BankPartner(Base):
    """A bank registered by an administrator: its code, public key (P-256 PEM) and base URL for instructions."""

    __tablename__ = "bank_partners"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    public_key_pem: Mapped[str] = mapped_column(Text)
    base_url: Mapped[str] = mapped_column(String(500))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    registered_by: Mapped[str] = mapped_column(String(64))
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class BondAccount(Base):
    """A bidder's virtual sub-account for one project's bid bond."""

    __tablename__ = "bond_accounts"
    __table_args__ = (UniqueConstraint("project_id", "bidder_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    bidder_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    account_number: Mapped[str] = mapped_column(String(40), unique=True)
    required_amount: Mapped[Decimal] = mapped_column(Money)
    opened_by: Mapped[str] = mapped_column(String(64))
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class BondPayment(Base):
    """Money that arrived on a sub-account, as a bank's signed notification reported it."""

    __tablename__ = "bond_payments"
    __table_args__ = (UniqueConstraint("bank_id", "notification_id"), UniqueConstraint("bank_id", "nonce"))

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("bond_accounts.id"), index=True)
    bank_id: Mapped[int] = mapped_column(ForeignKey("bank_partners.id"))
    notification_id: Mapped[str] = mapped_column(String(64))
    nonce: Mapped[str] = mapped_column(String(64))
    body_sha256: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(Text)
    amount: Mapped[Decimal] = mapped_column(Money)
    payer_account: Mapped[str] = mapped_column(String(40), index=True)
    payer_name: Mapped[str] = mapped_column(String(200))
    paid_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    flags: Mapped[list] = mapped_column(JSON, default=list)
    answer: Mapped[dict] = mapped_column(JSON, default=dict)


class BankRefusal(Base):
    """A refused bank message: why, and enough to trace it (nothing else of it is stored)."""

    __tablename__ = "bank_refusals"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    bank_code: Mapped[str] = mapped_column(String(64), default="")
    code: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    notification_id: Mapped[str | None] = mapped_column(String(64))
    body_sha256: Mapped[str] = mapped_column(String(64))
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    size: Mapped[int] = mapped_column(Integer, default=0)


# ------------------------------------------------------------------------------------------------ bank partners

def register_bank(session: Session, actor: Actor, *, code: str, name: str, public_key_pem: str,
                  base_url: str) -> BankPartner:
    """Register a bank partner (admins), or replace its key and URL (audited: the old key stops working)."""
    if not actor.has_role("admin") and actor.username != SYSTEM.username:
        raise PermissionDenied(f"{actor.username} 不能登记合作银行 (only administrators register bank partners)")
    code, name, base_url = (code or "").strip(), (name or "").strip(), (base_url or "").strip().rstrip("/")
    errors = []
    if not code or len(code) > 32 or not all(c.isalnum() or c in "-_" for c in code):
        errors.append("银行代码须为 1-32 位字母、数字、'-' 或 '_' (code)")
    if not name:
        errors.append("请填写银行名称 (name)")
    if not base_url.startswith(("https://", "http://")) or len(base_url) > 500:
        errors.append("接口地址须以 https:// 或 http:// 开头 (base_url)")
    if errors:
        raise EngineError("；".join(errors))
    bank.load_public_key(public_key_pem)
    partner = session.execute(select(BankPartner).where(BankPartner.code == code)).scalar_one_or_none()
    if partner is None:
        partner = BankPartner(code=code, registered_by=actor.username, registered_at=clock.now())
        session.add(partner)
    partner.name, partner.public_key_pem, partner.base_url = name, public_key_pem.strip(), base_url
    partner.active = True
    session.flush()
    audit.append(session, actor=actor.username, action="bank.register",
                 payload={"code": code, "name": name, "base_url": base_url,
                          "key_sha256": hashlib.sha256(partner.public_key_pem.encode()).hexdigest()})
    return partner


def list_banks(session: Session) -> list[BankPartner]:
    """Return every bank partner, by code."""
    return list(session.execute(select(BankPartner).order_by(BankPartner.code)).scalars())


# -------------------------------------------------------------------------------------------- project terms

@dataclass(frozen=True)
class Terms:
    """What the project's tender says about bonds (from its instance data)."""

    project: Project
    bid_bond: Decimal | None
    bid_deadline: datetime | None
    bid_validity_days: int
    data: dict[str, Any]


def project_terms(session: Session, project_id: int) -> Terms:
    """Read the bid bond, bid deadline and bid validity the project's process holds (latest round)."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"没有交易项目 {project_id}", project=project_id)
    data: dict[str, Any] = {}
    if project.instance_id is not None:
        workflow = runtime.load(session, project.instance_id).workflow
        done = sorted((t for t in workflow.get_tasks()
                       if t.task_spec.bpmn_id is not None and t.has_state(TaskState.COMPLETED)),
                      key=lambda t: t.last_state_change)
        for task in done:
            data.update(task.data)
    bond = data.get("bid_bond")
    deadline = data.get("bid_deadline")
    return Terms(project, Decimal(str(bond)) if bond is not None else None,
                 datetime.fromisoformat(deadline) if isinstance(deadline, str) else None,
                 int(data.get("bid_validity_days") or DEFAULT_BID_VALIDITY_DAYS), data)


# ------------------------------------------------------------------------------------------------- accounts

def luhn_digit(digits: str) -> str:
    """Return the Luhn check digit of a digit string."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return str((10 - total % 10) % 10)


def account_number_for(project_id: int, bidder_id: int) -> str:
    """Return the sub-account number of a project and bidder: 8, project (7), bidder (7), Luhn digit."""
    if not (0 < project_id < 10**7 and 0 < bidder_id < 10**7):
        raise EngineError(f"project {project_id} / bidder {bidder_id} out of the account number range")
    body = f"{ACCOUNT_PREFIX}{project_id:07d}{bidder_id:07d}"
    return body + luhn_digit(body)


def valid_account_number(number: str) -> bool:
    """Tell whether a string is a well-formed sub-account number with the right check digit."""
    return (len(number) == 16 and number.isdigit() and number.startswith(ACCOUNT_PREFIX)
            and luhn_digit(number[:-1]) == number[-1])


def _check_for_bidder(actor: Actor, bidder_id: int) -> None:
    if actor.username == SYSTEM.username or actor.has_role("admin") or actor.has_role("staff"):
        return
    if actor.has_role("bidder") and actor.organisation_id == bidder_id:
        return
    raise PermissionDenied(f"{actor.username} 只能为本单位开立保证金子账号 (only for your own organisation)")


def check_manage(actor: Actor, project: Project) -> None:
    """Refuse unless the actor handles the project's bond refunds: its centre's staff, or an administrator."""
    if actor.username == SYSTEM.username or actor.has_role("admin"):
        return
    if actor.has_role("staff") and actor.organisation_id is not None and actor.organisation_id == project.centre_id:
        return
    raise PermissionDenied(f"{actor.username} 不能办理项目 {project.code} 的保证金退还 (staff of its centre only)",
                           project=project.id)


def open_account(session: Session, project_id: int, bidder_organisation_id: int, actor: Actor) -> BondAccount:
    """Return the bidder's sub-account for the project, opening it on first call (idempotent, audited)."""
    _check_for_bidder(actor, bidder_organisation_id)
    bidder = session.get(Organisation, bidder_organisation_id)
    if bidder is None or bidder.kind != "company":
        raise NotFound(f"没有投标单位 {bidder_organisation_id} (no bidder company with that id)")
    terms = project_terms(session, project_id)
    if terms.bid_bond is None:
        raise InvalidState(f"项目 {terms.project.code} 尚未发布招标文件，投标保证金金额未定 "
                           "(the tender documents, which set the bid bond, are not published yet)", project=project_id)
    account = session.execute(select(BondAccount).where(BondAccount.project_id == project_id,
                                                        BondAccount.bidder_id == bidder.id)).scalar_one_or_none()
    if account is not None:
        if account.required_amount != terms.bid_bond:
            audit.append(session, actor=actor.username, action="bond.account_amount", project_id=project_id,
                         payload={"account": account.account_number, "from": account.required_amount,
                                  "to": terms.bid_bond})
            account.required_amount = terms.bid_bond
        return account
    account = BondAccount(project_id=project_id, bidder_id=bidder.id,
                          account_number=account_number_for(project_id, bidder.id), required_amount=terms.bid_bond,
                          opened_by=actor.username, opened_at=clock.now())
    session.add(account)
    session.flush()
    audit.append(session, actor=actor.username, action="bond.account_open", project_id=project_id,
                 payload={"account": account.account_number, "bidder_id": bidder.id, "required": terms.bid_bond})
    return account


def accounts_of_bidder(session: Session, bidder_organisation_id: int) -> list[BondAccount]:
    """Return a bidder's sub-accounts, newest first."""
    return list(session.execute(select(BondAccount).where(BondAccount.bidder_id == bidder_organisation_id)
                                .order_by(BondAccount.opened_at.desc(), BondAccount.id.desc())).scalars())


def payments_of(session: Session, account_id: int) -> list[BondPayment]:
    """Return the payments into a sub-account, in the order they were paid."""
    return list(session.execute(select(BondPayment).where(BondPayment.account_id == account_id)
                                .order_by(BondPayment.paid_at, BondPayment.id)).scalars())


# --------------------------------------------------------------------------------------------- notifications

@dataclass(frozen=True)
class Receipt:
    """The platform's answer to an accepted notification; ``repeated`` when it was a retransmission."""

    answer: dict[str, Any]
    repeated: bool


def receive_notification(session: Session, *, bank_code: str | None, signature: str | None, body: bytes,
                         remote_addr: str = "") -> Receipt:
    """Verify and record a bank's payment notification; on refusal record only a BankRefusal and raise.

    Order: headers, bank, signature over the exact bytes, then idempotency by ``notification_id`` (the same
    bytes get the same answer; other bytes under that id are refused), then the time window, the nonce and the
    content. Nothing but the refusal is written when any check fails.
    """
    try:
        with session.begin_nested():
            return _receive(session, bank_code, signature, body)
    except bank.MessageRefused as err:
        _refuse(session, bank_code or "", err, body, remote_addr)
        raise
    except IntegrityError:
        # A concurrent delivery of the same notification won the insert: answer as for a repetition.
        with session.begin_nested():
            return _receive(session, bank_code, signature, body)


def _receive(session: Session, bank_code: str | None, signature: str | None, body: bytes) -> Receipt:
    if not bank_code or not signature:
        raise bank.MessageRefused("malformed", f"headers {bank.HEADER_BANK} and {bank.HEADER_SIGNATURE} are required")
    partner = session.execute(select(BankPartner).where(BankPartner.code == bank_code,
                                                        BankPartner.active.is_(True))).scalar_one_or_none()
    if partner is None:
        raise bank.MessageRefused("unknown_bank", f"{bank_code!r} is not a registered bank partner")
    if not bank.verify(partner.public_key_pem, body, signature):
        raise bank.MessageRefused("bad_signature", f"the signature does not verify with bank {bank_code}'s key")
    note = bank.parse_notification(bank.parse_json(body, "the notification"))
    digest = hashlib.sha256(body).hexdigest()
    earlier = session.execute(select(BondPayment).where(BondPayment.bank_id == partner.id,
                                                        BondPayment.notification_id == note.notification_id)
                              ).scalar_one_or_none()
    if earlier is not None:
        if earlier.body_sha256 != digest:
            raise bank.MessageRefused("conflict", f"notification {note.notification_id} was already received with "
                                                  "other content; refused")
        return Receipt(dict(earlier.answer), True)
    now = clock.now()
    if abs(now - note.timestamp) > bank.MAX_SKEW:
        raise bank.MessageRefused("stale", f"timestamp {note.timestamp.isoformat()} is more than 5 minutes from the "
                                           f"platform's time {now.astimezone(clock.SHANGHAI).isoformat()}")
    if note.paid_at > now + bank.MAX_SKEW:
        raise bank.MessageRefused("malformed", f"paid_at {note.paid_at.isoformat()} is in the future")
    if session.execute(select(BondPayment.id).where(BondPayment.bank_id == partner.id,
                                                    BondPayment.nonce == note.nonce)).first():
        raise bank.MessageRefused("replayed", f"nonce {note.nonce} was already used; replay refused")
    account = session.execute(select(BondAccount).where(BondAccount.account_number == note.account_number)
                              ).scalar_one_or_none()
    if account is None:
        raise bank.MessageRefused("unknown_account", f"{note.account_number} is not a bond sub-account of the platform")
    bidder = session.get(Organisation, account.bidder_id)
    flags = [FLAG_FOREIGN_PAYER] if note.payer_name != bidder.name else []
    payment = BondPayment(account_id=account.id, bank_id=partner.id, notification_id=note.notification_id,
                          nonce=note.nonce, body_sha256=digest, body=body.decode("utf-8"), signature=signature,
                          amount=note.amount, payer_account=note.payer_account, payer_name=note.payer_name,
                          paid_at=note.paid_at, received_at=now, flags=flags, answer={})
    session.add(payment)
    session.flush()
    payment.answer = {"status": "accepted", "notification_id": note.notification_id, "payment_id": payment.id,
                      "account_number": account.account_number, "amount": format(note.amount, "f"), "flags": flags,
                      "received_at": now.astimezone(clock.SHANGHAI).isoformat()}
    session.flush()
    audit.append(session, actor=f"bank:{partner.code}", action="bond.payment", project_id=account.project_id,
                 payload={"account": account.account_number, "amount": note.amount, "payer_account": note.payer_account,
                          "payer_name": note.payer_name, "paid_at": note.paid_at, "flags": flags,
                          "notification_id": note.notification_id, "body_sha256": digest})
    return Receipt(dict(payment.answer), False)


def _refuse(session: Session, bank_code: str, err: bank.MessageRefused, body: bytes, remote_addr: str) -> None:
    notification_id = None
    try:
        value = bank.parse_json(body, "body").get("notification_id")
        notification_id = value[:64] if isinstance(value, str) else None
    except bank.MessageRefused:
        pass
    digest = hashlib.sha256(body).hexdigest()
    session.add(BankRefusal(at=clock.now(), bank_code=bank_code[:64], code=err.code, message=err.message,
                            notification_id=notification_id, body_sha256=digest, remote_addr=remote_addr[:64],
                            size=len(body)))
    session.flush()
    audit.append(session, actor=f"bank:{bank_code[:50]}" if bank_code else "bank:?", action="bond.refused",
                 payload={"code": err.code, "message": err.message, "notification_id": notification_id,
                          "body_sha256": digest, "remote_addr": remote_addr})


def refusals(session: Session, *, limit: int = 50) -> list[BankRefusal]:
    """Return the latest refused bank messages."""
    return list(session.execute(select(BankRefusal).order_by(BankRefusal.id.desc()).limit(limit)).scalars())


# ---------------------------------------------------------------------------------------------------- status

# What a bond status says, by code: (the Chinese text with its %(name)s parameters, the English gloss).
# The Chinese text is also the message id the web pages translate (web/i18n/bonds).
NOTES: dict[str, tuple[str, str]] = {
    "guarantee": ("电子保函 %(guarantee_no)s（%(issuer)s）已核验", "electronic guarantee verified"),
    "not_required": ("招标文件未要求投标保证金", "no bid bond required"),
    "paid": ("截止时间前到账 %(on_time)s 元", "paid in full before the deadline"),
    "late": ("截止时间 %(deadline)s 前到账 %(on_time)s 元，截止后到账 %(late)s 元，应缴 %(required)s 元",
             "arrived after the deadline"),
    "short": ("到账 %(on_time)s 元，少于应缴 %(required)s 元", "less than required"),
    "missing": ("截止时间 %(deadline)s 前未到账", "no bond arrived before the deadline"),
    FLAG_FOREIGN_PAYER: ("付款人不是投标人本单位账户（条例第二十六条）", "paid from an account not the bidder's own"),
}


@dataclass(frozen=True)
class BondNote:
    """One note on a bond status: a code of ``NOTES`` and the values its text names."""

    code: str
    params: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def text(self) -> str:
        """The note in Chinese, its parameters filled in."""
        return NOTES[self.code][0] % self.params


@dataclass(frozen=True)
class BondStatus:
    """A bidder's bond as the opening sees it; ``notes`` say why, ``detail`` is them as one message."""

    state: str
    amount: Decimal
    required: Decimal
    payer_account: str | None
    notes: tuple[BondNote, ...]
    account_number: str | None = None
    flags: tuple[str, ...] = ()
    guarantee_no: str | None = None

    @property
    def ok(self) -> bool:
        """Tell whether the bond requirement is met (paid in time, guaranteed, or none required)."""
        return self.state in GOOD_STATES

    @property
    def detail(self) -> str:
        """The notes as engine messages read: the Chinese first, the English once in brackets."""
        return ("；".join(n.text for n in self.notes)
                + " (" + "; ".join(NOTES[n.code][1] for n in self.notes) + ")")


def bond_status(session: Session, project_id: int, bidder_organisation_id: int, *, deadline: datetime,
                required: Decimal | None = None) -> BondStatus:
    """Return a bidder's bond state at ``deadline``: paid, guarantee, late, short, missing (or not_required).

    ``required`` defaults to the amount recorded on the bidder's sub-account (else read from the project's data).
    """
    from engine.guarantees import accepted_guarantee

    account = session.execute(select(BondAccount).where(BondAccount.project_id == project_id,
                                                        BondAccount.bidder_id == bidder_organisation_id)
                              ).scalar_one_or_none()
    if required is None:
        required = account.required_amount if account is not None else project_terms(session, project_id).bid_bond
    required = required if required is not None else Decimal("0.00")
    guarantee = accepted_guarantee(session, project_id, bidder_organisation_id, deadline=deadline)
    if guarantee is not None:
        return BondStatus("guarantee", guarantee.amount, required, None,
                          (BondNote("guarantee", {"guarantee_no": guarantee.guarantee_no,
                                                  "issuer": guarantee.issuer_name}),),
                          account.account_number if account else None, guarantee_no=guarantee.guarantee_no)
    payments = payments_of(session, account.id) if account is not None else []
    return _status(payments, required, deadline, account.account_number if account else None)


def _status(payments: list[BondPayment], required: Decimal, deadline: datetime, number: str | None) -> BondStatus:
    on_time = sum((p.amount for p in payments if p.paid_at < deadline), Decimal("0.00"))
    late = sum((p.amount for p in payments if p.paid_at >= deadline), Decimal("0.00"))
    payers = ", ".join(sorted({p.payer_account for p in payments})) or None
    flags = tuple(sorted({f for p in payments for f in p.flags}))
    values = {"on_time": str(on_time), "late": str(late), "required": str(required),
              "deadline": deadline.astimezone(clock.SHANGHAI).isoformat(timespec="seconds")}
    if required <= 0:
        state, named = "not_required", ()
    elif on_time >= required:
        state, named = "paid", ("on_time",)
    elif late > 0:
        state, named = "late", ("deadline", "on_time", "late", "required")
    elif on_time > 0:
        state, named = "short", ("on_time", "required")
    else:
        state, named = "missing", ("deadline",)
    notes = [BondNote(state, {name: values[name] for name in named})]
    if FLAG_FOREIGN_PAYER in flags:
        notes.append(BondNote(FLAG_FOREIGN_PAYER))
    return BondStatus(state, on_time + late, required, payers, tuple(notes), number, flags)


def project_bonds(session: Session, project_id: int, *, deadline: datetime) -> list[tuple[BondAccount, BondStatus]]:
    """Return every sub-account of a project with its state at ``deadline``, in account order."""
    accounts = list(session.execute(select(BondAccount).where(BondAccount.project_id == project_id)
                                    .order_by(BondAccount.id)).scalars())
    return [(a, bond_status(session, project_id, a.bidder_id, deadline=deadline)) for a in accounts]
