"""Timer sweeps: fire every due BPMN timer, each instance in its own transaction.

Instances are claimed with ``FOR UPDATE SKIP LOCKED`` in (next_timer_at, id)
order, so any number of scheduler processes can sweep one PostgreSQL database
and no timer fires twice; SQLite serializes writers instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from engine import audit, clock
from engine.actors import SYSTEM
from engine.models import Instance
from engine.runtime import ACTIVE, Loaded, _advance, load

log = logging.getLogger(__name__)


@dataclass
class SweepResult:
    """What one sweep did."""

    fired: int = 0
    instances: int = 0
    errors: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Return a JSON-ready dict."""
        return {"fired": self.fired, "instances": self.instances, "errors": self.errors}


def sweep(session_factory: sessionmaker, now: datetime, *, limit: int | None = None) -> SweepResult:
    """Fire every timer due at ``now``; one failing instance does not stop the others."""
    result = SweepResult()
    passed: set[int] = set()  # failed, or still due after firing: not claimed again in this sweep
    while limit is None or result.instances < limit:
        instance_id = None
        try:
            with session_factory.begin() as session, clock.as_of(now):
                instance_id = _claim(session, now, passed)
                if instance_id is None:
                    break
                fired = fire(session, instance_id, now)
                due = session.get(Instance, instance_id).next_timer_at  # in the identity map: no query
                if due is not None and due <= now:
                    passed.add(instance_id)
            result.instances += 1
            result.fired += len(fired)
        except Exception as err:  # one instance's failure must not stop the sweep
            if instance_id is None:
                raise
            passed.add(instance_id)
            log.exception("timer sweep failed on an instance")
            result.errors.append({"instance_id": instance_id, "error": str(err)})
    return result


def _claim(session: Session, now: datetime, passed: set[int]) -> int | None:
    # No status filter: ``persist`` clears next_timer_at of inactive instances, and a status
    # condition makes planners prefer the status index over (next_timer_at, id).
    query = (
        select(Instance.id)
        .where(Instance.next_timer_at <= now)
        .order_by(Instance.next_timer_at, Instance.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    if passed:
        query = query.where(Instance.id.not_in(passed))
    return session.execute(query).scalar()


def fire(session: Session, instance_id: int, now: datetime) -> list[str]:
    """Refresh one instance's timers as of ``now`` and run it on; return the timer elements that fired."""
    with clock.as_of(now):
        loaded = load(session, instance_id, lock=True)
        if loaded.instance.status not in ACTIVE:
            return []
        waiting = _waiting_timers(loaded)
        loaded.workflow.refresh_timers()
        fired = [t.task_spec.bpmn_id for t in waiting if t._get_internal_data("event_fired")]
        if fired:
            audit.append(session, actor=SYSTEM.username, action="timer.fire", instance_id=instance_id,
                         project_id=loaded.instance.project_id,
                         payload={"elements": fired, "as_of": now.isoformat()})
        _advance(session, loaded, SYSTEM)
        return fired


def _waiting_timers(loaded: Loaded) -> list:
    return [
        task for task in loaded.workflow.event_manager.tasks.values()
        if isinstance(getattr(task.task_spec, "event_definition", None), TimerEventDefinition)
        and not task._get_internal_data("event_fired")
    ]
