"""The daemon's Prometheus metrics, on a registry of their own.

Per stream: the last success, run durations, runs by result, images / blobs /
bytes copied, upstream requests, rate-limit waits and the tags failing import. Per
registry: requests by method and answer code, the seconds the per-registry throttle
made requests wait, the requests it allows in flight now (lowered by 429s, see
``registry._throttle.AdaptiveLimit``) and the pulls Docker Hub says are left
(``ratelimit-remaining``). The pruner: its last run, runs by result, what it deleted.
Per worker (``worker`` label; several daemons on one database): the stream leases it
holds for runs in progress and its lease renewals that failed (error, lost).
Waits are ``…_rate_limit_wait_seconds_total`` in both scopes (``mirrord_registry_…``
per registry, ``mirrord_stream_…`` per stream). No ``_created`` series: a counter's
creation time says nothing a dashboard uses and doubles the series.

Upstream requests are counted by the :class:`~mirrord.transports.ClientPool`
``on_request`` hook; the stream a request belongs to comes from a context
variable the daemon sets for each run (tasks started inside a run inherit it).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from mirrord import __version__
from mirrord.core.imagestream import IMPORT_SUCCESS, Condition, ImageStream
from mirrord.daemon._scraped import PacingFigures, ScrapedMetrics
from mirrord.notify import DeliveryCounts
from mirrord.prune import PruneResult
from mirrord.sync import SyncResult

#: The stream whose run the current task belongs to ("" outside runs).
CURRENT_STREAM: contextvars.ContextVar[str] = contextvars.ContextVar("mirrord_stream", default="")

DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
IMAGE_OUTCOMES = ("copied", "unchanged", "failed")
BLOB_OUTCOMES = ("copied", "mounted", "present")
SIGNATURE_OUTCOMES = ("copied", "verified", "rejected")
RUN_RESULTS = ("succeeded", "failed", "interrupted")
NOTIFY_RESULTS = ("delivered", "failed", "given_up")
PRUNE_RESULTS = ("succeeded", "failed")
RENEW_FAILURES = ("error", "lost")
NO_ANSWER = "none"  # the code label of a request no answer came to (connection, TLS)


def status_code(status: int) -> str:
    """The ``code`` label: the HTTP status, ``none`` without an answer; a hostile
    registry's made-up status cannot add series beyond 100-599."""
    return str(status) if 100 <= status <= 599 else NO_ANSWER


def failing_tags(stream: ImageStream) -> int:
    """Tags of ``stream`` whose last import failed (``ImportSuccess=False``)."""
    def failing(conditions: Iterable[Condition]) -> bool:
        return any(c.type == IMPORT_SUCCESS and c.status == "False" for c in conditions)

    return sum(1 for t in stream.tags if not t.removed and failing(t.conditions))


class Metrics:
    """Every metric the daemon exports; :meth:`render` is the /metrics body."""

    def __init__(self) -> None:
        disable_created_metrics()  # process-wide in prometheus_client; the daemon's only
        self.registry = CollectorRegistry(auto_describe=True)
        self._stream_metrics(self.registry)
        self.failing = Gauge(
            "mirrord_stream_failing_tags",
            "Tags whose last import failed (ImportSuccess=False), as of the stream's last run.",
            ["stream"],
            registry=self.registry,
        )
        self._daemon_metrics(self.registry)
        self._prune_metrics(self.registry)
        self._signature_metrics(self.registry)
        self._mirror_registry = ""
        self._known: set[str] = set()

    def _stream_metrics(self, r: CollectorRegistry) -> None:
        """Per stream: last success and run, durations, runs, images, blobs, bytes."""
        self.last_success = Gauge(
            "mirrord_stream_last_success_timestamp_seconds",
            "End of the stream's last run in which every selected tag reached the mirror.",
            ["stream"],
            registry=r,
        )
        self.last_run = Gauge(
            "mirrord_stream_last_run_timestamp_seconds",
            "End of the stream's last run, whatever its result.",
            ["stream"],
            registry=r,
        )
        self.duration = Histogram(
            "mirrord_stream_run_duration_seconds",
            "How long the stream's runs took.",
            ["stream"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.runs = Counter(
            "mirrord_stream_runs", "Runs by result.", ["stream", "result"], registry=r
        )
        self.images = Counter(
            "mirrord_stream_images",
            "Images (tags) by outcome: copied, unchanged or failed.",
            ["stream", "outcome"],
            registry=r,
        )
        self.blobs = Counter(
            "mirrord_stream_blobs",
            "Blobs by outcome: copied (streamed), mounted or already present.",
            ["stream", "outcome"],
            registry=r,
        )
        self.bytes = Counter(
            "mirrord_stream_copied_bytes", "Bytes streamed into the mirror.", ["stream"], registry=r
        )
        self.upstream = Counter(
            "mirrord_stream_upstream_requests",
            "HTTP requests the stream's runs sent to its source registry.",
            ["stream"],
            registry=r,
        )
        self.rate_limit = Counter(
            "mirrord_stream_rate_limit_wait_seconds",
            "Seconds the stream's runs waited before retrying rate-limited (429) requests.",
            ["stream"],
            registry=r,
        )
        self.retries = Counter(
            "mirrord_stream_retries",
            "Requests retried after a temporary error.",
            ["stream"],
            registry=r,
        )

    def _prune_metrics(self, r: CollectorRegistry) -> None:
        """The pruner: when it last ran (and succeeded), runs by result, what it deleted."""
        self.prune_last_run = Gauge(
            "mirrord_prune_last_run_timestamp_seconds",
            "End of the pruner's last run, whatever its result.",
            registry=r,
        )
        self.prune_last_success = Gauge(
            "mirrord_prune_last_success_timestamp_seconds",
            "End of the pruner's last successful run.",
            registry=r,
        )
        self.prune_runs = Counter(
            "mirrord_prune_runs", "Prune runs by result.", ["result"], registry=r
        )
        for result in PRUNE_RESULTS:
            self.prune_runs.labels(result)
        self.prune_deleted = {
            what: Counter(f"mirrord_prune_{what}_deleted", helptext, registry=r)
            for what, helptext in (
                ("tag_revisions", "Tag revisions the pruner removed from the history."),
                ("manifests", "Manifests the pruner deleted from the mirror."),
                ("blobs", "Unreferenced blobs the pruner removed (an OCI layout mirror)."),
                ("orphaned_images", "Images of deleted streams the pruner removed."),
            )
        }
        self.prune_freed = Counter(
            "mirrord_prune_freed_bytes", "Bytes the removed blobs took.", registry=r
        )

    def _signature_metrics(self, r: CollectorRegistry) -> None:
        """Per stream: what became of the signatures (issue 15)."""
        self.signatures = Counter(
            "mirrord_stream_signatures",
            "Signatures: copied (lookaside files written), verified (manifests the policy "
            "accepted), rejected (tags the policy refused).",
            ["stream", "outcome"],
            registry=r,
        )
        self.referrers = Counter(
            "mirrord_stream_referrers",
            "OCI referrers (signatures, SBOMs attached to an image) copied into the mirror.",
            ["stream"],
            registry=r,
        )

    def _daemon_metrics(self, r: CollectorRegistry) -> None:
        """Per registry and for the whole daemon: requests, notifications, reloads."""
        self.requests = Counter(
            "mirrord_registry_requests",
            "HTTP requests sent, by registry, method and answer code (none: no answer).",
            ["registry", "method", "code"],
            registry=r,
        )
        self.notifications = Counter(
            "mirrord_notifications",
            "Notification deliveries by result: delivered, failed (retried later), given_up.",
            ["result"],
            registry=r,
        )
        for result in NOTIFY_RESULTS:
            self.notifications.labels(result)
        self.lease_skips = Counter(
            "mirrord_lease_skipped_runs",
            "Runs skipped: another worker on the shared database held the stream's lease.",
            registry=r,
        )
        self._lease_metrics(r)
        self.in_progress = Gauge("mirrord_runs_in_progress", "Runs in flight.", registry=r)
        self.reload_ok = Gauge(
            "mirrord_config_last_reload_successful",
            "1 when the last configuration (re)load succeeded.",
            registry=r,
        )
        self.reload_time = Gauge(
            "mirrord_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
            registry=r,
        )
        info = Gauge("mirrord_build_info", "mirrord's version.", ["version"], registry=r)
        info.labels(__version__).set(1)

    def _lease_metrics(self, r: CollectorRegistry) -> None:
        """Per worker (several daemons on one database): its stream leases."""
        self.leases_held = Gauge(
            "mirrord_worker_leases_held",
            "Stream leases this worker holds for runs in progress.",
            ["worker"],
            registry=r,
        )
        self.lease_renew_failures = Counter(
            "mirrord_worker_lease_renew_failures",
            "Lease renewals that failed: error (the database did not answer; tried again), "
            "lost (another worker had taken the lease; the run stopped).",
            ["worker", "reason"],
            registry=r,
        )
        self._worker = ""

    def set_worker(self, worker: str) -> None:
        """The worker (``host:pid`` or ``worker_name``) the lease metrics are labelled with."""
        self._worker = worker
        self.leases_held.labels(worker)
        for reason in RENEW_FAILURES:
            self.lease_renew_failures.labels(worker, reason)

    def lease_held(self, delta: int) -> None:
        """The :class:`~mirrord.sync.LeaseWatcher` hook: a lease taken (+1) or let go (-1)."""
        self.leases_held.labels(self._worker).inc(delta)

    def lease_renew_failed(self, reason: str) -> None:
        """The :class:`~mirrord.sync.LeaseWatcher` hook: a renewal failed (error, lost)."""
        self.lease_renew_failures.labels(self._worker, reason).inc()

    def watch(
        self,
        throttle_waits: Callable[[], dict[str, float]],
        next_runs: Callable[[], Iterable[tuple[str, datetime | None]]],
        pacing: PacingFigures = dict,
    ) -> None:
        self.registry.register(ScrapedMetrics(throttle_waits, next_runs, pacing))

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def set_mirror(self, registry: str | None) -> None:
        """Requests to the mirror are not upstream requests."""
        self._mirror_registry = registry or ""

    def config_loaded(self, ok: bool) -> None:
        self.reload_ok.set(1 if ok else 0)
        if ok:
            self.reload_time.set(time.time())

    def streams(
        self, names: Iterable[str], last_synced: Mapping[str, datetime | None] | None = None
    ) -> None:
        """Export zeros for new streams; forget streams that are gone.

        A new stream's last success starts at its stored ``last_synced`` (the store
        outlives the process), so a restart does not look like a stream gone stale.
        """
        wanted = set(names)
        for name in self._known - wanted:
            for metric in (
                self.last_success,
                self.last_run,
                self.duration,
                self.bytes,
                self.upstream,
                self.rate_limit,
                self.retries,
                self.failing,
                self.referrers,
            ):
                _forget(metric, name)
            for result in RUN_RESULTS:
                _forget(self.runs, name, result)
            for outcome in IMAGE_OUTCOMES:
                _forget(self.images, name, outcome)
            for outcome in BLOB_OUTCOMES:
                _forget(self.blobs, name, outcome)
            for outcome in SIGNATURE_OUTCOMES:
                _forget(self.signatures, name, outcome)
        for name in wanted - self._known:
            synced = (last_synced or {}).get(name)
            if synced is not None:
                self.last_success.labels(name).set(synced.timestamp())
            for counter in (self.bytes, self.upstream, self.rate_limit, self.retries):
                counter.labels(name)
            self.failing.labels(name)
            self.duration.labels(name)
            for result in RUN_RESULTS:
                self.runs.labels(name, result)
            for outcome in IMAGE_OUTCOMES:
                self.images.labels(name, outcome)
            for outcome in BLOB_OUTCOMES:
                self.blobs.labels(name, outcome)
        self._known = wanted

    def lease_skipped(self) -> None:
        self.lease_skips.inc()

    def on_request(self, registry: str, method: str, path: str, status: int) -> None:
        """The ClientPool hook: one HTTP request was answered ``status`` (0: no answer)."""
        self.requests.labels(registry, method, status_code(status)).inc()
        stream = CURRENT_STREAM.get()
        if stream and registry != self._mirror_registry:
            self.upstream.labels(stream).inc()

    def run_finished(self, stream: str, result: SyncResult, seconds: float, outcome: str) -> None:
        """Count one run of ``stream``: ``outcome`` is succeeded, failed or interrupted."""
        s = result.stats
        now = time.time()
        self.runs.labels(stream, outcome).inc()
        self.duration.labels(stream).observe(seconds)
        self.last_run.labels(stream).set(now)
        if outcome == "succeeded":
            self.last_success.labels(stream).set(now)
        for name, count in zip(
            IMAGE_OUTCOMES, (s.images_copied, s.images_unchanged, result.failed_count),
            strict=True,
        ):
            self.images.labels(stream, name).inc(count)
        for name, count in zip(
            BLOB_OUTCOMES, (s.blobs_copied, s.blobs_mounted, s.blobs_present), strict=True
        ):
            self.blobs.labels(stream, name).inc(count)
        self.bytes.labels(stream).inc(s.bytes_copied)
        self.rate_limit.labels(stream).inc(s.rate_limit_waits)
        self.retries.labels(stream).inc(s.retries)
        for name, count in zip(
            SIGNATURE_OUTCOMES,
            (s.signatures_copied, s.signatures_verified, s.signatures_rejected),
            strict=True,
        ):
            self.signatures.labels(stream, name).inc(count)
        self.referrers.labels(stream).inc(s.referrers_copied)
        counts = result.notifications or DeliveryCounts()
        for name, count in zip(
            NOTIFY_RESULTS, (counts.delivered, counts.failed, counts.given_up), strict=True
        ):
            self.notifications.labels(name).inc(count)

    def tags_failing(self, streams: Iterable[ImageStream]) -> None:
        """The failing-tag gauge of each stream, from the state (after a run, at start)."""
        for stream in streams:
            if stream.name in self._known:
                self.failing.labels(stream.name).set(failing_tags(stream))

    def prune_finished(self, result: PruneResult) -> None:
        """Count one confirmed prune run."""
        now = time.time()
        self.prune_last_run.set(now)
        self.prune_runs.labels("succeeded" if result.ok else "failed").inc()
        if result.ok:
            self.prune_last_success.set(now)
        counts = result.counts()
        self.prune_deleted["tag_revisions"].inc(counts["tagRevisions"])
        self.prune_deleted["manifests"].inc(counts["manifests"])
        self.prune_deleted["blobs"].inc(counts["blobs"])
        self.prune_deleted["orphaned_images"].inc(counts["orphanedImages"])
        self.prune_freed.inc(counts["bytes"])


def _forget(metric: Gauge | Counter | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never exported: nothing to forget
        metric.remove(*labels)
