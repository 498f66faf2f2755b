"""The one injectable clock; SpiffWorkflow's timer evaluation reads it too.

Everything in ggzy that asks "what time is it" calls :func:`now`. Tests and the
demo replace the clock with a :class:`FixedClock` and move it by days in a
microsecond; a sweep evaluates timers "as of" an instant with :func:`as_of`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from SpiffWorkflow.bpmn.specs.event_definitions import timer as _spiff_timer

SHANGHAI = ZoneInfo("Asia/Shanghai")


class Clock:
    """The real clock."""

    def now(self) -> datetime:
        """Return the current instant, timezone-aware, in UTC."""
        return datetime.now(UTC)


class FixedClock(Clock):
    """A clock that stands still until moved."""

    def __init__(self, instant: datetime) -> None:
        self.instant = _aware(instant)

    def now(self) -> datetime:
        return self.instant

    def set(self, instant: datetime) -> None:
        """Jump to an instant."""
        self.instant = _aware(instant)

    def advance(self, **delta: float) -> datetime:
        """Move forward by a timedelta given as keywords (days=20, hours=1)."""
        self.instant = self.instant + timedelta(**delta)
        return self.instant


class AcceleratedClock(Clock):
    """A clock running ``speed`` times faster than real time from ``start`` (demos)."""

    def __init__(self, start: datetime, speed: float) -> None:
        self.start = _aware(start)
        self.speed = speed
        self.real_start = datetime.now(UTC)

    def now(self) -> datetime:
        return self.start + (datetime.now(UTC) - self.real_start) * self.speed


_clock: Clock = Clock()
_as_of: ContextVar[datetime | None] = ContextVar("ggzy_as_of", default=None)


def now() -> datetime:
    """Return the current instant (UTC, aware) from the installed clock."""
    override = _as_of.get()
    return override if override is not None else _clock.now()


def local_now() -> datetime:
    """Return the current instant in Asia/Shanghai."""
    return now().astimezone(SHANGHAI)


def install(clock: Clock) -> Clock:
    """Install a clock for the whole process and return the previous one."""
    global _clock
    previous, _clock = _clock, clock
    return previous


def current() -> Clock:
    """Return the installed clock."""
    return _clock


@contextmanager
def as_of(instant: datetime) -> Iterator[None]:
    """Evaluate everything in this block (timers included) as of ``instant``."""
    token = _as_of.set(_aware(instant))
    try:
        yield
    finally:
        _as_of.reset(token)


def _aware(instant: datetime) -> datetime:
    if instant.tzinfo is None:
        raise ValueError(f"instant {instant.isoformat()} has no UTC offset")
    return instant.astimezone(UTC)


class _ClockDatetime(datetime):
    """``datetime`` whose ``now()`` reads the ggzy clock; installed into Spiff's timer module."""

    @classmethod
    def now(cls, tz=None):  # noqa: ANN001, ANN206 - mirrors datetime.now
        instant = now()
        return instant.astimezone(tz) if tz is not None else instant.astimezone(SHANGHAI).replace(tzinfo=None)


# SpiffWorkflow evaluates every timer with ``datetime.now(timezone.utc)`` from this module.
_spiff_timer.datetime = _ClockDatetime
