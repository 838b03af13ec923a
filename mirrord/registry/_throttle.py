"""Per-registry request pacing: a token bucket, and a pause a 429 imposes on everyone."""

from __future__ import annotations

from dataclasses import dataclass

import anyio

from mirrord.registry._options import RegistryOptions


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


@dataclass(frozen=True)
class RegistryPacing:
    """A registry's request and stream limits and its throttle, shared by its clients.

    Clients of one registry with different credentials (per-repository auth
    entries) share one pacing, so ``max_concurrency``, ``rate`` and a 429's pause
    bound the registry as a whole.
    """

    requests: anyio.CapacityLimiter
    streams: anyio.CapacityLimiter
    throttle: Throttle

    @classmethod
    def for_options(cls, options: RegistryOptions) -> RegistryPacing:
        slots = max(1, options.max_concurrency)
        return cls(
            anyio.CapacityLimiter(slots), anyio.CapacityLimiter(slots), Throttle(options.rate)
        )
