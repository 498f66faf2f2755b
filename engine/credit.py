"""Credit records (信用记录, R16): violations and sanctions (失信惩戒/黑名单) recorded by regulators.

A regulator records a credit event on a company or agency: a violation (违法违规),
a sanction (失信联合惩戒, the blacklist) with its period, or a commendation, each
with its source (issuing authority and document number) and reason. A sanction
is *active* from the start of its first day to the end of its last day (Shanghai
dates, both inclusive) unless it was removed before. Removal never deletes: it
stamps who removed the event, when and why, so the history stays readable.

``ensure_not_sanctioned`` is the platform's joint punishment ("一处失信、处处受限"):
project registration and bid submission call it and refuse a sanctioned
organisation with a message naming the company, the reason, the source and the period.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, ForeignKey, Index, String, Text, func, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine import audit, clock, fieldcheck
from engine.actors import Actor
from engine.db import Base, UTCDateTime
from engine.errors import EngineError, InvalidState, NotFound, PermissionDenied
from engine.models import Organisation

KINDS = ("violation", "sanction", "commendation")
CREDIT_SUBJECT_KINDS = ("company", "agency")
MAX_PER_PAGE = 100
_LIMITS = {"authority": 200, "document_no": 100, "reason": 2000, "removal_reason": 2000}


class CreditEvent(Base):
    """One credit event of an organisation; removal keeps the row (removed_at/by/reason)."""

    __tablename__ = "credit_events"
    __table_args__ = (Index("ix_credit_events_org_kind", "organisation_id", "kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    kind: Mapped[str] = mapped_column(String(16))
    period_start: Mapped[date] = mapped_column(Date)
    period_end: Mapped[date | None] = mapped_column(Date)
    authority: Mapped[str] = mapped_column(String(200))
    document_no: Mapped[str] = mapped_column(String(100))
    reason: Mapped[str] = mapped_column(Text)
    recorded_by: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_by: Mapped[str | None] = mapped_column(String(64))
    removal_reason: Mapped[str | None] = mapped_column(Text)

    @property
    def source(self) -> str:
        """The issuing authority and its document number, as cited."""
        return f"{self.authority}（{self.document_no}）"

    @property
    def period(self) -> str:
        """The period as text: ``2026-01-01 至 2027-12-31`` (or from the start date only)."""
        end = self.period_end.isoformat() if self.period_end else ""
        return f"{self.period_start.isoformat()} 至 {end}" if end else f"{self.period_start.isoformat()} 起"


class SanctionedError(EngineError):
    """The organisation is under an active sanction (失信联合惩戒) and may not do this."""


def local_date(at: datetime | date) -> date:
    """Return the Shanghai calendar date of an instant (a date is returned as it is)."""
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise EngineError(f"naive datetime {at.isoformat()} given where an instant is needed")
        return at.astimezone(clock.SHANGHAI).date()
    return at


def _active_clause(on: date, at: datetime | None):
    clauses = [CreditEvent.period_start <= on, or_(CreditEvent.period_end.is_(None), CreditEvent.period_end >= on)]
    clauses.append(CreditEvent.removed_at.is_(None) if at is None
                   else or_(CreditEvent.removed_at.is_(None), CreditEvent.removed_at > at))
    return clauses


def active_sanction(session: Session, organisation_id: int, at: datetime | date) -> CreditEvent | None:
    """Return the organisation's sanction in force at ``at`` (the one ending last), or None."""
    instant = at if isinstance(at, datetime) else None
    return session.execute(
        select(CreditEvent)
        .where(CreditEvent.organisation_id == organisation_id, CreditEvent.kind == "sanction",
               *_active_clause(local_date(at), instant))
        .order_by(CreditEvent.period_end.desc(), CreditEvent.id.desc()).limit(1)).scalar_one_or_none()


def sanction_message(organisation: Organisation, sanction: CreditEvent, action: str) -> str:
    """Return the refusal text naming the company, the reason, the source and the period."""
    uscc = f"（统一社会信用代码 {organisation.uscc}）" if organisation.uscc else ""
    return (f"一处失信、处处受限：{organisation.name}{uscc}因“{sanction.reason}”被{sanction.source}"
            f"列入失信联合惩戒名单，惩戒期 {sanction.period}，不得{action} (blacklisted until {sanction.period_end})")


def ensure_not_sanctioned(session: Session, organisation_id: int, *, at: datetime | date, action: str) -> None:
    """Refuse with SanctionedError if the organisation is sanctioned at ``at``; ``action`` says what it may not do."""
    sanction = active_sanction(session, organisation_id, at)
    if sanction is None:
        return
    organisation = session.get(Organisation, organisation_id)
    message = sanction_message(organisation, sanction, action)
    raise SanctionedError(message, organisation=organisation_id, credit_event=sanction.id, action=action)


@dataclass(frozen=True)
class CreditInput:
    """The fields of a credit event, as given (strings from a form, or typed values)."""

    organisation_id: int
    kind: str
    authority: str
    document_no: str
    reason: str
    period_start: date | str
    period_end: date | str | None = None


def check_recorder(actor: Actor) -> None:
    """Refuse unless the actor may record or remove credit events (regulators)."""
    if actor.username == "system" or actor.has_role("regulator"):
        return
    raise PermissionDenied(f"{actor.username} 不能记录或撤销信用记录：只有行业监管部门可以 "
                           "(only regulators record credit events)")


def record_event(session: Session, actor: Actor, data: CreditInput) -> CreditEvent:
    """Record a credit event after checking every field; raise one error naming all that are wrong."""
    check_recorder(actor)
    errors: fieldcheck.Errors = {}
    organisation = session.get(Organisation, data.organisation_id) if isinstance(data.organisation_id, int) else None
    if organisation is None or organisation.kind not in CREDIT_SUBJECT_KINDS:
        errors["organisation_id"] = [f"{data.organisation_id!r} 不是已登记的企业或代理机构"]
    if data.kind not in KINDS:
        errors["kind"] = [f"未知的信用记录类别 {data.kind!r}；可选 {', '.join(KINDS)}"]
    texts = {name: fieldcheck.text(getattr(data, name), name, errors, limit=_LIMITS[name])
             for name in ("authority", "document_no", "reason")}
    start = fieldcheck.day(data.period_start, "period_start", errors)
    end = fieldcheck.day(data.period_end, "period_end", errors, required=data.kind == "sanction")
    fieldcheck.order(start, end, "period_end", errors, "结束日期")
    if data.kind == "sanction" and end and end < clock.local_now().date():
        errors.setdefault("period_end", []).append(f"惩戒期已于 {end} 届满，无需记录为有效惩戒")
    fieldcheck.raise_if(errors, "信用记录有误 (credit event is invalid)")
    event = CreditEvent(organisation_id=organisation.id, kind=data.kind, period_start=start, period_end=end,
                        recorded_by=actor.username, recorded_at=clock.now(), **texts)
    session.add(event)
    session.flush()
    audit.append(session, actor=actor.username, action="credit.record", payload=_payload(event, organisation))
    return event


def remove_event(session: Session, actor: Actor, event_id: int, reason: str) -> CreditEvent:
    """Remove a credit event (it stays in the history, stamped with who, when and why)."""
    check_recorder(actor)
    event = session.execute(select(CreditEvent).where(CreditEvent.id == event_id).with_for_update()) \
        .scalar_one_or_none()
    if event is None:
        raise NotFound(f"没有信用记录 {event_id}")
    if event.removed_at is not None:
        raise InvalidState(f"信用记录 {event_id} 已于 {event.removed_at.isoformat()} 由 {event.removed_by} 撤销")
    text = (reason or "").strip()
    if not text:
        raise EngineError("请填写撤销理由 (a removal reason is required)", field="removal_reason")
    if len(text) > _LIMITS["removal_reason"]:
        raise EngineError(f"撤销理由最多 {_LIMITS['removal_reason']} 字", field="removal_reason")
    event.removed_at, event.removed_by, event.removal_reason = clock.now(), actor.username, text
    session.flush()
    audit.append(session, actor=actor.username, action="credit.remove",
                 payload={**_payload(event, session.get(Organisation, event.organisation_id)),
                          "removal_reason": text})
    return event


def events_of(session: Session, organisation_id: int) -> list[CreditEvent]:
    """Return every credit event of an organisation, removed ones included, newest first."""
    return list(session.execute(
        select(CreditEvent).where(CreditEvent.organisation_id == organisation_id)
        .order_by(CreditEvent.recorded_at.desc(), CreditEvent.id.desc())).scalars())


def list_events(session: Session, *, search: str = "", kind: str | None = None, include_removed: bool = True,
                page: int = 1, per_page: int = 20) -> tuple[list[tuple[CreditEvent, Organisation]], int]:
    """Return one page of credit events with their organisations (for regulators), newest first."""
    query = select(CreditEvent, Organisation).join(Organisation, Organisation.id == CreditEvent.organisation_id)
    if kind:
        query = query.where(CreditEvent.kind == kind)
    if not include_removed:
        query = query.where(CreditEvent.removed_at.is_(None))
    query = _search(query, search)
    return _page(session, query.order_by(CreditEvent.recorded_at.desc(), CreditEvent.id.desc()), page, per_page)


def public_events(session: Session, *, search: str = "", kind: str | None = None, page: int = 1,
                  per_page: int = 20) -> tuple[list[tuple[CreditEvent, Organisation]], int]:
    """Return one page of what the public credit page lists: sanctions and violations in force now."""
    kinds = (kind,) if kind in ("sanction", "violation") else ("sanction", "violation")
    query = (select(CreditEvent, Organisation).join(Organisation, Organisation.id == CreditEvent.organisation_id)
             .where(CreditEvent.kind.in_(kinds), *_active_clause(clock.local_now().date(), None)))
    query = _search(query, search)
    return _page(session, query.order_by(CreditEvent.kind, CreditEvent.period_start.desc(), CreditEvent.id.desc()),
                 page, per_page)


def _search(query, search: str):
    words = (search or "").strip()
    if not words:
        return query
    like = "%" + words.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    columns = (Organisation.name, Organisation.uscc, CreditEvent.reason, CreditEvent.document_no)
    return query.where(or_(*(column.ilike(like, escape="\\") for column in columns)))


def _page(session: Session, query, page: int, per_page: int):
    per_page = min(max(per_page, 1), MAX_PER_PAGE)
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(query.limit(per_page).offset((max(page, 1) - 1) * per_page)).all()
    return [(row[0], row[1]) for row in rows], total


def _payload(event: CreditEvent, organisation: Organisation) -> dict[str, Any]:
    return {"credit_event_id": event.id, "organisation_id": organisation.id, "organisation": organisation.name,
            "uscc": organisation.uscc, "kind": event.kind, "period_start": event.period_start.isoformat(),
            "period_end": event.period_end.isoformat() if event.period_end else None, "authority": event.authority,
            "document_no": event.document_no, "reason": event.reason}
