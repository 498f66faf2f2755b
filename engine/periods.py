"""Statutory periods on the official PRC calendar (民法典 §201–§203).

The start day is not counted; a period whose last day is a rest day or public
holiday ends on the next working day; a period ends at 24:00 Asia/Shanghai,
which is returned as 00:00 of the following day (the same instant).
Working days come from ``chinese-calendar`` (weekends, holidays and make-up
working days). For years the package does not yet cover, Monday–Friday is used
until the State Council's notice is published and the package updated.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import chinese_calendar

from engine.clock import SHANGHAI
from engine.errors import ScriptError


def is_working_day(day: date) -> bool:
    """Tell whether ``day`` is a working day (工作日) on the official calendar."""
    try:
        return bool(chinese_calendar.is_workday(day))
    except NotImplementedError:
        return day.weekday() < 5


def add_days(start: str | datetime, days: int) -> str:
    """Return the end (24:00 Shanghai) of a period of ``days`` calendar days after ``start``."""
    last = _start_date(start) + timedelta(days=_count(days))
    while not is_working_day(last):
        last += timedelta(days=1)
    return _end_of(last)


def add_working_days(start: str | datetime, days: int) -> str:
    """Return the end (24:00 Shanghai) of a period of ``days`` working days after ``start``."""
    remaining = _count(days)
    last = _start_date(start)
    while remaining:
        last += timedelta(days=1)
        if is_working_day(last):
            remaining -= 1
    while not is_working_day(last):
        last += timedelta(days=1)
    return _end_of(last)


def last_day(end: str | datetime) -> date:
    """Return the calendar day a period ends on, for display ("2026-10-12 24:00")."""
    instant = to_datetime(end).astimezone(SHANGHAI)
    if instant.time() == time(0):
        return instant.date() - timedelta(days=1)
    return instant.date()


def to_datetime(value: str | datetime) -> datetime:
    """Parse an ISO-8601 instant with offset (or pass an aware datetime through)."""
    if isinstance(value, datetime):
        instant = value
    elif isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            raise ScriptError(f"not an ISO-8601 instant: {value!r}") from None
    else:
        raise ScriptError(f"expected an ISO-8601 instant, got {type(value).__name__}")
    if instant.tzinfo is None:
        raise ScriptError(f"instant {instant.isoformat()} has no UTC offset")
    return instant


def _start_date(start: str | datetime) -> date:
    return to_datetime(start).astimezone(SHANGHAI).date()


def _count(days: int) -> int:
    if isinstance(days, bool) or not isinstance(days, int) or days < 0:
        raise ScriptError(f"a period needs a whole, non-negative number of days, got {days!r}")
    return days


def _end_of(day: date) -> str:
    return datetime.combine(day + timedelta(days=1), time(0), SHANGHAI).isoformat()
