"""Retries with exponential backoff and full jitter, for temporary errors only."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import anyio

from mirrord.errors import MirrordError, RateLimitedError

T = TypeVar("T")
log = logging.getLogger("mirrord.retry")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0

    def delay(self, attempt: int, error: MirrordError) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (Retry-After wins when given)."""
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return min(error.retry_after, 300.0)
        ceiling = min(self.max_delay, self.base_delay * (2**attempt))
        return random.uniform(ceiling / 2, ceiling)


DEFAULT_RETRY = RetryPolicy()


async def retrying(
    operation: Callable[[], Awaitable[T]],
    what: str,
    policy: RetryPolicy = DEFAULT_RETRY,
    on_wait: Callable[[MirrordError, float], None] | None = None,
) -> T:
    """Run ``operation``; on a temporary MirrordError wait and try again, up to the policy."""
    attempt = 0
    while True:
        try:
            return await operation()
        except MirrordError as error:
            attempt += 1
            if not error.temporary or attempt >= policy.attempts:
                raise
            delay = policy.delay(attempt - 1, error)
            log.warning(
                "%s: %s; retry %d/%d in %.1fs", what, error, attempt, policy.attempts - 1, delay
            )
            if on_wait is not None:
                on_wait(error, delay)
            await anyio.sleep(delay)
