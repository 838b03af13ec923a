"""Sizes and ages for people: ``412.3 MiB``, ``3 minutes ago``; sizes from them (``4MiB``). Pure."""

from __future__ import annotations

import re
from datetime import datetime


def human_bytes(count: float) -> str:
    """``512 B``, ``1.5 KiB``, ``412.3 MiB``, ``2.0 GiB`` (binary units, GiB at most)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(count) < 1024 or unit == "GiB":
            return f"{count:.1f} {unit}" if unit != "B" else f"{int(count)} B"
        count /= 1024
    return f"{count:.1f} GiB"


def human_duration(seconds: float) -> str:
    """``Less than a second``, ``3 minutes``, ``About an hour``, ``2 days``…"""
    whole = int(seconds)
    if whole < 1:
        return "Less than a second"
    if whole == 1:
        return "1 second"
    if whole < 60:
        return f"{whole} seconds"
    minutes = whole // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def ago(moment: datetime, now: datetime) -> str:
    return f"{human_duration((now - moment).total_seconds())} ago"


_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
_SIZE_UNITS |= {"k": 1024, "ki": 1024, "kib": 1024, "m": 1024**2, "mi": 1024**2}
_SIZE_UNITS |= {"mib": 1024**2, "g": 1024**3, "gi": 1024**3, "gib": 1024**3}
_SIZE_RE = re.compile(r"([0-9]{1,15})\s*([a-zA-Z]{0,3})")


def parse_size(text: str) -> int:
    """Bytes from ``4194304``, ``4MiB``, ``512KiB``, ``4M`` (binary) or ``5MB`` (decimal).

    ValueError naming the text for anything else."""
    match = _SIZE_RE.fullmatch(text.strip())
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"invalid size {text[:40]!r} (a number of bytes, or like 4MiB, 512KiB)")
    return int(match.group(1)) * _SIZE_UNITS[unit]
