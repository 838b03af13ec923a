"""The daemon's runs: a stream's sync or the pruner, each under the shared run lock.

Runs share the state's run lock with ``mirrord sync`` through a
:class:`~mirrord.daemon._gate.RunGate`. They share one :class:`ClientPool` per
configuration, so each registry's rate limit and concurrency hold across
streams; a reload brings a new pool and the old one closes after its last run.
Each sync run is one job in the store (:func:`~mirrord.sync.sync_once`); a
cancelled run records its job as Failed, "interrupted".
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import anyio

from mirrord.config import Config, StreamConfig
from mirrord.core.imagestream import ImageStream
from mirrord.core.units import human_bytes
from mirrord.daemon._claim import hold_after, stream_claim
from mirrord.daemon._gate import RunGate
from mirrord.daemon._metrics import CURRENT_STREAM, Metrics
from mirrord.errors import MirrordError
from mirrord.prune import PruneResult, run_prune
from mirrord.state import Store
from mirrord.sync import ImportedStream, SyncResult, sync_once
from mirrord.sync import stored_streams as stored_import_streams
from mirrord.transports import ClientPool

log = logging.getLogger("mirrord.daemon")

QUEUED_SCAN = 500  # newest jobs searched for queued ones (at most one per stream)


def stored_streams(config: Config, images: Sequence[ImageStream]) -> tuple[StreamConfig, ...]:
    """Streams created by ``mirrord import-image``, not in the file: scheduled or not,
    every one can be triggered. Blocks (reads the stored specs): call it in a worker
    thread."""
    configured = {s.name for s in config.streams}
    wanted = [s for s in images if s.created_by == "import-image" and s.name not in configured]
    return stored_import_streams(config, wanted) if wanted else ()


def is_scheduled(stream: StreamConfig) -> bool:
    """Configured streams run on their schedule; import-image ones when ``--scheduled``."""
    return not isinstance(stream, ImportedStream) or stream.scheduled


def ever_synced(image: ImageStream) -> bool:
    return any(t.items or t.conditions for t in image.tags)


class Runner:
    """Runs streams and the pruner with the configuration in effect (``config``)."""

    def __init__(
        self,
        config: Config,
        store: Store,
        metrics: Metrics,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.config = config  # the file's streams and the stored scheduled ones
        self.store = store
        self.metrics = metrics
        self._on_change = on_change
        self._pool = self._new_pool(config)
        self._leases: dict[ClientPool, int] = {}
        self._retired_waits: dict[str, float] = {}
        shared = (lambda: store.acquire_run_lock(shared=True)) if store.several_daemons else None
        self.gate = RunGate(
            store.acquire_run_lock, on_acquire=self.abandon_stale, new_shared=shared
        )
        self._stopping = False
        # Each stream's last run that HEADed every mirror tag (time.monotonic()).
        self._verified: dict[str, float] = {}
        self._waiting: set[anyio.CancelScope] = set()

    def _new_pool(self, config: Config) -> ClientPool:
        return ClientPool(config, on_request=self.metrics.on_request)

    async def use(self, config: Config, *, new_pool: bool) -> None:
        """Run with ``config`` from now on; ``new_pool`` after a reload (new registry
        settings): the old pool closes when its last run ends."""
        self.config = config
        if new_pool:
            old, self._pool = self._pool, self._new_pool(config)
            if old not in self._leases:
                await self._retire(old)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[tuple[Config, ClientPool]]:
        """The configuration and client pool a run uses, kept open until it ends."""
        config, pool = self.config, self._pool
        self._leases[pool] = self._leases.get(pool, 0) + 1
        try:
            yield config, pool
        finally:
            self._leases[pool] -= 1
            if not self._leases[pool]:
                del self._leases[pool]
                if pool is not self._pool:
                    await self._retire(pool)

    async def _retire(self, pool: ClientPool) -> None:
        for registry, seconds in _waits(pool).items():
            self._retired_waits[registry] = self._retired_waits.get(registry, 0.0) + seconds
        with anyio.CancelScope(shield=True):
            await pool.aclose()

    async def aclose(self) -> None:
        for pool in [self._pool, *self._leases]:
            with anyio.CancelScope(shield=True):
                await pool.aclose()

    def throttle_waits(self) -> dict[str, float]:
        """Seconds each registry's throttle held requests back, since the start."""
        totals = dict(self._retired_waits)
        for pool in {self._pool, *self._leases}:
            for registry, seconds in _waits(pool).items():
                totals[registry] = totals.get(registry, 0.0) + seconds
        return totals

    def pacing_figures(self) -> dict[str, tuple[int, int | None]]:
        """Per registry of the pool in use: requests allowed in flight, pulls left."""
        return {
            registry: (pacing.adaptive.limit, pacing.pulls.remaining)
            for registry, pacing in self._pool.pacings().items()
        }

    # -- runs ----------------------------------------------------------------------------

    def stop(self) -> None:
        """Runs still waiting for the run lock give up; runs under way finish the copies
        they have started and start no more."""
        self._stopping = True
        for scope in self._waiting:
            scope.cancel()

    async def _admitted(
        self, stack: AsyncExitStack, gate: AbstractAsyncContextManager[None], what: str
    ) -> bool:
        """Enter ``gate`` (wait for the run lock) on ``stack``; False if stopped meanwhile."""
        if self._stopping:
            return False
        with anyio.CancelScope() as scope:
            self._waiting.add(scope)
            try:
                await stack.enter_async_context(gate)
            finally:
                self._waiting.discard(scope)
        if scope.cancelled_caught:
            log.info("%s: not started, the daemon is stopping", what)
        return not scope.cancelled_caught

    async def run_stream(self, name: str, reason: str) -> None:
        what = f"{reason} run of {name}"
        async with AsyncExitStack() as stack:
            if not await self._admitted(stack, self.gate.shared(what), what):
                return
            config, pool = await stack.enter_async_context(self.lease())
            stream = next((s for s in config.streams if s.name == name), None)
            if stream is None:
                log.info("%s: no longer configured; run skipped", name)
                await self.fail_queued(name, "the stream no longer exists")
                return
            # Leases divide a fleet's work; one daemon per state (SQLite, its daemon lock)
            # has nobody to share with, and a lease its previous process held after a
            # run would only delay a trigger queued before a restart.
            if self.store.several_daemons:
                hold = hold_after(stream.schedule, reason)
                claim = stream_claim(
                    self.store, name, config.lease, hold=hold, watcher=self.metrics
                )
                if not await stack.enter_async_context(claim):
                    log.info("%s: another worker holds the stream; %s skipped", name, what)
                    self.metrics.lease_skipped()
                    return
                await self.store.abandon_running_jobs(stream=name)
            await self._sync(config, pool, stream, reason)

    def _verify_due(self, config: Config, name: str, now: float) -> bool:
        """True when this run of ``name`` HEADs every mirror tag: its first since the
        daemon started, then once per ``verify_every`` (never when that is 0)."""
        last = self._verified.get(name)
        if config.verify_every == 0 or (last is not None and now - last < config.verify_every):
            return False
        self._verified[name] = now
        return True

    async def _sync(self, config: Config, pool: ClientPool, stream: StreamConfig, why: str) -> None:
        context = CURRENT_STREAM.set(stream.name)
        result = SyncResult()
        started = time.monotonic()
        outcome = "failed"
        self.metrics.in_progress.inc()
        log.info("%s: %s run started", stream.name, why)
        self._on_change()
        try:
            await sync_once(
                config,
                self.store,
                pool,
                [stream],
                result=result,
                should_stop=lambda: self._stopping,
                verify=self._verify_due(config, stream.name, started),
            )
            outcome = "succeeded" if result.ok else "failed"
        except anyio.get_cancelled_exc_class():
            outcome = "interrupted"
            raise
        except MirrordError as error:
            log.error("%s: run failed: %s", stream.name, error)
        finally:
            CURRENT_STREAM.reset(context)
            self.metrics.in_progress.dec()
            seconds = result.seconds = result.seconds or time.monotonic() - started
            self.metrics.run_finished(stream.name, result, seconds, outcome)
            log.info("%s: run %s: %s", stream.name, outcome, result.summary_line())
            self._on_change()
        await self._count_failing(stream.name)

    async def _count_failing(self, name: str) -> None:
        try:
            stored = await self.store.get_stream(name)
        except MirrordError as error:
            log.warning("%s: cannot read the stream's tags for the metrics: %s", name, error)
            return
        if stored is not None:
            self.metrics.tags_failing([stored])

    async def run_prune(self, name: str, reason: str) -> None:
        what = f"{reason} prune"
        async with AsyncExitStack() as stack:
            if not await self._admitted(stack, self.gate.exclusive(what), what):
                return
            config, pool = await stack.enter_async_context(self.lease())
            log.info("prune started (%s)", reason)
            result = await run_prune(config, self.store, pool, confirm=True)
        self.metrics.prune_finished(result)
        if result.ok:
            log.info("prune finished: %s", prune_sentence(result))
        else:
            log.error("prune failed: %s: %s", result.reason, result.message)

    async def fail_queued(self, name: str, message: str) -> None:
        """Close ``name``'s queued sync job (a trigger no run will serve) as Failed."""
        for job in await self.store.list_jobs(limit=QUEUED_SCAN, kind="sync"):
            if job.stream == name and job.status == "Queued":
                await self.store.finish_job(job.id, "Failed", message=message)

    # -- jobs a dead process left Running ---------------------------------------------------

    async def abandon_stale(self) -> None:
        """Under the run lock: jobs still Running belong to a process that died."""
        count = await self.store.abandon_running_jobs()
        if count:
            log.warning("marked %d jobs left Running by a dead process as Failed", count)

    async def cleanup_stale(self) -> None:
        """:meth:`abandon_stale` if the run lock is free now (else a one-shot sync runs)."""
        lock = self.store.acquire_run_lock()
        if not await lock.try_acquire_async():
            return
        try:
            with anyio.CancelScope(shield=True):
                await self.abandon_stale()
        finally:
            lock.release()


def prune_sentence(result: PruneResult) -> str:
    """``3 tag revisions and 2 manifests deleted, 0 blobs (0 B) freed``."""
    counts = result.counts()
    return (
        f"{_plural(counts['tagRevisions'], 'tag revision')} and "
        f"{_plural(counts['manifests'], 'manifest')} deleted, "
        f"{_plural(counts['blobs'], 'blob')} ({human_bytes(counts['bytes'])}) freed"
    )


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _waits(pool: ClientPool) -> dict[str, float]:
    # Clients of one registry share its throttle: count each registry's once.
    return {client.registry: client.throttle.waited for client in pool.clients()}
