"""Docker Hub's pull allowance: the ``ratelimit-limit`` / ``ratelimit-remaining`` headers.

Docker Hub answers manifest requests with ``ratelimit-remaining: 76;w=21600`` (76 pulls
left in a rolling window of 21600 s) and ``ratelimit-limit: 100;w=21600``; a manifest
``GET`` is a pull, a ``HEAD`` is not. Like regsync's ``ratelimit.min``, mirrord keeps a
floor: once fewer than ``floor`` pulls are left it starts no new manifest ``GET`` at
that registry until the window has passed since the figure was read (the answers to
``HEAD`` requests, which planning sends anyway, lift the pause as soon as they report
more room). A ``GET`` refused meanwhile raises :class:`~mirrord.errors.RateLimitedError`
saying when pulls resume, which the retries treat as a registry asking to slow down.

Answers to concurrent requests arrive in any order: a figure higher than the last one
read is believed only from a request sent after that one was read (an earlier request's
answer, overtaken in flight, carries a stale count).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from mirrord.errors import RateLimitedError

log = logging.getLogger("mirrord.ratelimit")

_FIGURE = re.compile(r"\s*(\d{1,9})\s*(?:;\s*w\s*=\s*(\d{1,9})\s*)?")
MAX_WINDOW = 7 * 24 * 3600.0  # a longer window than a week is not believed
DEFAULT_WINDOW = 6 * 3600.0  # Docker Hub's, for a figure that names none


def parse_figure(value: str | None) -> tuple[int, float | None] | None:
    """``"76;w=21600"`` -> ``(76, 21600.0)``; ``"76"`` -> ``(76, None)``; else None.

    Only the first of several comma-separated figures counts (the header may list a
    policy per window); anything malformed or out of bounds is ignored.
    """
    if not value:
        return None
    match = _FIGURE.fullmatch(value.split(",")[0])
    if match is None:
        return None
    window = float(match.group(2)) if match.group(2) else None
    if window is not None and not 0 < window <= MAX_WINDOW:
        window = None
    return int(match.group(1)), window


@dataclass
class PullFloor:
    """A registry's last reported pull allowance and the floor mirrord keeps above.

    ``floor`` 0 only records the figures (for the daemon's metric). Times are wall
    clock (``time.time``): the figures outlive a run in the daemon.
    """

    floor: int = 0
    remaining: int | None = None
    limit: int | None = None
    window: float = DEFAULT_WINDOW
    seen_at: float = 0.0
    _announced: float = 0.0

    def observe(
        self, registry: str, headers: Mapping[str, str], sent_at: float | None = None
    ) -> None:
        """Read the headers of one answer (any method, any status) to a request sent at
        ``sent_at`` (wall clock; None: after every answer read so far)."""
        remaining = parse_figure(headers.get("ratelimit-remaining"))
        if remaining is None:
            return
        if (self.remaining is not None and remaining[0] > self.remaining
                and sent_at is not None and sent_at < self.seen_at):
            return  # overtaken in flight by the answer read last
        limit = parse_figure(headers.get("ratelimit-limit"))
        self.remaining = remaining[0]
        self.window = remaining[1] or (limit[1] if limit else None) or DEFAULT_WINDOW
        self.limit = limit[0] if limit else self.limit
        self.seen_at = time.time()
        resume = self.resumes_at()
        if resume is not None and self._announced != resume:
            self._announced = resume
            log.warning("%s: %s", registry, self._explain(resume))

    def resumes_at(self, now: float | None = None) -> float | None:
        """When new pulls may start again (None: they may now)."""
        if self.remaining is None or self.remaining >= self.floor:
            return None
        resume = self.seen_at + self.window
        return resume if resume > (now if now is not None else time.time()) else None

    def check(self, registry: str) -> None:
        """Raise RateLimitedError when a new pull (manifest GET) must not start now."""
        now = time.time()
        resume = self.resumes_at(now)
        if resume is not None:
            raise RateLimitedError(
                self._explain(resume), retry_after=resume - now, registry=registry
            )

    def _explain(self, resume: float) -> str:
        of = f" of {self.limit}" if self.limit is not None else ""
        when = datetime.fromtimestamp(resume, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"{self.remaining} pulls left{of} in the {self.window:.0f}s window, below "
            f"ratelimit_min {self.floor}: no new manifest pulls until {when}"
        )
