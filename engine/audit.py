"""The hash-chained audit log (来源可溯、去向可查、监督留痕、责任可究).

Each event's ``hash`` is sha256 over a canonical encoding of the event and the
previous event's hash. Appends lock the single ``audit_head`` row, so the chain
never forks, whatever the number of writers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from engine import clock
from engine.models import AuditEvent, AuditHead
from engine.prepared import Prepared

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    """Encode JSON canonically: sorted keys, no spaces, UTF-8 text, Decimals and instants as strings."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot audit a {type(value).__name__}")


def event_hash(
    *, seq: int, at: datetime, actor: str, action: str, instance_id: int | None,
    project_id: int | None, payload: str, prev_hash: str,
) -> str:
    """Return the sha256 of one event's canonical encoding chained to ``prev_hash``."""
    body = canonical_json({
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "instance_id": instance_id,
        "project_id": project_id,
        "payload": payload,
        "prev_hash": prev_hash,
    })
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def ensure_head(session: Session) -> None:
    """Create the chain's head row if the log is new."""
    if session.get(AuditHead, 1) is None:
        session.add(AuditHead(id=1, seq=0, hash=GENESIS))
        session.flush()


# Prepared (engine/prepared.py): every write of the platform appends, so these run on the driver's cursor.
_HEAD = Prepared(select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1).with_for_update(), "audit_head")
_INSERT = Prepared(insert(AuditEvent), "audit_insert")
_ADVANCE = Prepared(update(AuditHead).where(AuditHead.id == 1).values(seq=bindparam("seq"), hash=bindparam("hash")),
                    "audit_advance")


@dataclass(frozen=True)
class Appended:
    """Where an appended event stands in the chain."""

    seq: int
    hash: str
    at: datetime


def append(
    session: Session, *, actor: str, action: str, instance_id: int | None = None,
    project_id: int | None = None, payload: dict[str, Any] | None = None,
) -> Appended:
    """Append one event to the chain in the caller's transaction."""
    # The session's connection, through prepared statements: no ORM bookkeeping or autoflush on this hot path.
    conn = session.connection()
    head = _HEAD.first(conn)
    if head is None:
        ensure_head(session)
        head = (0, GENESIS)
    prev_seq, prev_hash = head
    at = clock.now()
    text = canonical_json(payload or {})
    seq = prev_seq + 1
    digest = event_hash(seq=seq, at=at, actor=actor, action=action, instance_id=instance_id,
                        project_id=project_id, payload=text, prev_hash=prev_hash)
    _INSERT.execute(conn, {"seq": seq, "at": at, "actor": actor, "action": action, "instance_id": instance_id,
                           "project_id": project_id, "payload": text, "prev_hash": prev_hash, "hash": digest})
    _ADVANCE.execute(conn, {"seq": seq, "hash": digest})
    return Appended(seq, digest, at)


@dataclass(frozen=True)
class Verification:
    """The result of checking the chain."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str | None = None


def verify(session: Session) -> Verification:
    """Walk the chain in order; report the first event that was edited, deleted or reordered."""
    prev_hash, expected_seq, count = GENESIS, 1, 0
    query = select(AuditEvent).order_by(AuditEvent.seq).execution_options(yield_per=2000)
    with session.execute(query) as rows:
        for event in rows.scalars():
            if event.seq != expected_seq:
                return Verification(False, count, expected_seq, f"event {expected_seq} is missing")
            if event.prev_hash != prev_hash:
                return Verification(False, count, event.seq, "prev_hash does not match the previous event")
            digest = event_hash(seq=event.seq, at=event.at, actor=event.actor, action=event.action,
                                instance_id=event.instance_id, project_id=event.project_id,
                                payload=event.payload, prev_hash=event.prev_hash)
            if digest != event.hash:
                return Verification(False, count, event.seq, "content does not match its hash")
            prev_hash, expected_seq, count = event.hash, expected_seq + 1, count + 1
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != count or head.hash != prev_hash):
        return Verification(False, count, count + 1 if head.seq > count else count,
                            f"the chain ends at {count} but its head says {head.seq}")
    return Verification(True, count)


def trail(session: Session, *, instance_id: int) -> list[AuditEvent]:
    """Return an instance's events in order."""
    query = select(AuditEvent).where(AuditEvent.instance_id == instance_id).order_by(AuditEvent.seq)
    return list(session.execute(query).scalars())
