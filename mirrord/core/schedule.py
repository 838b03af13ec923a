"""Schedules and durations: Go durations, intervals (``15m``) and crontab lines. Pure.

:func:`validate_cron` checks a 5-field crontab line and names the field at fault;
:class:`Schedule` computes fire times, with cronsim for crontab semantics (Sunday is
0 or 7; a restricted day of month and day of week fire on either, as cron does).
Durations are bounded (:data:`MAX_DURATION`), intervals more so (:data:`MAX_INTERVAL`),
so no configuration value can overflow a clock computation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from cronsim import CronSim, CronSimError

MAX_DURATION = 100 * 365 * 86400.0  # a century: longer than anything a user means
MAX_INTERVAL = 366 * 86400.0  # a schedule runs at least once a year

_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_DURATION_PART = r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)"
_DURATION_RE = re.compile(rf"(?:{_DURATION_PART})+")
_CRON_NAMES = {
    3: {
        m: i + 1
        for i, m in enumerate(
            ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        )
    },
    4: {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])},
}
_CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
_CRON_ITEM_RE = re.compile(r"(\*|\w+)(?:-(\w+))?(?:/(\d+))?")


def parse_duration(text: str) -> float:
    """A Go duration (``90s``, ``60m``, ``1h30m``, ``1.5h``, ``0``) in seconds."""
    text = text.strip()
    if text == "0":
        return 0.0
    if not _DURATION_RE.fullmatch(text):
        raise ValueError(f"invalid duration {text!r} (Go syntax: 90s, 15m, 1h30m)")
    seconds = sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(_DURATION_PART, text))
    if not math.isfinite(seconds) or seconds > MAX_DURATION:
        raise ValueError(f"duration {text!r} is too long (at most 100 years)")
    return seconds


def validate_cron(expr: str) -> None:
    """Check a 5-field cron expression (``*/15 * * * *``); ValueError names the field."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"a cron expression has 5 fields, {expr!r} has {len(fields)}")
    for index, (text, (what, low, high)) in enumerate(zip(fields, _CRON_FIELDS, strict=True)):
        for item in text.split(","):
            match = _CRON_ITEM_RE.fullmatch(item.lower())
            if match is None:
                raise ValueError(f"invalid {what} {item!r} in {expr!r}")
            start, end, step = match.groups()
            values = [
                _cron_value(v, index, low, high, what) for v in (start, end) if v and v != "*"
            ]
            if (start == "*" and end) or (len(values) == 2 and values[0] > values[1]):
                raise ValueError(f"invalid {what} range {item!r} in {expr!r}")
            if step is not None:
                # A step wider than the range it steps through is a typo (and was refused
                # by the scheduler mirrord used before; configurations keep meaning one thing).
                first = values[0] if values else low
                last = values[1] if len(values) == 2 else (6 if index == 4 else high)
                if not 1 <= int(step) <= max(1, last - first):
                    raise ValueError(
                        f"invalid {what} step {item!r} in {expr!r} "
                        f"(at most {max(1, last - first)} here)"
                    )

    try:
        CronSim(expr, datetime(2000, 1, 1))
    except CronSimError as exc:  # e.g. "0 0 31 2 *": a day no month in the line has
        raise ValueError(f"{expr!r} never fires ({exc})") from None


def _cron_value(text: str, index: int, low: int, high: int, what: str) -> int:
    value = _CRON_NAMES.get(index, {}).get(text)
    if value is None:
        if not text.isdigit():
            raise ValueError(f"invalid {what} {text!r}")
        value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{what} {value} is out of range {low}-{high}")
    return value


def schedule_interval(expr: str) -> float | None:
    """Seconds between runs for an interval schedule (``15m``); None for cron.

    ValueError for an interval over :data:`MAX_INTERVAL`."""
    if not _DURATION_RE.fullmatch(expr.strip()):
        return None
    seconds = parse_duration(expr)
    if seconds > MAX_INTERVAL:
        raise ValueError(f"interval {expr!r} is too long (at most 366 days; use cron)")
    return seconds


@dataclass(frozen=True)
class Schedule:
    """When something runs: every ``interval`` seconds, or on a crontab line."""

    text: str
    interval: float | None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """ValueError (naming what is wrong) for anything but a valid interval or cron."""
        interval = schedule_interval(text)
        if interval is None:
            validate_cron(text)
        elif interval <= 0:
            raise ValueError(f"invalid interval {text!r}: must be more than 0")
        return cls(text, interval)

    def next_after(self, moment: datetime, anchor: datetime) -> datetime:
        """The first fire time after ``moment`` (time-zone aware). An interval fires at
        ``anchor`` plus whole intervals (the first one interval after it)."""
        if self.interval is not None:
            step = timedelta(seconds=self.interval)
            count = max(1, math.floor((moment - anchor) / step) + 1)
            return anchor + count * step
        fire: datetime = next(CronSim(self.text, moment.replace(microsecond=0)))
        return fire

    def period(self, moment: datetime) -> float:
        """Seconds between two fire times from ``moment`` (for the jitter)."""
        if self.interval is not None:
            return self.interval
        first = self.next_after(moment, moment)
        return (self.next_after(first, first) - first).total_seconds()
