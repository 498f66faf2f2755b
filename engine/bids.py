"""Sealed bids (投标文件加密递交, R7): registration, submission, receipts, withdrawal; the bidding tables.

A bidder registers for a project (the download of the tender documents is recorded and
its bond account opened), then submits a package sealed on its own side with its
certificate (``engine.seal``): the platform stores the package and metadata without the
price, verifies the signature, the deadline (server clock) and the credit record, and
returns a receipt signed with the platform key. Withdrawal and replacement are allowed
until the deadline (条例 §35; 电子招标投标办法 §27). The platform cannot open a bid before
the opening because it never holds a key; the opening is ``engine.opening``.

Before the opening nobody but the bidder itself sees its bids: the audit events of
bidding carry no project id (so the project's trail, shown to staff, does not list the
potential bidders, 法 §22); the auditors' full log has them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from SpiffWorkflow.util.task import TaskState
from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine import audit, bonds, clock, credit, files, immutable, pki, runtime, seal
from engine.actors import Actor
from engine.clock import now
from engine.config import Config
from engine.db import Base, Money, UTCDateTime
from engine.errors import EngineError, InvalidState, NotFound, PermissionDenied
from engine.models import Instance, Notice, Organisation, Project

BID_STATUSES = ("submitted", "withdrawn", "replaced", "rejected", "decrypted", "undecrypted")
MAX_PACKAGE_BYTES = 40 * 1024 * 1024


class BidRegistration(Base):
    """A bidder's registration for one round of a project: tender documents downloaded, certificate chosen."""

    __tablename__ = "bid_registrations"
    __table_args__ = (UniqueConstraint("project_id", "tender_round", "organisation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    tender_round: Mapped[int] = mapped_column(Integer)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"))
    documents: Mapped[list] = mapped_column(JSON, default=list)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class Bid(Base):
    """A sealed bid: the package lives in the file store by sha256; price and document only after the opening."""

    __tablename__ = "bids"
    __table_args__ = (Index("ix_bids_round_org", "project_id", "tender_round", "organisation_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    tender_round: Mapped[int] = mapped_column(Integer)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"), index=True)
    registration_id: Mapped[int] = mapped_column(ForeignKey("bid_registrations.id"))
    certificate_id: Mapped[int] = mapped_column(ForeignKey("certificates.id"))
    package_sha256: Mapped[str] = mapped_column(String(64))
    package_size: Mapped[int] = mapped_column(Integer)
    commitment: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text)
    status_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("bids.id"))
    submitted_by: Mapped[str] = mapped_column(String(64))
    submitted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    device_fingerprint: Mapped[str] = mapped_column(String(128), default="")
    receipt: Mapped[str] = mapped_column(Text)
    bond_state: Mapped[str | None] = mapped_column(String(16))
    price: Mapped[Decimal | None] = mapped_column(Money)
    document_sha256: Mapped[str | None] = mapped_column(String(64))
    document_name: Mapped[str | None] = mapped_column(String(300))
    document_author: Mapped[str | None] = mapped_column(String(200))
    decrypted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ReleasedKey(Base):
    """The content key a bidder handed over at the opening, kept with its opened bid.

    Only ever written after the deadline, when the bid is opened: with the sealed package (written
    durably at submission) it re-derives the opened document, which the opening therefore only
    registers; its first reader has it written (docs/sealed-bids.md).
    """

    __tablename__ = "bid_released_keys"

    bid_id: Mapped[int] = mapped_column(ForeignKey("bids.id"), primary_key=True)
    content_key: Mapped[bytes] = mapped_column(LargeBinary(32))
    released_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Opening(Base):
    """One round's opening: the deadline, the count of valid bids and the decryption window."""

    __tablename__ = "openings"
    __table_args__ = (UniqueConstraint("project_id", "tender_round"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    tender_round: Mapped[int] = mapped_column(Integer)
    bid_deadline: Mapped[datetime] = mapped_column(UTCDateTime)
    counted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_count: Mapped[int] = mapped_column(Integer)
    window_ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16))


class OpeningRecord(Base):
    """The opening record (开标记录): immutable once written, with a sha256 over its canonical content."""

    __tablename__ = "opening_records"
    immutable_label = "opening record"

    id: Mapped[int] = mapped_column(primary_key=True)
    opening_id: Mapped[int] = mapped_column(ForeignKey("openings.id"), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    content: Mapped[dict] = mapped_column(JSON)
    sha256: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OpeningObjection(Base):
    """An objection a bidder raised at the opening (条例 §44) and the staff answer."""

    __tablename__ = "opening_objections"

    id: Mapped[int] = mapped_column(primary_key=True)
    opening_id: Mapped[int] = mapped_column(ForeignKey("openings.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    raised_by: Mapped[str] = mapped_column(String(64))
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime)
    content: Mapped[str] = mapped_column(Text)
    answer: Mapped[str | None] = mapped_column(Text)
    answered_by: Mapped[str | None] = mapped_column(String(64))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class CollusionSignal(Base):
    """A circumstance 条例 §40 presumes collusive, recorded at the opening for regulators (not blocking)."""

    __tablename__ = "collusion_signals"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    tender_round: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    value: Mapped[str] = mapped_column(String(200))
    organisation_ids: Mapped[list] = mapped_column(JSON)
    bid_ids: Mapped[list] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)


class OpeningRecordImmutable(InvalidState):
    """A written opening record cannot be changed or removed."""


@dataclass(frozen=True)
class Window:
    """The round currently open for bids and its deadline."""

    project: Project
    tender_round: int
    bid_deadline: datetime


# -- bidding --------------------------------------------------------------------------------------------------


def parse_instant(value: Any) -> datetime:
    """Return an aware instant from workflow data (ISO-8601 text with its offset)."""
    instant = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if instant.tzinfo is None:
        raise EngineError(f"bid deadline {value!r} has no UTC offset")
    return instant


def bidding_window(session: Session, project_id: int) -> Window:
    """Return the round open for bids (the bid-deadline timer is waiting) or refuse."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"没有交易项目 {project_id}", project=project_id)
    instance_id = project.instance_id or session.execute(
        select(Instance.id).where(Instance.project_id == project.id).order_by(Instance.id.desc()).limit(1)).scalar()
    if instance_id is not None:
        workflow = runtime.load(session, instance_id).workflow
        for task in workflow.get_tasks(state=TaskState.WAITING):
            if task.task_spec.bpmn_id == "bid_deadline_reached":
                return Window(project, int(task.data["tender_round"]), parse_instant(task.data["bid_deadline"]))
    raise InvalidState(f"项目 {project.code} 当前不在投标期 (not open for bids)", project=project_id)


def bidder_of(session: Session, actor: Actor) -> Organisation:
    """Return the actor's bidder organisation (with its USCC), or refuse."""
    if not actor.has_role("bidder") or actor.organisation_id is None:
        raise PermissionDenied(f"{actor.username} is not a bidder of an organisation")
    organisation = session.get(Organisation, actor.organisation_id)
    if organisation is None or not organisation.uscc:
        raise PermissionDenied(f"{actor.username}'s organisation has no 统一社会信用代码")
    return organisation


def _before_deadline(window: Window, what: str) -> datetime:
    at = clock.now()
    if at >= window.bid_deadline:
        deadline = window.bid_deadline.astimezone(clock.SHANGHAI).isoformat(timespec="seconds")
        raise InvalidState(f"投标截止时间 {deadline} 已过，不得{what} (the bid deadline has passed; "
                           "条例 §36, 电子招标投标办法 §27)", project=window.project.id)
    return at


def register_for_project(session: Session, project_id: int, actor: Actor, *,
                         certificate_id: int | None = None) -> BidRegistration:
    """Register the actor's organisation for the open round: record the documents download, open the bond account."""
    organisation = bidder_of(session, actor)
    window = bidding_window(session, project_id)
    at = _before_deadline(window, "报名")
    credit.ensure_not_sanctioned(session, organisation.id, at=at, action="投标")
    existing = _registration(session, window, organisation.id)
    if existing is not None:
        raise InvalidState(f"{organisation.name} 已报名本项目第 {window.tender_round} 次招标", project=project_id)
    certificate = _certificate(session, actor, certificate_id, at)
    registration = BidRegistration(project_id=project_id, tender_round=window.tender_round,
                                   organisation_id=organisation.id, user_id=actor.user_id,
                                   certificate_id=certificate.id, documents=_tender_documents(session, window),
                                   registered_at=at)
    session.add(registration)
    session.flush()
    bonds.open_account(session, project_id, organisation.id, actor)
    audit.append(session, actor=actor.username, action="bid.register", payload={
        "registration_id": registration.id, "project_code": window.project.code, "tender_round": window.tender_round,
        "organisation_id": organisation.id, "certificate_id": certificate.id,
        "documents": [d.get("sha256") for d in registration.documents]})
    return registration


def _registration(session: Session, window: Window, organisation_id: int) -> BidRegistration | None:
    return session.execute(select(BidRegistration).where(
        BidRegistration.project_id == window.project.id, BidRegistration.tender_round == window.tender_round,
        BidRegistration.organisation_id == organisation_id)).scalar_one_or_none()


def _certificate(session: Session, actor: Actor, certificate_id: int | None, at: datetime) -> pki.Certificate:
    row = (session.get(pki.Certificate, certificate_id) if certificate_id is not None
           else pki.active_certificate(session, actor.user_id))
    if row is None or row.organisation_id != actor.organisation_id or row.status != "active":
        raise InvalidState(f"{actor.username} has no active registered certificate of its organisation; "
                           "register a CA certificate first (数字证书)")
    pki.verify_certificate(session, row.pem.encode(), at=at, usage="encryption")
    return row


def _tender_documents(session: Session, window: Window) -> list[dict[str, Any]]:
    notice = session.execute(select(Notice).where(Notice.project_id == window.project.id, Notice.kind == "tender")
                             .order_by(Notice.id.desc()).limit(1)).scalar_one_or_none()
    documents = (notice.data or {}).get("tender_documents") if notice is not None else None
    if isinstance(documents, dict):  # one file, as the tender form has it
        documents = [documents]
    return [dict(d) for d in documents or [] if isinstance(d, dict) and d.get("sha256")]


def submit_bid(session: Session, project_id: int, package: bytes, actor: Actor, *, config: Config,
               remote_addr: str = "", device_fingerprint: str = "") -> Bid:
    """Accept a sealed package before the deadline: check signature, certificate, credit; store; sign a receipt."""
    organisation = bidder_of(session, actor)
    window = bidding_window(session, project_id)
    at = _before_deadline(window, "递交投标文件")
    registration = _registration(session, window, organisation.id)
    if registration is None:
        raise InvalidState(f"{organisation.name} 未报名本项目，请先报名并下载招标文件 (register first)",
                           project=project_id)
    credit.ensure_not_sanctioned(session, organisation.id, at=at, action="投标")
    if len(package) > MAX_PACKAGE_BYTES:
        raise InvalidState(f"the sealed bid is larger than {MAX_PACKAGE_BYTES // (1024 * 1024)} MB")
    parsed = _check_package(session, package, window, organisation, registration.certificate_id, at)
    stored = files.store(session, package, f"{window.project.code}-{organisation.uscc}.sealed", "text/plain", actor,
                         config=config, max_bytes=MAX_PACKAGE_BYTES, allowed_types={"text/plain"})
    previous = _active_bid(session, window.project.id, window.tender_round, organisation.id)
    if previous is not None:
        set_status(previous, "replaced", "replaced by a later submission before the deadline", at)
    bid = Bid(project_id=project_id, tender_round=window.tender_round, organisation_id=organisation.id,
              registration_id=registration.id, certificate_id=registration.certificate_id,
              package_sha256=stored.sha256, package_size=len(package), commitment=parsed.header["commitment"],
              status="submitted", status_at=at, replaces_id=previous.id if previous else None,
              submitted_by=actor.username, submitted_at=at, remote_addr=remote_addr[:64],
              device_fingerprint=device_fingerprint[:128], receipt="")
    session.add(bid)
    session.flush()
    bid.receipt = _receipt(config, bid, window.project.code, organisation.uscc, at)
    audit.append(session, actor=actor.username, action="bid.replace" if previous else "bid.submit", payload={
        "bid_id": bid.id, "project_code": window.project.code, "tender_round": window.tender_round,
        "organisation_id": organisation.id, "package_sha256": bid.package_sha256,
        "replaces_id": bid.replaces_id, "remote_addr": bid.remote_addr})
    return bid


def _check_package(session: Session, package: bytes, window: Window, organisation: Organisation,
                   certificate_id: int, at: datetime) -> seal.Package:
    try:
        parsed = seal.parse(package)
    except seal.SealError as err:
        raise InvalidState(f"投标文件未按要求加密，拒收 (条例 §36): {err}") from None
    header = parsed.header
    if header["project_code"] != window.project.code or header["bidder_uscc"] != organisation.uscc:
        raise InvalidState(f"the sealed bid is for project {header['project_code']} and bidder "
                           f"{header['bidder_uscc']}, not {window.project.code} and {organisation.uscc}")
    certificate = session.get(pki.Certificate, certificate_id)
    public_key = seal.certificate_public_key(certificate.pem.encode())
    if (header["certificate_sha256"] != certificate.fingerprint
            or header["recipient_key_sha256"] != seal.public_key_sha256(public_key)):
        raise InvalidState(f"the bid was sealed for another certificate, not the registered certificate "
                           f"{certificate.serial} ({certificate.common_name})")
    pki.verify_signature(session, certificate_id, parsed.signed, parsed.signature, at=at)
    return parsed


def _receipt(config: Config, bid: Bid, project_code: str, uscc: str, at: datetime) -> str:
    content = {"format": seal.RECEIPT_FORMAT, "sealed_sha256": bid.package_sha256, "project_code": project_code,
               "bidder_uscc": uscc, "bid_id": bid.id,
               "server_time": at.astimezone(clock.SHANGHAI).isoformat(timespec="microseconds")}
    signature = pki.sign_platform(config, seal.canonical(content))
    return seal.canonical({"receipt": content, "signature": seal.b64(signature)}).decode("utf-8")


def _active_bid(session: Session, project_id: int, tender_round: int, organisation_id: int) -> Bid | None:
    return session.execute(select(Bid).where(
        Bid.project_id == project_id, Bid.tender_round == tender_round, Bid.organisation_id == organisation_id,
        Bid.status == "submitted")).scalar_one_or_none()


def set_status(bid: Bid, status: str, reason: str | None, at: datetime) -> None:
    """Move a bid to ``status`` with its reason and instant."""
    bid.status, bid.status_reason, bid.status_at = status, reason, at


def own_bid(session: Session, bid_id: int, actor: Actor) -> Bid:
    """Return one of the actor's organisation's bids; any other bid does not exist for the actor."""
    return check_own(session.get(Bid, bid_id), bid_id, actor)


def check_own(bid: Any, bid_id: int, actor: Actor) -> Any:
    """Return ``bid`` (a Bid or a row with its organisation_id) if it is one of the actor's organisation's bids.

    Any other bid is refused as if it did not exist.
    """
    if bid is None or actor.organisation_id is None or bid.organisation_id != actor.organisation_id \
            or not actor.has_role("bidder"):
        raise NotFound(f"no bid {bid_id} of yours", bid=bid_id)
    return bid


def withdraw_bid(session: Session, bid_id: int, actor: Actor) -> Bid:
    """Withdraw a submitted bid before the deadline (条例 §35); audited."""
    bid = own_bid(session, bid_id, actor)
    if bid.status != "submitted":
        raise InvalidState(f"bid {bid_id} is {bid.status}; only a submitted bid can be withdrawn", bid=bid_id)
    window = bidding_window(session, bid.project_id)
    if window.tender_round != bid.tender_round:
        raise InvalidState(f"bid {bid_id} belongs to an earlier round", bid=bid_id)
    at = _before_deadline(window, "撤回投标文件")
    set_status(bid, "withdrawn", "withdrawn by the bidder before the deadline", at)
    audit.append(session, actor=actor.username, action="bid.withdraw", payload={
        "bid_id": bid.id, "project_code": window.project.code, "tender_round": bid.tender_round,
        "organisation_id": bid.organisation_id, "package_sha256": bid.package_sha256})
    return bid


def my_bids(session: Session, actor: Actor, project_id: int | None = None) -> list[Bid]:
    """Return the actor's organisation's bids (newest first); a bidder sees nobody else's."""
    if actor.organisation_id is None or not actor.has_role("bidder"):
        return []
    query = select(Bid).where(Bid.organisation_id == actor.organisation_id)
    if project_id is not None:
        query = query.where(Bid.project_id == project_id)
    return list(session.execute(query.order_by(Bid.id.desc())).scalars())


def my_registration(session: Session, actor: Actor, project_id: int) -> BidRegistration | None:
    """Return the actor's organisation's latest registration for a project."""
    if actor.organisation_id is None:
        return None
    return session.execute(select(BidRegistration).where(
        BidRegistration.project_id == project_id, BidRegistration.organisation_id == actor.organisation_id)
        .order_by(BidRegistration.tender_round.desc()).limit(1)).scalar_one_or_none()


def my_registrations(session: Session, actor: Actor) -> list[BidRegistration]:
    """Return the actor's organisation's registrations, newest first."""
    if actor.organisation_id is None or not actor.has_role("bidder"):
        return []
    return list(session.execute(select(BidRegistration).where(
        BidRegistration.organisation_id == actor.organisation_id).order_by(BidRegistration.id.desc())).scalars())


def tender_document(session: Session, actor: Actor, project_id: int, sha256: str) -> dict[str, Any]:
    """Return a tender document of a project the actor's organisation registered for (its form value)."""
    registration = my_registration(session, actor, project_id)
    for document in registration.documents if registration is not None else []:
        if document.get("sha256") == sha256:
            return document
    raise NotFound(f"no tender document {sha256[:12]}… of a project you registered for")


def package_bytes(config: Config, bid: Any) -> bytes:
    """Return the stored sealed package of a bid (a Bid or a row with its package_sha256)."""
    return files.read_bytes(config, bid.package_sha256)


def window_of(session: Session, project_id: int) -> Window | None:
    """Return the round open for bids, or None when the project is not in bidding."""
    try:
        return bidding_window(session, project_id)
    except InvalidState:
        return None


immutable.write_once(OpeningRecord, error=OpeningRecordImmutable, bulk="opening records cannot be changed or deleted")
