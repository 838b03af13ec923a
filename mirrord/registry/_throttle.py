"""Per-registry request pacing: a token bucket, a pause a 429 imposes on everyone, an
adaptive concurrency limit (AIMD), and the pull floor of :mod:`._ratelimit`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import anyio

from mirrord.registry._errors import parse_retry_after
from mirrord.registry._options import RegistryOptions
from mirrord.registry._ratelimit import PullFloor

log = logging.getLogger("mirrord.throttle")

MAX_PAUSE = 60.0  # the longest a Retry-After pauses a whole registry at once


class Throttle:
    """At most ``rate`` requests a second (None: unlimited), bursting up to ``burst``.

    :meth:`pause` holds every request to this registry until a moment has passed;
    a 429's Retry-After calls it, so one rate-limited request slows all of them.
    """

    def __init__(self, rate: float | None = None, burst: int | None = None) -> None:
        self.rate = rate
        self.capacity = float(burst or max(1, int(rate or 1)))
        self._tokens = self.capacity
        self._updated = 0.0
        self._paused_until = 0.0
        self._lock = anyio.Lock()
        self.waited = 0.0

    def pause(self, seconds: float) -> None:
        seconds = min(max(seconds, 0.0), MAX_PAUSE)
        self._paused_until = max(self._paused_until, anyio.current_time() + seconds)

    async def wait(self) -> None:
        delay = self._paused_until - anyio.current_time()
        if delay > 0:
            self.waited += delay
            await anyio.sleep(delay)
        if self.rate is None:
            return
        async with self._lock:
            now = anyio.current_time()
            if self._updated:
                self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            if self._tokens < 1:
                delay = (1 - self._tokens) / self.rate
                self.waited += delay
                await anyio.sleep(delay)
                self._updated = anyio.current_time()
                self._tokens = 1
            self._tokens -= 1


class AdaptiveLimit:
    """AIMD on a registry's request limiter: a "slow down" answer (429, 503) halves the
    requests allowed in flight, at most once per ``cooldown`` seconds (the answers to
    requests sent before the cut say nothing new); each run of ``limit`` successes adds
    one back, up to ``ceiling`` (``max_concurrency``). Requests in flight over a lowered
    limit finish; new ones wait for a slot."""

    def __init__(self, limiter: anyio.CapacityLimiter, ceiling: int, cooldown: float = 1.0):
        self.limiter = limiter
        self.ceiling = ceiling
        self.cooldown = cooldown
        self.cuts = 0
        self._successes = 0
        self._last_cut: float | None = None

    @property
    def limit(self) -> int:
        return int(self.limiter.total_tokens)

    def slow_down(self, registry: str) -> None:
        now = anyio.current_time()
        if self._last_cut is not None and now - self._last_cut < self.cooldown:
            return
        self._last_cut = now
        self._successes = 0
        lowered = max(1, self.limit // 2)
        if lowered < self.limit:
            self.cuts += 1
            log.info("%s asks to slow down: %d requests in flight at most", registry, lowered)
            self.limiter.total_tokens = lowered

    def success(self) -> None:
        if self.limit >= self.ceiling:
            return
        self._successes += 1
        if self._successes >= self.limit:
            self._successes = 0
            self.limiter.total_tokens = self.limit + 1


@dataclass(frozen=True)
class RegistryPacing:
    """A registry's request and stream limits, its throttle, its adaptive limit and its
    pull floor, shared by its clients.

    Clients of one registry with different credentials (per-repository auth
    entries) share one pacing, so ``max_concurrency``, ``rate``, a 429's pause, the
    AIMD limit and Docker Hub's pull allowance bound the registry as a whole.
    """

    requests: anyio.CapacityLimiter
    streams: anyio.CapacityLimiter
    throttle: Throttle
    adaptive: AdaptiveLimit
    pulls: PullFloor = field(default_factory=PullFloor)

    @classmethod
    def for_options(cls, options: RegistryOptions) -> RegistryPacing:
        slots = max(1, options.max_concurrency)
        requests = anyio.CapacityLimiter(slots)
        return cls(
            requests,
            anyio.CapacityLimiter(slots),
            Throttle(options.rate),
            AdaptiveLimit(requests, slots),
            PullFloor(options.ratelimit_min),
        )

    def observe(
        self, registry: str, status: int, headers: Mapping[str, str], sent_at: float
    ) -> None:
        """What an answer to a request sent at ``sent_at`` (``time.time``) tells the
        pacing: pulls left; a 429 (or a 503 with Retry-After) pauses the registry, a
        429/503 lowers its concurrency, a success recovers it."""
        self.pulls.observe(registry, headers, sent_at)
        if status in (429, 503):
            retry_after = parse_retry_after(headers.get("retry-after"))
            if retry_after is not None or status == 429:
                self.throttle.pause(retry_after if retry_after is not None else 1.0)
            self.adaptive.slow_down(registry)
        elif status < 400:
            self.adaptive.success()
