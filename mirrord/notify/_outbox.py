"""The outbox: queue one event per receiver, deliver what is due, record each outcome."""

from __future__ import annotations

import json
import logging
import math
import random
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import httpx

from mirrord import __version__
from mirrord.config import NotificationConfig
from mirrord.core.imagestream import rfc3339, utc
from mirrord.errors import NotifyError
from mirrord.notify._send import (
    describe_receiver,
    post_event,
    run_command,
)
from mirrord.state import OutboxEvent, ReceiverStatus, Store

log = logging.getLogger("mirrord.notify")


INSTANCE_ID = str(uuid.uuid4())  # this process, like distribution's source.instanceID

_BATCH = 100  # outbox events fetched at a time
_MAX_ERROR = 1000  # characters of a failure message kept in the store


def tag_event(
    *,
    stream: str,
    tag: str,
    repository: str,
    digest: str,
    media_type: str,
    size: int,
    url: str,
    source: str,
    previous_digest: str | None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """One ``push`` event (the distribution notification shape) for a tag that moved.

    ``repository``/``url`` name the image in the mirror, ``source`` the upstream
    reference it came from, ``previous_digest`` what the tag pointed at before
    (None for a new tag). ``target.length`` repeats ``size`` as distribution does.
    """
    moment = utc(now) if now is not None else datetime.now(UTC)
    return {
        "id": str(uuid.uuid4()),
        "timestamp": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "action": "push",
        "target": {
            "mediaType": media_type,
            "digest": digest,
            "size": size,
            "length": size,
            "repository": repository,
            "tag": tag,
            "url": url,
        },
        "source": {
            "addr": socket.gethostname(),
            "instanceID": INSTANCE_ID,
            "stream": stream,
            "upstream": source,
        },
        "previousDigest": previous_digest,
    }


CLUSTER_RESOURCES_CHANGED = "cluster-resources.changed"


def cluster_resources_event(
    directory: str, files: Mapping[str, str], *, now: datetime | None = None
) -> dict[str, Any]:
    """The event for a change of the cluster handoff files: ``files`` maps each file
    name to what happened to it (``written`` or ``removed``) in ``directory``."""
    moment = utc(now) if now is not None else datetime.now(UTC)
    return {
        "id": str(uuid.uuid4()),
        "timestamp": moment.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "action": CLUSTER_RESOURCES_CHANGED,
        "target": {"directory": directory, "files": dict(sorted(files.items()))},
        "source": {"addr": socket.gethostname(), "instanceID": INSTANCE_ID},
    }


def envelope_bytes(event: Mapping[str, Any]) -> bytes:
    """The exact body sent (and signed) for one event: ``{"events": [event]}``."""
    return json.dumps({"events": [dict(event)]}, separators=(",", ":"), sort_keys=True).encode()


def receiver_ids(receivers: Sequence[NotificationConfig]) -> list[str]:
    """Each receiver's :attr:`~mirrord.config.NotificationConfig.receiver_id`, in order."""
    ids = []
    for index, receiver in enumerate(receivers):
        if (receiver.url is None) == (receiver.command is None):
            raise ValueError(f"notification {index} needs exactly one of url or command")
        ids.append(receiver.receiver_id)
    if len(set(ids)) != len(ids):
        raise ValueError("two receivers have the same id; give each of them a distinct name")
    return ids


@dataclass(frozen=True)
class DeliveryReport:
    """One :meth:`Notifier.deliver_due` call: events delivered, failed (to be retried)
    and given up (dead letters). The three counts are disjoint."""

    delivered: int = 0
    failed: int = 0
    dead: int = 0


@dataclass(frozen=True)
class DeliveryCounts:
    """The notifications of one run: ``delivered``, ``failed`` (retried later),
    ``given_up``, and ``waiting`` in the outbox after it."""

    delivered: int = 0
    failed: int = 0
    given_up: int = 0
    waiting: int = 0


@dataclass(frozen=True)
class _Outcome:
    error: str | None = None  # None: delivered
    final: bool = False  # give up now, whatever the attempt count


class Notifier:
    """Queues events for the configured receivers and delivers them from the outbox.

    ``http_timeout`` bounds each HTTP operation (connect, write, read); a
    receiver's own ``timeout`` bounds a whole delivery. Retry ``n`` (1-based)
    waits a random time in ``[d/2, d]`` with ``d = min(max_delay, base_delay *
    2**(n-1))``. Methods raise only for programming errors (and StateError when
    the store itself fails); a receiver's failure is recorded, never raised.
    """

    def __init__(
        self,
        store: Store,
        receivers: Sequence[NotificationConfig],
        *,
        http_timeout: float = 10.0,
        max_attempts: int = 8,
        base_delay: float = 2.0,
        max_delay: float = 600.0,
        max_parallel: int = 8,
    ) -> None:
        if max_attempts < 1 or max_parallel < 1:
            raise ValueError("max_attempts and max_parallel must be at least 1")
        if base_delay <= 0 or max_delay < base_delay or http_timeout <= 0:
            raise ValueError("need 0 < base_delay <= max_delay and http_timeout > 0")
        self._store = store
        self._receivers = dict(zip(receiver_ids(receivers), receivers, strict=True))
        self._http_timeout = http_timeout
        self._max_attempts = max_attempts
        self._base_delay = base_delay
        self._max_delay = max_delay
        self._max_parallel = max_parallel
        # a claim outlives a batch's deliveries (each bounded by the HTTP timeout)
        self._claim_for = max(300.0, 4 * http_timeout)

    @property
    def receivers(self) -> dict[str, str]:
        """Receiver id → a description safe to show (URL origin, or the program)."""
        return {rid: describe_receiver(r) for rid, r in self._receivers.items()}

    def retry_delay(self, attempts: int) -> float:
        """Seconds before the next try after ``attempts`` failed attempts (jittered)."""
        ceiling = min(self._max_delay, self._base_delay * 2 ** max(attempts - 1, 0))
        return random.uniform(ceiling / 2, ceiling)

    async def publish(self, event: Mapping[str, Any], *, now: datetime | None = None) -> None:
        """Queue ``event`` once per receiver that takes its action (due at once)."""
        for rid, receiver in self._receivers.items():
            if event.get("action") in receiver.events:
                await self._store.enqueue_event(event, rid, now=now)

    async def deliver_due(
        self, *, deadline: float | None = None, now: datetime | None = None
    ) -> DeliveryReport:
        """Deliver every event due at ``now`` (default: the current time).

        ``deadline`` is an absolute time on :func:`anyio.current_time`'s clock
        (``time.monotonic()`` under asyncio): no delivery starts after it, and
        those still in flight are abandoned untouched, due again when their claim
        (five minutes at least: :meth:`Store.claim_due_events`) lapses.
        """
        at = utc(now) if now is not None else datetime.now(UTC)
        delivered = failed = dead = 0
        seen: set[int] = set()
        async with self._http_client() as client:
            while deadline is None or anyio.current_time() < deadline:
                # claimed, not just read: daemons sharing one database deliver each once
                due = await self._store.claim_due_events(
                    self._store.worker, claim=self._claim_for, now=at, limit=_BATCH
                )
                batch = [e for e in due if e.id not in seen]
                if not batch:
                    break
                seen.update(e.id for e in batch)
                outcomes = await self._attempt_all(client, batch, deadline)
                for event in batch:
                    if event.id in outcomes:
                        kind = await self._record(event, outcomes[event.id], now)
                        delivered += kind == "delivered"
                        failed += kind == "failed"
                        dead += kind == "dead"
                if len(due) < _BATCH:
                    break
        return DeliveryReport(delivered=delivered, failed=failed, dead=dead)

    # -- one round -------------------------------------------------------------------

    def _http_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self._http_timeout),
            follow_redirects=False,
            headers={"User-Agent": f"mirrord/{__version__}"},
        )

    async def _attempt_all(
        self, client: httpx.AsyncClient, batch: list[OutboxEvent], deadline: float | None
    ) -> dict[int, _Outcome]:
        """Try each event once, in parallel; events cut off by the deadline get no outcome."""
        outcomes: dict[int, _Outcome] = {}
        limiter = anyio.CapacityLimiter(self._max_parallel)

        async def attempt(event: OutboxEvent, receiver: NotificationConfig) -> None:
            async with limiter:
                try:
                    await self._send(client, event.receiver, receiver, event.payload)
                except NotifyError as exc:
                    outcomes[event.id] = _Outcome(str(exc)[:_MAX_ERROR])
                else:
                    outcomes[event.id] = _Outcome()

        with anyio.CancelScope(deadline=math.inf if deadline is None else deadline):
            async with anyio.create_task_group() as tg:
                for event in batch:
                    receiver = self._receivers.get(event.receiver)
                    if receiver is None:
                        message = f"{event.receiver}: no such receiver in the configuration"
                        outcomes[event.id] = _Outcome(message, final=True)
                    else:
                        tg.start_soon(attempt, event, receiver)
        return outcomes

    async def _record(self, event: OutboxEvent, outcome: _Outcome, now: datetime | None) -> str:
        if outcome.error is None:
            await self._store.mark_delivered(event.id, now=now)
            log.debug("notification %d delivered to %s", event.id, event.receiver)
            return "delivered"
        attempts = event.attempts + 1
        if outcome.final or attempts >= self._max_attempts:
            await self._store.mark_failed(event.id, attempts, None, outcome.error)
            log.error(
                "notification %d: giving up after %d attempt(s): %s",
                event.id,
                attempts,
                outcome.error,
            )
            return "dead"
        delay = self.retry_delay(attempts)
        base = utc(now) if now is not None else datetime.now(UTC)
        await self._store.mark_failed(
            event.id, attempts, base + timedelta(seconds=delay), outcome.error
        )
        log.warning(
            "notification %d: %s; attempt %d/%d, next in %.0fs",
            event.id,
            outcome.error,
            attempts,
            self._max_attempts,
            delay,
        )
        return "failed"

    async def _send(
        self,
        client: httpx.AsyncClient,
        rid: str,
        receiver: NotificationConfig,
        payload: Mapping[str, Any],
    ) -> None:
        body = envelope_bytes(payload)
        if receiver.url is not None:
            secret_file, timeout = receiver.secret_file, receiver.timeout
            await post_event(client, rid, receiver.url, secret_file, body, timeout)
        elif receiver.command is not None:
            await run_command(rid, receiver.command, body, receiver.timeout)


# -- status --------------------------------------------------------------------------


async def status_document(
    store: Store | None, receivers: Sequence[NotificationConfig], *, failures: int = 20
) -> dict[str, Any]:
    """What ``mirrord notifications -o json`` and ``/api/v1/notifications`` show.

    ``receivers``: one entry per configured receiver and per receiver no longer
    configured that still has events, with the outbox counts; ``failures``: the
    newest undelivered events that failed (retrying or given up), with why. Without
    a ``store`` (none created yet) every configured receiver shows zeros.
    """
    configured = {r.receiver_id: describe_receiver(r) for r in receivers}
    statuses = {s.receiver: s for s in await store.receiver_statuses()} if store is not None else {}
    rows = []
    for rid in [*configured, *sorted(set(statuses) - set(configured))]:
        status = statuses.get(rid, ReceiverStatus(rid))
        rows.append({
            "receiver": rid,
            "target": configured.get(rid, "(no longer configured)"),
            "pending": status.pending,
            "retrying": status.retrying,
            "givenUp": status.given_up,
            "delivered": status.delivered,
            "lastDelivered": rfc3339(status.last_delivered) if status.last_delivered else None,
            "lastError": status.last_error,
        })
    failed = [
        {
            "id": event.id,
            "receiver": event.receiver,
            "action": event.payload.get("action"),
            "stream": event.payload.get("source", {}).get("stream"),
            "tag": event.payload.get("target", {}).get("tag"),
            "digest": event.payload.get("target", {}).get("digest"),
            "attempts": event.attempts,
            "givenUp": event.dead,
            "nextAttempt": rfc3339(event.next_attempt) if event.next_attempt else None,
            "error": event.last_error,
        }
        for event in (await store.failed_events(limit=failures) if store is not None else [])
    ]
    return {"receivers": rows, "failures": failed}

