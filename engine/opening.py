"""The no-meeting opening (不见面开标): the count at the deadline, decryption by the bidders, the record.

At the deadline the diagram counts the valid bids (``count_valid_bids``: submitted, signed,
not withdrawn, bond paid or guaranteed by the deadline); with 3 or more (条例 §44) a
decryption window opens in which each bidder hands over its content key (``open_bid``; the
platform never held it, and before the deadline the call refuses and is audited, 电子招标投标办法
§26); at the end of the window ``record_opening`` marks the bids not decrypted (办法 §31),
writes the immutable opening record and the collusion signals of 条例 §40, and staff answer
the objections raised at the opening (``answer_opening_objections``, 条例 §44).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, and_, bindparam, create_engine, insert, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlalchemy.pool import NullPool

from engine import audit, bonds, clock, files, pki, scope, seal
from engine.actors import Actor
from engine.authorship import author_of
from engine.bids import (
    MAX_PACKAGE_BYTES,
    Bid,
    CollusionSignal,
    Opening,
    OpeningObjection,
    OpeningRecord,
    ReleasedKey,
    bidder_of,
    check_own,
    my_bids,
    package_bytes,
    parse_instant,
    set_status,
)
from engine.config import Config
from engine.errors import Conflict, InvalidState, NotFound, PermissionDenied
from engine.guarantees import Guarantee
from engine.models import Instance, Organisation, Project
from engine.prepared import Prepared
from engine.services import ServiceCall, service

DEFAULT_WINDOW_MINUTES = 30
UNDECRYPTED_REASON = "因投标人原因未在解密时限内解密，视为撤销投标文件（电子招标投标办法第三十一条）"
DOCUMENT_TYPES = frozenset({"application/*", "text/*", "image/*"})

SIGNAL_KINDS = {"same_document": "投标文件哈希相同（条例第四十条第一、五项）",
                "same_author": "投标文件作者信息相同（条例第四十条第一项）",
                "same_ip": "递交投标文件的IP地址相同", "same_device": "递交投标文件的设备指纹相同",
                "same_payer_account": "投标保证金从同一账户转出（条例第四十条第六项）"}


class BidSealed(InvalidState):
    """A bid cannot be opened before the deadline (电子招标投标办法 §26); the attempt is audited."""


def _opening(session: Session, project_id: int, tender_round: int) -> Opening | None:
    return session.execute(select(Opening).where(Opening.project_id == project_id,
                                                 Opening.tender_round == tender_round)).scalar_one_or_none()


@service("count_valid_bids")
def count_valid_bids(call: ServiceCall, window_minutes: int = DEFAULT_WINDOW_MINUTES) -> dict[str, Any]:
    """Service task at the deadline: count valid bids (bond paid or guaranteed by the deadline), open the window."""
    session, project_id = call.session, _project_id(call)
    tender_round, deadline = int(call.data["tender_round"]), parse_instant(call.data["bid_deadline"])
    at = clock.now()
    bids = session.execute(select(Bid).where(Bid.project_id == project_id, Bid.tender_round == tender_round,
                                             Bid.status == "submitted").order_by(Bid.id)).scalars().all()
    valid = 0
    for bid in bids:
        status = bonds.bond_status(session, project_id, bid.organisation_id, deadline=deadline)
        bid.bond_state = status.state
        if status.ok:
            valid += 1
        else:
            set_status(bid, "rejected", f"投标保证金未在投标截止前到账（{status.state}）：{status.detail}", at)
    window_ends = max(at, deadline) + timedelta(minutes=max(1, int(window_minutes)))
    opening = Opening(project_id=project_id, tender_round=tender_round, bid_deadline=deadline, counted_at=at,
                      valid_count=valid, window_ends_at=window_ends, status="decrypting" if valid >= 3 else "failed")
    session.add(opening)
    session.flush()
    audit.append(session, actor=call.actor, action="opening.count", instance_id=call.instance_id,
                 project_id=project_id, payload={"tender_round": tender_round, "submitted": len(bids),
                                                 "valid": valid, "window_ends_at": window_ends})
    return {"bid_count": valid, "submitted": len(bids),
            "decryption_ends_at": window_ends.astimezone(clock.SHANGHAI).isoformat()}


def _project_id(call: ServiceCall) -> int:
    if call.project_id is None:
        raise InvalidState(f"instance {call.instance_id} has no project; bids belong to projects")
    return call.project_id


_BIDS = Bid.__table__
# The statements of an opening are prepared (engine/prepared.py): the request is the hot path of the opening.
# The bid, its certificate and its opening's terms in one round trip (the certificate row always exists).
_BID_AND_TERMS = Prepared(
    select(_BIDS.c.id, _BIDS.c.organisation_id, _BIDS.c.project_id, _BIDS.c.status, _BIDS.c.package_sha256,
           _BIDS.c.commitment, pki.Certificate.pem, Opening.bid_deadline, Opening.window_ends_at,
           Opening.status.label("opening_status"))
    .join(pki.Certificate, pki.Certificate.id == _BIDS.c.certificate_id)
    .outerjoin(Opening, and_(Opening.project_id == _BIDS.c.project_id, Opening.tender_round == _BIDS.c.tender_round))
    .where(_BIDS.c.id == bindparam("bid_id")), "bid_and_terms")
# Only a bid still submitted is opened: a concurrent opening of the same bid finds 0 rows and is refused.
_OPENED = Prepared(_BIDS.update().where(_BIDS.c.id == bindparam("opened_bid"), _BIDS.c.status == "submitted"),
                   "bid_opened")
_KEY = Prepared(insert(ReleasedKey.__table__), "released_key")


@dataclass(frozen=True)
class Opened:
    """What opening a bid recorded."""

    bid_id: int
    project_id: int
    price: Decimal
    document: dict[str, Any]
    author: str | None
    status: str = "decrypted"


def open_bid(session: Session, bid_id: int, content_key: bytes, actor: Actor, *, config: Config) -> Opened:
    """Decrypt a bid with the content key its bidder hands over in the window; check commitment and signature.

    Before the deadline this refuses with BidSealed after auditing the attempt; the caller commits
    the audit event before reporting the refusal. Once open, the document is registered in the file
    store but not written: its first reader's ``files.open_file`` has it re-derived from the durable
    package and the released key kept here (``opened_document``) and written durably. The bid row
    gets price, document and author; one audit event ``bid.decrypt`` names the bid, its price,
    commitment and document. A ``Bid`` the session already holds is told the new values.
    """
    connection = session.connection()
    bid = check_own(_BID_AND_TERMS.first(connection, {"bid_id": bid_id}), bid_id, actor)
    at = clock.now()
    if bid.bid_deadline is None or at < bid.bid_deadline:
        audit.append(session, actor=actor.username, action="bid.open_refused",
                     payload={"bid_id": bid.id, "reason": "before the opening"})
        raise BidSealed(f"投标文件在开标前不得解密 (bid {bid_id} cannot be opened before the opening; "
                        "电子招标投标办法 §26)", bid=bid_id)
    if bid.opening_status != "decrypting" or at >= bid.window_ends_at:
        raise InvalidState(f"the decryption window of this opening is closed (bid {bid_id})", bid=bid_id)
    if bid.status != "submitted":
        raise InvalidState(f"bid {bid_id} is {bid.status} and is not opened", bid=bid_id)
    opened = _decrypt(bid, package_bytes(config, bid), content_key, bid.pem)
    document = _register_document(session, opened, actor.username)
    author = (author_of(opened.document) or str((opened.metadata or {}).get("author") or ""))[:200] or None
    values = {"price": opened.price, "document_sha256": document["sha256"], "document_name": opened.filename[:300],
              "document_author": author, "decrypted_at": at, "status": "decrypted", "status_reason": None,
              "status_at": at}
    if _OPENED.execute(connection, {"opened_bid": bid_id, **values}) != 1:
        raise Conflict(f"bid {bid_id} was opened by another request at the same time", bid=bid_id)
    held = session.identity_map.get(identity_key(Bid, bid_id))
    if held is not None:  # e.g. the web view's own_bid: the row holds these now, and so does the object
        for name, value in values.items():
            set_committed_value(held, name, value)
    _KEY.execute(connection, {"bid_id": bid_id, "content_key": content_key, "released_at": at})
    audit.append(session, actor=actor.username, action="bid.decrypt", project_id=bid.project_id, payload={
        "bid_id": bid_id, "price": opened.price, "document_sha256": document["sha256"], "document": document,
        "commitment": bid.commitment})
    return Opened(bid_id, bid.project_id, opened.price, document, author)


def _decrypt(bid: Any, package: bytes, content_key: bytes, certificate_pem: str) -> seal.Bid:
    """Parse, check against the submitted commitment, verify the signature, decrypt (``bid``: id, commitment)."""
    try:
        parsed = seal.parse(package)
        if parsed.header["commitment"] != bid.commitment:
            raise seal.SealError("the stored package is not the one submitted")
        seal.verify_signature(parsed, seal.certificate_public_key(certificate_pem.encode()))
        return seal.open_package(parsed, content_key)
    except seal.SealError as err:
        raise InvalidState(f"解密失败 (decryption failed): {err}", bid=bid.id) from None


def _document_name_and_type(opened: seal.Bid) -> tuple[str, str]:
    name = files.clean_name(opened.filename)
    try:
        return name, files.check(opened.document, name, None, max_bytes=MAX_PACKAGE_BYTES,
                                 allowed_types=DOCUMENT_TYPES)
    except files.FileRefused as err:
        if err.reason in ("empty", "too_large"):
            raise
        # The name's extension disagrees with the content; keep the bytes under a neutral name.
        name = files.clean_name(opened.filename + ".bin")
        return name, files.check(opened.document, name, None, max_bytes=MAX_PACKAGE_BYTES,
                                 allowed_types=DOCUMENT_TYPES | {files.OCTET_STREAM})


def _register_document(session: Session, opened: seal.Bid, owner: str) -> dict[str, Any]:
    name, media_type = _document_name_and_type(opened)
    return files.register_derived(session, opened.document, name, media_type, owner)


def opened_document(session: Session, config: Config, bid: Bid) -> bytes:
    """Re-derive an opened bid's document from its sealed package and the key its bidder released."""
    key = session.get(ReleasedKey, bid.id)
    if bid.status != "decrypted" or key is None:
        raise InvalidState(f"bid {bid.id} was not opened with a released key (it is {bid.status})", bid=bid.id)
    pem = session.get(pki.Certificate, bid.certificate_id).pem
    document = _decrypt(bid, package_bytes(config, bid), key.content_key, pem).document
    if hashlib.sha256(document).hexdigest() != bid.document_sha256:
        raise InvalidState(f"bid {bid.id}: the re-derived document does not match the recorded sha256", bid=bid.id)
    return document


def _restore_opened_document(config: Config, sha256: str) -> bytes | None:
    """The file store's restorer for opened documents: not written at the opening, or lost from the store.

    It reads through a plain engine of its own: on SQLite without ``make_engine``'s BEGIN IMMEDIATE,
    so that it reads (WAL) while the caller's own transaction holds the write lock.
    """
    with Session(_reader(config.db_url)) as session:
        bid = session.execute(select(Bid).join(ReleasedKey, ReleasedKey.bid_id == Bid.id).where(
            Bid.document_sha256 == sha256, Bid.status == "decrypted").order_by(Bid.id).limit(1)).scalar()
        return opened_document(session, config, bid) if bid is not None else None


@lru_cache(maxsize=4)
def _reader(db_url: str) -> Engine:
    """The restorer's engine for a database (no pool: it holds no connection between restores)."""
    return create_engine(db_url, poolclass=NullPool)


files.RESTORERS.append(_restore_opened_document)


def raise_objection(session: Session, project_id: int, content: str, actor: Actor) -> OpeningObjection:
    """Record a bidder's objection at the opening, during the decryption window (条例 §44)."""
    organisation = bidder_of(session, actor)
    content = str(content).strip()
    if not content or len(content) > 4000:
        raise InvalidState("an objection needs 1 to 4000 characters of text")
    opening = session.execute(select(Opening).where(Opening.project_id == project_id)
                              .order_by(Opening.tender_round.desc()).limit(1)).scalar_one_or_none()
    if opening is None or opening.status != "decrypting" or clock.now() >= opening.window_ends_at:
        raise InvalidState("objections to the opening are raised during the opening (开标现场提出，条例 §44)")
    if not _participated(session, opening, organisation.id):
        raise PermissionDenied(f"{organisation.name} did not bid in this opening")
    objection = OpeningObjection(opening_id=opening.id, organisation_id=organisation.id, raised_by=actor.username,
                                 raised_at=clock.now(), content=content)
    session.add(objection)
    session.flush()
    audit.append(session, actor=actor.username, action="opening.objection", project_id=project_id,
                 payload={"objection_id": objection.id, "content": content})
    return objection


def _participated(session: Session, opening: Opening, organisation_id: int) -> bool:
    return session.execute(select(Bid.id).where(
        Bid.project_id == opening.project_id, Bid.tender_round == opening.tender_round,
        Bid.organisation_id == organisation_id, Bid.status.in_(("submitted", "rejected", "decrypted",
                                                                 "undecrypted"))).limit(1)).first() is not None


@service("record_opening")
def record_opening(call: ServiceCall, tender_round: int) -> dict[str, Any]:
    """Service task at the end of the window: bids not decrypted (办法 §31), the opening record, collusion signals."""
    session, project_id = call.session, _project_id(call)
    opening = _opening(session, project_id, int(tender_round))
    if opening is None:
        raise InvalidState(f"project {project_id} has no opening for round {tender_round}")
    at = clock.now()
    bids = _round_bids(session, opening)
    for bid in bids:
        if bid.status == "submitted":
            set_status(bid, "undecrypted", UNDECRYPTED_REASON, at)
    project = session.get(Project, project_id)
    content = _record_content(session, project, opening, bids, at)
    record = OpeningRecord(opening_id=opening.id, project_id=project_id, content=content,
                           sha256=hashlib.sha256(audit.canonical_json(content).encode()).hexdigest(), recorded_at=at)
    session.add(record)
    opening.status = "recorded"
    signals = record_collusion_signals(session, opening, bids)
    session.flush()
    audit.append(session, actor=call.actor, action="opening.record", instance_id=call.instance_id,
                 project_id=project_id, payload={"opening_record_id": record.id, "sha256": record.sha256,
                                                 "signals": len(signals)})
    opened = [row for row in content["bids"] if row["decryption"] == "decrypted"]
    return {"opening_record_id": record.id, "sha256": record.sha256, "opened_count": len(opened),
            "bids": [{"bidder_name": r["bidder_name"], "bidder_uscc": r["bidder_uscc"], "price": r["price"],
                      "bond_state": r["bond_state"]} for r in opened]}


def _round_bids(session: Session, opening: Opening) -> list[Bid]:
    return list(session.execute(select(Bid).where(
        Bid.project_id == opening.project_id, Bid.tender_round == opening.tender_round,
        Bid.status.in_(("submitted", "rejected", "decrypted", "undecrypted"))).order_by(Bid.submitted_at, Bid.id)
    ).scalars())


def _record_content(session: Session, project: Project, opening: Opening, bids: list[Bid],
                    at: datetime) -> dict[str, Any]:
    names = {row.id: row for row in session.execute(select(Organisation.id, Organisation.name, Organisation.uscc)
                                                    .where(Organisation.id.in_({b.organisation_id for b in bids})))}
    rows = []
    for bid in bids:
        organisation = names[bid.organisation_id]
        rows.append({"bid_id": bid.id, "bidder_name": organisation.name, "bidder_uscc": organisation.uscc,
                     "submitted_at": bid.submitted_at.astimezone(clock.SHANGHAI).isoformat(timespec="seconds"),
                     "package_sha256": bid.package_sha256, "bond_state": bid.bond_state,
                     "decryption": bid.status if bid.status != "submitted" else "undecrypted",
                     "price": str(bid.price) if bid.price is not None else None,
                     "document_sha256": bid.document_sha256, "remark": bid.status_reason or ""})
    return {"project_code": project.code, "project_name": project.name, "tender_round": opening.tender_round,
            "bid_deadline": opening.bid_deadline.astimezone(clock.SHANGHAI).isoformat(timespec="seconds"),
            "decryption_ended_at": opening.window_ends_at.astimezone(clock.SHANGHAI).isoformat(timespec="seconds"),
            "recorded_at": at.astimezone(clock.SHANGHAI).isoformat(timespec="seconds"), "bids": rows}


@service("answer_opening_objections")
def answer_opening_objections(call: ServiceCall, answers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Service task after staff confirm the record: store the answer to every objection raised at the opening."""
    session, project_id = call.session, _project_id(call)
    opening = _opening(session, project_id, int(call.data["tender_round"]))
    objections = session.execute(select(OpeningObjection).where(OpeningObjection.opening_id == opening.id)
                                 .order_by(OpeningObjection.id)).scalars().all() if opening else []
    given = {int(a["objection_id"]): str(a["answer"]).strip() for a in answers or []
             if str(a.get("answer", "")).strip()}
    missing = [o.id for o in objections if o.answer is None and o.id not in given]
    if missing:
        raise InvalidState(f"开标异议 {', '.join(map(str, missing))} 尚未答复 (every objection at the opening needs "
                           "an answer, 条例 §44)")
    at = clock.now()
    for objection in objections:
        if objection.id in given and objection.answer is None:
            objection.answer, objection.answered_by, objection.answered_at = given[objection.id], call.actor, at
            audit.append(session, actor=call.actor, action="opening.answer", instance_id=call.instance_id,
                         project_id=project_id, payload={"objection_id": objection.id, "answer": objection.answer})
    return {"answered": len(objections)}


def record_collusion_signals(session: Session, opening: Opening, bids: list[Bid]) -> list[CollusionSignal]:
    """Record the 条例 §40 signals among the bids of an opening: same file, author, IP, device, payer account."""
    valid = [b for b in bids if b.status in ("decrypted", "undecrypted", "rejected")]
    keys: dict[str, dict[str, list[Bid]]] = {kind: {} for kind in SIGNAL_KINDS}
    payers = _payer_accounts(session, opening) if valid else {}
    for bid in valid:
        payer = payers.get(bid.organisation_id)
        for kind, value in (("same_document", bid.document_sha256), ("same_author", bid.document_author),
                            ("same_ip", bid.remote_addr), ("same_device", bid.device_fingerprint),
                            ("same_payer_account", payer)):
            if value:
                keys[kind].setdefault(str(value), []).append(bid)
    at, signals = clock.now(), []
    for kind, groups in keys.items():
        for value, group in groups.items():
            organisations = sorted({b.organisation_id for b in group})
            if len(organisations) > 1:
                signals.append(CollusionSignal(project_id=opening.project_id, tender_round=opening.tender_round,
                                               kind=kind, value=value[:200], organisation_ids=organisations,
                                               bid_ids=sorted(b.id for b in group), recorded_at=at))
    session.add_all(signals)
    return signals


def _payer_accounts(session: Session, opening: Opening) -> dict[int, str]:
    """Return each bidder's bond payer accounts at the deadline, as ``bonds.bond_status`` states them, in 2 queries.

    Like ``bond_status``: a bidder with an electronic guarantee submitted before the deadline has
    no payer account; otherwise the sorted payer accounts of the payments into its sub-account.
    """
    guaranteed = set(session.execute(select(Guarantee.bidder_id).where(
        Guarantee.project_id == opening.project_id, Guarantee.submitted_at < opening.bid_deadline)).scalars())
    accounts: dict[int, set[str]] = {}
    for bidder_id, payer in session.execute(select(bonds.BondAccount.bidder_id, bonds.BondPayment.payer_account)
                                            .join(bonds.BondPayment,
                                                  bonds.BondPayment.account_id == bonds.BondAccount.id)
                                            .where(bonds.BondAccount.project_id == opening.project_id)):
        if bidder_id not in guaranteed:
            accounts.setdefault(bidder_id, set()).add(payer)
    return {bidder_id: ", ".join(sorted(payers)) for bidder_id, payers in accounts.items() if payers}


# -- who sees what after the opening -------------------------------------------------------------------------


def _project_reader(session: Session, actor: Actor, project: Project) -> bool:
    if actor.username == "system" or actor.has_role("admin") or actor.has_role("auditor"):
        return True
    instance = session.get(Instance, project.instance_id) if project.instance_id else None
    return instance is not None and not actor.has_role("bidder") and scope.can_view_instance(actor, instance)


def opening_records(session: Session, actor: Actor, project_id: int) -> list[OpeningRecord]:
    """Return a project's opening records to its participants: its bidders, and staff/regulators/tenderer in scope."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"没有交易项目 {project_id}", project=project_id)
    records = list(session.execute(select(OpeningRecord).where(OpeningRecord.project_id == project_id)
                                   .order_by(OpeningRecord.id)).scalars())
    if _project_reader(session, actor, project):
        return records
    if actor.has_role("bidder") and actor.organisation_id is not None:
        mine = {b.tender_round for b in my_bids(session, actor, project_id)}
        return [r for r in records if r.content.get("tender_round") in mine]
    return []


def latest_opening(session: Session, project_id: int) -> Opening | None:
    """Return a project's latest opening (the current round's, once its deadline has passed)."""
    return session.execute(select(Opening).where(Opening.project_id == project_id)
                           .order_by(Opening.tender_round.desc()).limit(1)).scalar_one_or_none()




def check_participant(session: Session, actor: Actor, project_id: int) -> Project:
    """Refuse unless the actor may follow the project's opening: in its scope, or a bidder with a bid in it."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"没有交易项目 {project_id}", project=project_id)
    if _project_reader(session, actor, project) or my_bids(session, actor, project_id):
        return project
    raise PermissionDenied(f"{actor.username} does not take part in project {project.code}")


def objections_of(session: Session, opening_id: int) -> list[OpeningObjection]:
    """Return the objections raised at an opening, oldest first."""
    return list(session.execute(select(OpeningObjection).where(OpeningObjection.opening_id == opening_id)
                                .order_by(OpeningObjection.id)).scalars())


def collusion_signals(session: Session, actor: Actor, project_id: int) -> list[CollusionSignal]:
    """Return a project's collusion signals to regulators, staff, auditors and admins in scope."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound(f"没有交易项目 {project_id}", project=project_id)
    if not (actor.has_role("regulator") or actor.has_role("staff") or actor.has_role("auditor")
            or actor.has_role("admin") or actor.username == "system") or not _project_reader(session, actor, project):
        raise PermissionDenied(f"{actor.username} may not see the collusion signals of project {project.code}")
    return list(session.execute(select(CollusionSignal).where(CollusionSignal.project_id == project_id)
                                .order_by(CollusionSignal.id)).scalars())
