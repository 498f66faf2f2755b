"""Small helpers shared by the tests (not fixtures)."""

from __future__ import annotations

from sqlalchemy import select

from engine.models import AuditEvent, InboxTask, Instance

SUBMISSION = {"project_name": "张掖市甘州区道路改造工程", "page_count": 120, "estimate": "4500000.10"}


def open_tasks(ctx, instance_id: int) -> list[InboxTask]:
    """Return an instance's inbox rows."""
    with ctx.sessions() as s:
        return list(s.execute(select(InboxTask).where(InboxTask.instance_id == instance_id)).scalars())


def only_task(ctx, instance_id: int) -> InboxTask:
    """Return the single open task of an instance."""
    (task,) = open_tasks(ctx, instance_id)
    return task


def instance(ctx, instance_id: int) -> Instance:
    """Return a fresh copy of an instance row."""
    with ctx.sessions() as s:
        return s.get(Instance, instance_id)


def actions(ctx, instance_id: int) -> list[str]:
    """Return the audit actions recorded for an instance, in order."""
    with ctx.sessions() as s:
        query = select(AuditEvent.action).where(AuditEvent.instance_id == instance_id).order_by(AuditEvent.seq)
        return list(s.execute(query).scalars())
