"""Retries: conditions from tables; time budgets for 429/503 and outages, attempts for the
rest; exponential backoff with jitter; Retry-After honoured (and capped)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import pytest

from mirrord import MirrordError, NotFoundError, RateLimitedError, ServerError
from mirrord.errors import ConnectError, NameResolutionError, RegistryError, TLSError
from mirrord.registry import Condition, RetryPolicies, RetryPolicy, condition, retrying

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


# -- conditions and time budgets ---------------------------------------------------------

QUICK = dict(base_delay=0.001, max_delay=0.004, outage_max_delay=0.01, max_wait=0.05)


def test_conditions_come_from_tables_of_statuses_codes_and_classes() -> None:
    assert condition(RateLimitedError("x", retry_after=1)) is Condition.SLOW_DOWN
    assert condition(ServerError("x", status=503)) is Condition.SLOW_DOWN
    assert condition(RegistryError("x", status=400, code="TOOMANYREQUESTS")) is Condition.SLOW_DOWN
    assert condition(ServerError("x", status=502)) is Condition.TRANSIENT
    assert condition(RegistryError("x", status=408)) is Condition.TRANSIENT
    assert condition(NotFoundError("x", status=404, code="BLOB_UPLOAD_UNKNOWN")) is (
        Condition.TRANSIENT
    )
    assert condition(ConnectError("refused")) is Condition.OUTAGE
    assert condition(NameResolutionError("no such host")) is Condition.FINAL
    assert condition(TLSError("bad cert")) is Condition.FINAL
    racy = RegistryError("x", status=400, code="DIGEST_INVALID")
    assert condition(racy) is Condition.FINAL
    assert condition(racy, frozenset({"DIGEST_INVALID"})) is Condition.TRANSIENT


@pytest.mark.anyio
async def test_a_429_storm_is_retried_for_the_budget_not_a_number_of_attempts() -> None:
    """Twenty 429s in a row: far more than `attempts`, well within the time budget."""
    policy = RetryPolicy(attempts=3, budget=30.0, **QUICK)
    waits: list[float] = []
    storm: list[MirrordError] = [RateLimitedError("slow", retry_after=0.001) for _ in range(20)]
    calls, operation = flaky(storm)
    assert await retrying(operation, "op", policy, lambda e, d: waits.append(d)) == "done"
    assert len(calls) == 21 and len(waits) == 20


@pytest.mark.anyio
async def test_the_slow_down_budget_ends_the_retries_and_the_message_says_so() -> None:
    policy = RetryPolicy(budget=0.3, **QUICK)
    calls, operation = flaky([ServerError("busy", status=503) for _ in range(10_000)])
    started = time.monotonic()
    with pytest.raises(ServerError) as caught:
        await retrying(operation, "op", policy)
    assert 0.3 <= time.monotonic() - started < 2.0
    assert len(calls) > 3  # more than `attempts` would allow
    assert "retry_budget 0.3s" in str(caught.value)


@pytest.mark.anyio
async def test_a_retry_after_beyond_the_budget_gives_up_at_once() -> None:
    calls, operation = flaky([RateLimitedError("slow", retry_after=3600)])
    with pytest.raises(RateLimitedError) as caught:
        await retrying(operation, "op", RetryPolicy(budget=300))
    assert len(calls) == 1
    assert "asked to wait 3600s" in str(caught.value)


def test_retry_after_is_capped() -> None:
    assert RetryPolicy(max_wait=60).delay(0, RateLimitedError("x", retry_after=250)) == 60


@pytest.mark.anyio
async def test_connection_failures_are_retried_for_the_outage_budget_with_short_waits() -> None:
    policy = RetryPolicy(attempts=2, outage_budget=0.3, **QUICK)
    waits: list[float] = []
    calls, operation = flaky([ConnectError("refused", registry="m") for _ in range(10_000)])
    with pytest.raises(ConnectError) as caught:
        await retrying(operation, "op", policy, lambda e, d: waits.append(d))
    assert len(calls) > 5 and max(waits) <= 0.01  # outage_max_delay, not max_delay
    assert "outage_budget 0.3s" in str(caught.value)


@pytest.mark.anyio
async def test_each_condition_keeps_its_own_count() -> None:
    """Outages and 429s do not use up the attempts of other temporary errors."""
    policy = RetryPolicy(attempts=3, **QUICK)
    errors: list[MirrordError] = [
        ServerError("a", status=500),
        ConnectError("b"),
        RateLimitedError("c", retry_after=0),
        ServerError("d", status=502),
        ConnectError("e"),
    ]
    calls, operation = flaky(errors)
    assert await retrying(operation, "op", policy) == "done"
    assert len(calls) == 6


@pytest.mark.anyio
async def test_the_failing_registrys_policy_applies() -> None:
    strict = RetryPolicy(outage_budget=0.0, **QUICK)
    policies = RetryPolicies(RetryPolicy(outage_budget=30, **QUICK), {"mirror:5000": strict})
    calls, operation = flaky([ConnectError("down", registry="mirror:5000") for _ in range(5)])
    with pytest.raises(ConnectError):
        await retrying(operation, "op", policies)
    assert len(calls) == 1  # no outage budget for the mirror
    calls, operation = flaky([ConnectError("down", registry="source:5000") for _ in range(5)])
    assert await retrying(operation, "op", policies) == "done"
    assert len(calls) == 6


@pytest.mark.anyio
async def test_a_name_that_does_not_resolve_is_not_retried() -> None:
    calls, operation = flaky([NameResolutionError("cannot reach", registry="nowhere.invalid")])
    with pytest.raises(NameResolutionError):
        await retrying(operation, "op", RetryPolicy(outage_budget=60))
    assert len(calls) == 1
