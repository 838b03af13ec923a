"""Retries: temporary errors only, exponential backoff with jitter, Retry-After honoured."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from mirrord import MirrordError, NotFoundError, RateLimitedError, ServerError
from mirrord.registry import RetryPolicy, retrying

FAST = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.004)


def flaky(errors: list[MirrordError]) -> tuple[list[int], Callable[[], Awaitable[str]]]:
    calls: list[int] = []

    async def operation() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "done"

    return calls, operation


@pytest.mark.anyio
async def test_temporary_errors_are_retried_until_success() -> None:
    waits: list[float] = []
    calls, operation = flaky([ServerError("boom", status=503), ServerError("boom", status=502)])
    result = await retrying(operation, "op", FAST, lambda e, d: waits.append(d))
    assert result == "done" and len(calls) == 3 and len(waits) == 2


@pytest.mark.anyio
async def test_permanent_errors_are_not_retried() -> None:
    calls, operation = flaky([NotFoundError("gone", status=404)])
    with pytest.raises(NotFoundError):
        await retrying(operation, "op", FAST)
    assert len(calls) == 1


@pytest.mark.anyio
async def test_attempts_are_bounded() -> None:
    calls, operation = flaky([ServerError("boom", status=500) for _ in range(10)])
    with pytest.raises(ServerError):
        await retrying(operation, "op", FAST)
    assert len(calls) == 4


def test_backoff_grows_with_full_jitter_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=8.0)
    error = ServerError("x", status=500)
    for attempt, ceiling in [(0, 1.0), (1, 2.0), (2, 4.0), (3, 8.0), (6, 8.0)]:
        delays = {policy.delay(attempt, error) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1, "jitter spreads retries"


def test_retry_after_wins_over_backoff() -> None:
    error = RateLimitedError("slow down", retry_after=7.0)
    assert error.temporary and RetryPolicy().delay(0, error) == 7.0
