"""Schedules and durations of the configuration: Go durations, cron, intervals. Pure."""

from __future__ import annotations

import re

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
    return sum(float(n) * _DURATION_UNITS[u] for n, u in re.findall(_DURATION_PART, text))


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
                # APScheduler refuses a step wider than the range it steps through.
                first = values[0] if values else low
                last = values[1] if len(values) == 2 else (6 if index == 4 else high)
                if not 1 <= int(step) <= max(1, last - first):
                    raise ValueError(
                        f"invalid {what} step {item!r} in {expr!r} "
                        f"(at most {max(1, last - first)} here)"
                    )


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
    """Seconds between runs for an interval schedule (``15m``); None for cron."""
    return parse_duration(expr) if _DURATION_RE.fullmatch(expr.strip()) else None
