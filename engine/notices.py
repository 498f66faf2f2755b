"""Public notices (公告): published by a process step, immutable, listed on the public portal.

A diagram publishes with a service task ``publish_notice`` (kind, title, body,
optional ``amends`` — the kind of this instance's earlier notice it amends — and
optional structured ``data``). The notice is stamped with the engine clock at
the instant the step runs, takes its category and centre from the project (else
the instance), and carries a sha256 over its canonical content. Once published
a notice is never edited or deleted: the ORM refuses it (flush-time events and
bulk statements alike); a correction is a new notice that amends the old one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from math import ceil
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit, clock, immutable
from engine.errors import InvalidState, NotFound
from engine.models import Instance, Notice, Project
from engine.services import ServiceCall, service

KINDS = ("tender", "amendment", "failure", "candidates", "result", "complaint_decision")
MAX_PER_PAGE = 100


class NoticeImmutable(InvalidState):
    """A published notice cannot be changed or removed; publish an amendment instead."""


def content_of(notice: Notice) -> dict[str, Any]:
    """Return the canonical content a notice's sha256 covers."""
    return {
        "kind": notice.kind, "title": notice.title, "body": notice.body, "data": notice.data or {},
        "project_id": notice.project_id, "instance_id": notice.instance_id, "category": notice.category,
        "centre_id": notice.centre_id, "amends_id": notice.amends_id,
        "published_at": notice.published_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "published_by": notice.published_by,
    }


def content_hash(notice: Notice) -> str:
    """Return the sha256 of a notice's canonical content."""
    return hashlib.sha256(audit.canonical_json(content_of(notice)).encode("utf-8")).hexdigest()


def verify(notice: Notice) -> bool:
    """Tell whether a stored notice still matches its sha256."""
    return content_hash(notice) == notice.sha256


def publish(session: Session, *, kind: str, title: str, body: str, actor: str, instance_id: int | None = None,
            project_id: int | None = None, amends_id: int | None = None,
            data: dict[str, Any] | None = None) -> Notice:
    """Publish a notice now, in the caller's transaction, and audit it."""
    if kind not in KINDS:
        raise InvalidState(f"unknown notice kind {kind!r}; kinds are {', '.join(KINDS)}", kind=kind)
    title, body = str(title).strip(), str(body).strip()
    if not title or not body:
        raise InvalidState("a notice needs a title and a body", kind=kind)
    category, centre_id = _where(session, instance_id, project_id)
    notice = Notice(
        project_id=project_id, instance_id=instance_id, kind=kind, title=title[:300], body=body,
        data=json.loads(audit.canonical_json(data or {})), category=category, centre_id=centre_id,
        amends_id=amends_id, published_at=clock.now(), published_by=actor, sha256="",
    )
    notice.sha256 = content_hash(notice)
    session.add(notice)
    session.flush()
    audit.append(session, actor=actor, action="notice.publish", instance_id=instance_id, project_id=project_id,
                 payload={"notice_id": notice.id, "kind": kind, "title": notice.title, "sha256": notice.sha256,
                          "amends_id": amends_id})
    return notice


def _where(session: Session, instance_id: int | None, project_id: int | None) -> tuple[str | None, int | None]:
    project = session.get(Project, project_id) if project_id is not None else None
    instance = session.get(Instance, instance_id) if instance_id is not None else None
    category = (project.category if project else None) or (instance.category if instance else None)
    centre_id = (project.centre_id if project else None) or (instance.centre_id if instance else None)
    return category, centre_id


@service("publish_notice")
def publish_notice(call: ServiceCall, kind: str, title: str, body: str, amends: str | None = None,
                   data: dict[str, Any] | None = None) -> dict[str, Any]:
    """Service task: publish a notice of ``kind``; ``amends`` names the kind of this instance's notice it amends."""
    amends_id = None
    if amends:
        amends_id = call.session.execute(
            select(Notice.id).where(Notice.instance_id == call.instance_id, Notice.kind == amends)
            .order_by(Notice.id.desc()).limit(1)
        ).scalar()
        if amends_id is None:
            raise InvalidState(f"instance {call.instance_id} has no {amends!r} notice to amend", kind=kind)
    notice = publish(call.session, kind=kind, title=title, body=body, actor=call.actor,
                     instance_id=call.instance_id, project_id=call.project_id, amends_id=amends_id, data=data)
    return {"id": notice.id, "kind": kind, "sha256": notice.sha256, "amends_id": amends_id,
            "published_at": notice.published_at.astimezone(clock.SHANGHAI).isoformat()}


@dataclass(frozen=True)
class NoticePage:
    """One page of the public notice list, newest first."""

    items: list[Notice]
    total: int
    page: int
    pages: int
    per_page: int


def list_notices(session: Session, *, category: str | None = None, centre_id: int | None = None,
                 since: datetime | date | None = None, until: datetime | date | None = None,
                 kind: str | None = None, page: int = 1, per_page: int = 20) -> NoticePage:
    """List published notices, newest first; ``since`` is inclusive, ``until`` exclusive (a date: through that day)."""
    page, per_page = max(1, page), min(max(1, per_page), MAX_PER_PAGE)
    query = select(Notice)
    if category is not None:
        query = query.where(Notice.category == category)
    if centre_id is not None:
        query = query.where(Notice.centre_id == centre_id)
    if kind is not None:
        query = query.where(Notice.kind == kind)
    if since is not None:
        query = query.where(Notice.published_at >= _instant(since, end=False))
    if until is not None:
        query = query.where(Notice.published_at < _instant(until, end=True))
    total = session.execute(select(func.count()).select_from(query.subquery())).scalar_one()
    rows = session.execute(
        query.order_by(Notice.published_at.desc(), Notice.id.desc()).limit(per_page).offset((page - 1) * per_page)
    ).scalars()
    return NoticePage(list(rows), total, page, max(1, ceil(total / per_page)), per_page)


def _instant(value: datetime | date, *, end: bool) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"instant {value.isoformat()} has no UTC offset")
        return value
    day = value + timedelta(days=1) if end else value
    return datetime.combine(day, time(0), clock.SHANGHAI)


def get_notice(session: Session, notice_id: int) -> Notice:
    """Return one published notice, or raise NotFound."""
    notice = session.get(Notice, notice_id)
    if notice is None:
        raise NotFound(f"no notice {notice_id}", notice=notice_id)
    return notice


def amendments_of(session: Session, notice_id: int) -> list[Notice]:
    """Return the notices that amend a notice, oldest first."""
    query = select(Notice).where(Notice.amends_id == notice_id).order_by(Notice.published_at, Notice.id)
    return list(session.execute(query).scalars())


immutable.write_once(Notice, error=NoticeImmutable, hint="; publish an amendment",
                     bulk="published notices cannot be changed or deleted; publish an amendment")
