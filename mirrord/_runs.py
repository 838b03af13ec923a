"""The async bodies of the commands: open the state, take the lock, run, record."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

import anyio

from mirrord._connect import ClientPool, open_destination
from mirrord._output import live_progress, print_plan, print_summary, summary
from mirrord._recorder import Recorder
from mirrord.cluster import refresh as refresh_cluster_resources
from mirrord.config import Config, StreamConfig
from mirrord.copy import Imported, StreamPlan
from mirrord.credentials import Credential
from mirrord.credentials import login as keyring_login
from mirrord.registry import RegistryClient
from mirrord.state import Store, open_store, store_exists
from mirrord.sync import Syncer, SyncResult

if TYPE_CHECKING:
    from mirrord.notify import Notifier

log = logging.getLogger("mirrord")

NOTIFY_DEADLINE = 30.0  # seconds a one-shot sync spends delivering notifications
OUTBOX_RETENTION = timedelta(days=7)  # delivered notifications are kept this long


async def run_sync_command(
    config: Config,
    streams: Sequence[StreamConfig],
    *,
    dry_run: bool,
    output: str,
    wait: bool,
    progress: bool,
) -> bool:
    """``mirrord sync``: True when every selected tag is in the mirror.

    A run that cannot start (the mirror unreachable, the state unusable, the lock
    held) raises; the CLI prints the error (and, with ``-o json|yaml``, a document
    naming it on stdout, as for a configuration that does not load).
    """
    result = await _sync_or_plan(config, streams, dry_run, wait, progress)
    if dry_run:
        print_plan(result)
    print_summary(result, output)
    return result.ok


async def _sync_or_plan(
    config: Config, streams: Sequence[StreamConfig], dry_run: bool, wait: bool, progress: bool
) -> SyncResult:
    async with AsyncExitStack() as stack:
        store: Store | None = None
        if not dry_run or store_exists(config.state_dir):  # a dry run creates no state
            store = await anyio.to_thread.run_sync(open_store, config.state_dir)
            stack.push_async_callback(store.aclose)
        pool = await stack.enter_async_context(ClientPool(config))
        if dry_run:
            return await plan_once(config, store, pool, list(streams))
        assert store is not None
        await stack.enter_async_context(store.acquire_run_lock(wait=wait))
        await store.abandon_running_jobs("interrupted: the process running it died")
        return await sync_once(config, store, pool, list(streams), progress=progress)


async def plan_once(
    config: Config, store: Store | None, pool: ClientPool, streams: list[StreamConfig]
) -> SyncResult:
    """A dry run: what a sync would copy (and its bytes), leave alone, fail on, and the
    recorded tags gone upstream. Changes nothing; ``store`` may be None (no state yet)."""
    legacy = partial(_imported_from, store) if store is not None else None
    result = await Syncer(config, pool, legacy_sources=legacy).run(streams, dry_run=True)
    if store is None:
        return result
    for plan in result.plans:
        if gone := await _gone_upstream(store, plan):
            delete = config.stream(plan.stream).delete_removed_tags
            result.gone_upstream[plan.stream] = (gone, delete)
    return result


async def _gone_upstream(store: Store, plan: StreamPlan) -> tuple[str, ...]:
    """Tags the store has for the stream (not yet marked removed) that the source lacks."""
    if plan.all_tags is None:  # the stream did not list the source's tags
        return ()
    known = await store.get_stream(plan.stream)
    upstream = set(plan.all_tags)
    return tuple(
        t.tag
        for t in (known.tags if known else ())
        if t.tag not in upstream and not t.removed and t.items
    )


async def sync_once(
    config: Config,
    store: Store,
    pool: ClientPool,
    streams: list[StreamConfig],
    *,
    progress: bool = False,
    result: SyncResult | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    complete: bool = True,
) -> SyncResult:
    """One recorded sync run (a job in the store), as the CLI and the daemon run it.

    ``should_stop`` is asked before each copy starts (the daemon's SIGTERM).
    ``complete``: the streams carry their whole selection, so a stream with no
    failure is marked synced (False for ``import-image`` of one tag among several).
    """
    destination = await open_destination(config, pool)
    notifier = None
    if config.notifications:
        from mirrord.notify import Notifier

        notifier = Notifier(store, config.notifications)
    recorder = Recorder(config, store, destination, notifier, complete=complete)
    syncer = Syncer(
        config,
        pool,
        on_result=recorder,
        legacy_sources=lambda stream, tag: _imported_from(store, stream, tag),
        should_stop=should_stop,
    )
    result = result or SyncResult()
    await recorder.prepare(streams)
    job = await store.start_job("sync", streams[0].name if len(streams) == 1 else None)
    try:
        with live_progress(result, progress):
            await syncer.run(streams, result=result)
        await recorder.finish(result)
    except BaseException as error:
        with anyio.CancelScope(shield=True):
            why = (
                "interrupted" if isinstance(error, anyio.get_cancelled_exc_class()) else repr(error)
            )
            await store.finish_job(job, "Failed", _counts(result), why[:2000])
        raise
    await _finish_job(config, store, job, result)
    await refresh_cluster_resources(config, store)  # HOOK(notify): cluster-resources.changed
    if notifier is not None:
        await _deliver(notifier, store, result)
    return result


async def _finish_job(config: Config, store: Store, job: int, result: SyncResult) -> None:
    """Close the run's job with its counts and failures; trim the job history."""
    failures = summary(result)["failures"]
    message = "; ".join(f"{f['stream']}:{f['tag']}: {f['reason']}" for f in failures)[:2000]
    if result.skipped:
        message = f"stopped: {result.skipped} copies not started; {message}".rstrip("; ")
    status = "Succeeded" if result.ok else "Failed"
    await store.finish_job(job, status, _counts(result), message)
    pruning = config.pruning
    await store.trim_jobs(
        "sync", pruning.successful_jobs_history_limit, pruning.failed_jobs_history_limit
    )


async def _deliver(notifier: Notifier, store: Store, result: SyncResult) -> None:
    """Deliver the notifications due (this run's and earlier retries), within a bound."""
    report = await notifier.deliver_due(deadline=anyio.current_time() + NOTIFY_DEADLINE)
    await store.purge_delivered(datetime.now(UTC) - OUTBOX_RETENTION)
    result.notifications = {
        "delivered": report.delivered,
        "failed": report.failed,
        "givenUp": report.dead,
        "waiting": sum(s.pending for s in await store.receiver_statuses()),
    }


def _counts(result: SyncResult) -> dict[str, int]:
    return {k: int(v) for k, v in result.stats.as_dict().items()}


async def _imported_from(store: Store, stream: str, tag: str) -> Imported | None:
    """What the mirror's current image of ``stream:tag`` was imported from (if known)."""
    status = await store.get_tag(stream, tag)
    current = status.current if status else None
    if current is None or not current.source_digest:
        return None
    return Imported(current.image, current.source_digest, current.platform)


async def login_command(config: Config, registry: str, username: str, password: str) -> None:
    """Check the credential against the registry, then store it in the keyring."""
    from mirrord._connect import registry_options

    options = registry_options(config.registry_config(registry))

    async def check(credential: Credential) -> None:
        async with RegistryClient(registry, credential=credential, options=options) as client:
            await client.check_credentials()

    await keyring_login(registry, username, password, check=check)
