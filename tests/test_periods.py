"""Statutory periods on the official calendar (民法典 §201–§203)."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from engine.errors import ScriptError
from engine.periods import add_days, add_working_days, is_working_day, last_day


def test_five_working_days_across_national_day():
    # Sep 30, Oct 8, Oct 9, the make-up Saturday Oct 10, Oct 12.
    end = add_working_days("2026-09-29T10:00:00+08:00", 5)
    assert end == "2026-10-13T00:00:00+08:00"
    assert last_day(end) == date(2026, 10, 12)


def test_calendar_days_ending_on_a_holiday_roll_over():
    # 20 days from Sep 13 fall on Oct 3 (National Day): the period ends on the next working day, Oct 8.
    end = add_days("2026-09-13T15:30:00+08:00", 20)
    assert last_day(end) == date(2026, 10, 8)


def test_mid_autumn_holiday_is_not_a_working_day():
    assert not is_working_day(date(2026, 9, 25))
    assert last_day(add_working_days("2026-09-24T09:00:00+08:00", 1)) == date(2026, 9, 28)


def test_make_up_working_day_on_a_weekend_counts():
    assert date(2026, 9, 20).weekday() == 6 and is_working_day(date(2026, 9, 20))
    assert last_day(add_working_days("2026-09-19T09:00:00+08:00", 1)) == date(2026, 9, 20)


def test_start_day_is_not_counted_and_days_end_at_midnight_shanghai():
    assert add_days("2026-11-02T23:59:00+08:00", 1) == "2026-11-04T00:00:00+08:00"
    # 2026-11-02 20:00 UTC is already 2026-11-03 in Shanghai.
    assert add_days(datetime.fromisoformat("2026-11-02T20:00:00+00:00"), 1) == "2026-11-05T00:00:00+08:00"


def test_a_day_count_ending_on_a_weekend_moves_to_monday():
    assert last_day(add_days("2026-11-02T09:00:00+08:00", 5)) == date(2026, 11, 9)


def test_years_beyond_the_official_calendar_fall_back_to_weekdays():
    assert last_day(add_working_days("2027-03-05T09:00:00+08:00", 1)) == date(2027, 3, 8)


@pytest.mark.parametrize("bad", [-1, 1.5, "5", True])
def test_bad_day_counts_are_refused(bad):
    with pytest.raises(ScriptError, match="whole, non-negative"):
        add_days("2026-09-29T10:00:00+08:00", bad)


@pytest.mark.parametrize("bad", ["2026-09-29", "yesterday", 20260929])
def test_bad_starts_are_refused(bad):
    with pytest.raises(ScriptError):
        add_working_days(bad, 1)
