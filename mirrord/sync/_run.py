"""Recorded runs: a sync is one job in the store, its outcomes recorded tag by tag.

:func:`sync_once` is what ``mirrord sync``, ``mirrord import-image`` and the daemon
run; :func:`plan_once` is a dry run. Neither prints: the caller renders the result
(and may watch it while it runs: it is filled in as tags finish).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial

import anyio

from mirrord.config import Config, StreamConfig
from mirrord.copy import Imported, StreamPlan
from mirrord.core.imagestream import tag_origin, tag_policy
from mirrord.core.units import camel_case
from mirrord.errors import MirrordError
from mirrord.notify import DeliveryCounts, Notifier, cluster_resources_event
from mirrord.state import Store
from mirrord.sync._blobclaims import shared_blobs
from mirrord.sync._blobplaces import blob_places, blob_places_of
from mirrord.sync._follow import follow_tags
from mirrord.sync._import_image import _followed as followed
from mirrord.sync._recorder import Recorder
from mirrord.sync._syncer import Syncer, SyncResult
from mirrord.transports import ClientPool, open_destination

log = logging.getLogger("mirrord")

NOTIFY_DEADLINE = 30.0  # seconds a one-shot sync spends delivering notifications
OUTBOX_RETENTION = timedelta(days=7)  # delivered notifications are kept this long


async def plan_once(
    config: Config,
    store: Store | None,
    pool: ClientPool,
    streams: list[StreamConfig],
    *,
    result: SyncResult | None = None,
) -> SyncResult:
    """A dry run: what a sync would copy (and its bytes), leave alone, fail on, and the
    recorded tags gone upstream. Changes nothing; ``store`` may be None (no state yet).
    ``result`` may be passed in to be filled."""
    legacy = partial(_imported_from, store) if store is not None else None
    # Where earlier runs put blobs (a mount, not a pull); with no state yet, nowhere.
    places = blob_places_of(store, await open_destination(config, pool))
    syncer = Syncer(config, pool, legacy_sources=legacy, places=places)
    result = await syncer.run(streams, dry_run=True, result=result)
    if store is None:
        return result
    for plan in result.plans:
        if gone := await _gone_upstream(store, plan):
            delete = config.stream(plan.stream).delete_removed_tags
            result.gone_upstream[plan.stream] = (gone, delete)
        known = await store.get_stream(plan.stream)
        if following := tuple(
            (t.tag, tag_policy(t) or "", (tag_origin(t) or "").partition(" ")[2])
            for t in (known.tags if known else ())
            if followed(t)
        ):
            result.followed[plan.stream] = following
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
        if t.tag not in upstream and not t.removed and t.items and tag_origin(t) is None
    )


async def sync_once(
    config: Config,
    store: Store,
    pool: ClientPool,
    streams: list[StreamConfig],
    *,
    result: SyncResult | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    complete: bool = True,
    estimate_bytes: bool = False,
    verify: bool = False,
) -> SyncResult:
    """One recorded sync run (a job in the store), as the CLI and the daemon run it.

    ``result`` may be passed in to watch the run (it is filled in as tags finish).
    ``should_stop`` is asked before each copy starts (a stop signal).
    ``complete``: the streams carry their whole selection, so a stream with no
    failure is marked synced (False for ``import-image`` of one tag among several).
    ``estimate_bytes``: size the copies first (``result.planned_blobs``, for a display).
    ``verify``: ``HEAD`` every tag at the mirror instead of trusting one tag listing
    plus the state (finds a tag overwritten in the mirror out of band).
    """
    notifier = Notifier(store, config.notifications) if config.notifications else None
    result = result or SyncResult()
    # The job first: a run that cannot start is recorded, a queued one closed anyway.
    job = await store.start_job("sync", streams[0].name if len(streams) == 1 else None)
    try:
        destination = await open_destination(config, pool)
        recorder = Recorder(config, store, destination, notifier, complete=complete)
        syncer = Syncer(
            config, pool, on_result=recorder,
            legacy_sources=lambda stream, tag: _imported_from(store, stream, tag),
            should_stop=should_stop,
            estimate_bytes=estimate_bytes,
            recorded=recorder.recorded,
            verify=verify,
            shared=shared_blobs(config, store, destination),
            places=blob_places(store, destination),
        )
        await recorder.prepare(streams)
        await syncer.run(streams, result=result)
        await recorder.finish(result)
        if not should_stop():  # the tags `mirrord tag --alias/--scheduled` made
            names = [s.name for s in streams]
            await follow_tags(config, store, pool, destination, names, notifier)
    except BaseException as error:
        with anyio.CancelScope(shield=True):
            await store.finish_job(job, "Failed", _counts(result), _why(error, result)[:2000])
        raise
    await _finish_job(config, store, job, result)
    await _refresh_and_deliver(config, store, notifier, result)
    return result


async def _refresh_and_deliver(
    config: Config, store: Store, notifier: Notifier | None, result: SyncResult
) -> None:
    """The cluster files from the state, then the notifications (their change too)."""
    # Imported here: the cluster-resource stack is not needed before the first request.
    from mirrord.cluster import default_directory as default_cluster_directory
    from mirrord.cluster import refresh as refresh_cluster_resources

    changes = await refresh_cluster_resources(config, store)
    if notifier is not None and changes:
        directory = str(default_cluster_directory(config))
        files = {change.name: change.action for change in changes}
        await notifier.publish(cluster_resources_event(directory, files))
    if notifier is not None:
        await _deliver(notifier, store, result)


async def _finish_job(config: Config, store: Store, job: int, result: SyncResult) -> None:
    """Close the run's job with its counts and failures; trim the job history."""
    message = "; ".join(f"{f.where}: {f.reason}" for f in result.failures())[:2000]
    if result.skipped:
        stopped = f"interrupted: a stop was requested, {result.skipped} copies not started"
        message = f"{stopped}; {message}".rstrip("; ")
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
    waiting = sum(s.pending for s in await store.receiver_statuses())
    result.notifications = DeliveryCounts(report.delivered, report.failed, report.dead, waiting)


def _why(error: BaseException, result: SyncResult) -> str:
    """What a job that ended with ``error`` records as its message."""
    if isinstance(error, anyio.get_cancelled_exc_class() | KeyboardInterrupt):
        if result.cut or result.skipped:
            return (
                f"interrupted: {result.cut} copies cut short, "
                f"{result.skipped} not started (the mirror keeps their previous images)"
            )
        return "interrupted"
    if isinstance(error, MirrordError):
        return str(error)
    return f"internal error: {type(error).__name__}: {error}"


def _counts(result: SyncResult) -> dict[str, int]:
    """The job's counts, camelCase like every document mirrord writes (``imagesCopied``);
    ``imagesFailed`` as the summary counts it (a stream failed as a whole is one)."""
    counts = {camel_case(k): int(v) for k, v in result.stats.as_dict().items()}
    counts["imagesFailed"] = result.failed_count
    return counts


async def _imported_from(store: Store, stream: str, tag: str) -> Imported | None:
    """What the mirror's current image of ``stream:tag`` was imported from (if known)."""
    status = await store.get_tag(stream, tag)
    current = status.current if status else None
    if current is None or not current.source_digest:
        return None
    return Imported(current.image, current.source_digest, current.platform)
