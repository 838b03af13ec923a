"""Retries, decided from tables of conditions (go-containerregistry's ``transport/error.go``
style), bounded by time where a registry is asking for patience, by attempts otherwise.

Every failure is put in one of four conditions (:func:`condition`):

- ``SLOW_DOWN``: 429 and 503, or the codes ``TOOMANYREQUESTS`` / ``UNAVAILABLE`` (and a
  pull floor reached, see :mod:`._ratelimit`). The registry is not failing, it asks for
  less: retried for ``budget`` seconds from the first such answer, each wait its
  ``Retry-After`` (at most ``max_wait``) or the backoff. A Retry-After beyond what is
  left of the budget gives up at once: waiting would not help.
- ``OUTAGE``: no connection, or the connection broke (a registry restarting). Retried
  for ``outage_budget`` seconds, the backoff capped at ``outage_max_delay`` so the
  registry coming back is noticed within seconds.
- ``TRANSIENT``: any other temporary error (500, 502, 504, 408, ``BLOB_UPLOAD_INVALID``,
  ``BLOB_UPLOAD_UNKNOWN``, a transfer timeout, and per call the codes the caller knows
  to be races):
  ``attempts`` attempts with exponential backoff and full jitter.
- ``FINAL``: everything else, and a host name that does not resolve or a TLS failure:
  raised at once.

Each condition keeps its own count or clock within one :func:`retrying` call. Which
policy applies is the failing registry's (:class:`RetryPolicies`, by ``error.registry``).
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import anyio

from mirrord.errors import (
    ConnectError,
    MirrordError,
    NameResolutionError,
    RateLimitedError,
    RegistryError,
    TLSError,
    TransferTimeoutError,
)

T = TypeVar("T")
log = logging.getLogger("mirrord.retry")


class Condition(enum.Enum):
    SLOW_DOWN = "slow down"
    OUTAGE = "outage"
    TRANSIENT = "transient"
    FINAL = "final"


#: HTTP statuses and OCI error codes by condition (anything else: ``.temporary`` decides).
SLOW_DOWN_STATUSES = frozenset({429, 503})
SLOW_DOWN_CODES = frozenset({"TOOMANYREQUESTS", "UNAVAILABLE"})
TRANSIENT_STATUSES = frozenset({408, 500, 502, 504})
TRANSIENT_CODES = frozenset({"BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"})


def condition(error: MirrordError, transient_codes: frozenset[str] = frozenset()) -> Condition:
    """How ``error`` is retried; ``transient_codes`` adds codes the caller knows pass."""
    if isinstance(error, NameResolutionError | TLSError):
        return Condition.FINAL
    if isinstance(error, TransferTimeoutError):  # it answers, too slowly: not an outage
        return Condition.TRANSIENT
    if isinstance(error, ConnectError):
        return Condition.OUTAGE
    if isinstance(error, RegistryError):
        if error.status in SLOW_DOWN_STATUSES or error.code in SLOW_DOWN_CODES:
            return Condition.SLOW_DOWN
        if error.status in TRANSIENT_STATUSES or error.code in TRANSIENT_CODES | transient_codes:
            return Condition.TRANSIENT
    return Condition.TRANSIENT if error.temporary else Condition.FINAL


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """One registry's retry limits (seconds). See the module docstring."""

    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 20.0
    budget: float = 300.0
    outage_budget: float = 120.0
    max_wait: float = 60.0
    outage_max_delay: float = 5.0

    def for_error(self, error: MirrordError) -> RetryPolicy:
        return self

    def backoff(self, attempt: int, ceiling: float | None = None) -> float:
        """Exponential backoff with full jitter (half to all of the step) before retry
        ``attempt + 1``."""
        top = min(ceiling or self.max_delay, self.base_delay * (2**attempt))
        return random.uniform(top / 2, top)

    def delay(self, attempt: int, error: MirrordError) -> float:
        """Seconds to wait before attempt ``attempt + 1`` (Retry-After wins when given)."""
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            return min(error.retry_after, self.max_wait)
        return self.backoff(attempt)


@dataclass(frozen=True)
class RetryPolicies:
    """The policy of each registry (by ``host[:port]``) and the default for the others
    (and for errors that name no registry)."""

    default: RetryPolicy = RetryPolicy()
    registries: Mapping[str, RetryPolicy] = field(default_factory=dict)

    def for_error(self, error: MirrordError) -> RetryPolicy:
        registry = error.registry if isinstance(error, RegistryError) else ""
        return self.registries.get(registry, self.default)


class PolicySource(Protocol):
    def for_error(self, error: MirrordError) -> RetryPolicy: ...


DEFAULT_RETRY = RetryPolicy()


class _Tries:
    """The retries of one :func:`retrying` call: a count per condition, and when the
    first failure of each time-bounded condition came."""

    def __init__(self, transient_codes: frozenset[str]) -> None:
        self.transient_codes = transient_codes
        self.counts: dict[Condition, int] = {}
        self.since: dict[Condition, float] = {}

    def next_delay(self, error: MirrordError, policy: RetryPolicy) -> tuple[float | None, str]:
        """Seconds to wait before trying again, or None and why not."""
        kind = condition(error, self.transient_codes)
        done = self.counts.get(kind, 0)
        self.counts[kind] = done + 1
        now = anyio.current_time()
        first = self.since.setdefault(kind, now)
        if kind is Condition.FINAL:
            return None, ""
        if kind is Condition.TRANSIENT:
            if done + 1 >= policy.attempts:
                return None, f"gave up after {policy.attempts} attempts"
            return policy.delay(done, error), f"retry {done + 1}/{policy.attempts - 1}"
        budget = policy.budget if kind is Condition.SLOW_DOWN else policy.outage_budget
        name = "retry_budget" if kind is Condition.SLOW_DOWN else "outage_budget"
        left = budget - (now - first)
        if kind is Condition.SLOW_DOWN:
            delay = policy.delay(done, error)
            asked = error.retry_after if isinstance(error, RateLimitedError) else None
            if asked is not None and asked > left:
                return None, f"asked to wait {asked:.0f}s, more than is left of {name} {budget:g}s"
        else:
            delay = policy.backoff(done, policy.outage_max_delay)
        if left <= 0:
            return None, f"still failing after {now - first:.0f}s, {name} {budget:g}s"
        return min(delay, max(left, 0.0)), f"{kind.value} {now - first:.0f}s of {budget:g}s"


async def retrying(
    operation: Callable[[], Awaitable[T]],
    what: str,
    policy: PolicySource = DEFAULT_RETRY,
    on_wait: Callable[[MirrordError, float], None] | None = None,
    *,
    transient_codes: frozenset[str] = frozenset(),
) -> T:
    """Run ``operation``; on a failure :func:`condition` allows, wait and try again, within
    the failing registry's policy. A failure given up on is raised with why appended."""
    tries = _Tries(transient_codes)
    while True:
        try:
            return await operation()
        except MirrordError as error:
            delay, why = tries.next_delay(error, policy.for_error(error))
            if delay is None:
                if why:
                    _append(error, why)
                raise
            log.warning("%s: %s; %s, next try in %.1fs", what, error, why, delay)
            if on_wait is not None:
                on_wait(error, delay)
            await anyio.sleep(delay)


def _append(error: MirrordError, why: str) -> None:
    """Say in ``error``'s message why it was not retried (once, however many layers)."""
    text = str(error)
    if why not in text and error.args:
        error.args = (f"{text} ({why})", *error.args[1:])
