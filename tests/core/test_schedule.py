"""Schedules: crontab semantics (cronsim), intervals, and their bounds."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from mirrord.core.schedule import Schedule


def _local(*args: int) -> datetime:
    return datetime(*args).astimezone()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expr", "weekday"), [("0 9 * * 1", 0), ("0 9 * * 0", 6), ("0 9 * * 7", 6), ("0 9 * * 5", 4)]
)
def test_cron_fires_on_the_crontab_day_of_week(expr: str, weekday: int) -> None:
    # crontab counts days from Sunday (0 or 7); Python's weekday() from Monday (0).
    sunday_noon = _local(2024, 6, 2, 12, 0)
    fire = Schedule.parse(expr).next_after(sunday_noon, sunday_noon)
    assert (fire.weekday(), fire.hour, fire.minute) == (weekday, 9, 0)


@pytest.mark.parametrize(
    ("field", "weekdays"),
    [("1-5", {0, 1, 2, 3, 4}), ("mon-fri", {0, 1, 2, 3, 4}), ("*/2", {6, 1, 3, 5}),
     ("5-7", {4, 5, 6}), ("0,6", {6, 5}), ("1-5/2", {0, 2, 4})],
)
def test_day_of_week_fields_follow_crontab(field: str, weekdays: set[int]) -> None:
    schedule = Schedule.parse(f"0 0 * * {field}")
    moment = _local(2024, 6, 2, 12, 0)
    fired = set()
    for _ in range(len(weekdays) * 3):
        moment = schedule.next_after(moment, moment)
        fired.add(moment.weekday())
    assert fired == weekdays


def test_restricted_day_of_month_and_week_fire_on_either_like_cron() -> None:
    schedule = Schedule.parse("0 0 13 * 5")  # the 13th, and every Friday
    moment = _local(2024, 6, 2, 12, 0)
    fired = []
    for _ in range(3):
        moment = schedule.next_after(moment, moment)
        fired.append(moment.day)
    assert fired == [7, 13, 14]


def test_intervals_fire_whole_intervals_after_their_anchor() -> None:
    anchor = _local(2024, 6, 2, 12, 0)
    schedule = Schedule.parse("90s")
    assert schedule.interval == 90
    assert schedule.next_after(anchor, anchor) == anchor + timedelta(seconds=90)
    later = anchor + timedelta(seconds=200)
    assert schedule.next_after(later, anchor) == anchor + timedelta(seconds=270)
    assert Schedule.parse("1h30m").period(anchor) == 5400


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", "out of range"),
        ("* * *", "5 fields"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 30 2 *", "never fires"),
        ("0s", "more than 0"),
        ("99999999999999999999h", "too long"),
        ("10000h", "too long"),
    ],
)
def test_invalid_schedules_say_why(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Schedule.parse(expr)


def test_a_leap_day_schedule_fires_in_the_next_leap_year() -> None:
    start = _local(2025, 3, 1, 0, 0)
    fire = Schedule.parse("0 0 29 2 *").next_after(start, start)
    assert (fire.year, fire.month, fire.day) == (2028, 2, 29)
