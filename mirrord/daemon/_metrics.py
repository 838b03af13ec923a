"""The daemon's Prometheus metrics, on a registry of their own.

Per stream: the last success, run durations, runs by result, images / blobs /
bytes copied, upstream requests and rate-limit waits. Per registry: requests by
method, the seconds the per-registry throttle made requests wait, the requests it
allows in flight now (lowered by 429s, see ``registry._throttle.AdaptiveLimit``) and
the pulls Docker Hub says are left (``ratelimit-remaining``).

Upstream requests are counted by the :class:`~mirrord.transports.ClientPool`
``on_request`` hook; the stream a request belongs to comes from a context
variable the daemon sets for each run (tasks started inside a run inherit it).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from mirrord import __version__
from mirrord.notify import DeliveryCounts
from mirrord.sync import SyncResult

#: The stream whose run the current task belongs to ("" outside runs).
CURRENT_STREAM: contextvars.ContextVar[str] = contextvars.ContextVar("mirrord_stream", default="")

DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
IMAGE_OUTCOMES = ("copied", "unchanged", "failed")
BLOB_OUTCOMES = ("copied", "mounted", "present")
RUN_RESULTS = ("succeeded", "failed", "interrupted")
NOTIFY_RESULTS = ("delivered", "failed", "given_up")


#: Per registry, read when scraped: (requests allowed in flight, pulls left or None).
PacingFigures = Callable[[], dict[str, tuple[int, int | None]]]


class _Dynamic(Collector):
    """Values read when scraped: throttle waits, pacing figures and next scheduled runs."""

    def __init__(
        self,
        throttle_waits: Callable[[], dict[str, float]],
        next_runs: Callable[[], Iterable[tuple[str, datetime | None]]],
        pacing: PacingFigures,
    ) -> None:
        self._throttle_waits = throttle_waits
        self._next_runs = next_runs
        self._pacing = pacing

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        waits = CounterMetricFamily(
            "mirrord_registry_throttle_wait_seconds",
            "Seconds requests waited for the per-registry rate limit or a 429's Retry-After.",
            labels=["registry"],
        )
        for registry, seconds in sorted(self._throttle_waits().items()):
            waits.add_metric([registry], seconds)
        yield waits
        yield from self._pacing_families()
        upcoming = GaugeMetricFamily(
            "mirrord_stream_next_run_timestamp_seconds",
            "When the stream's next scheduled run is due (Unix time).",
            labels=["stream"],
        )
        for name, moment in self._next_runs():
            if moment is not None:
                upcoming.add_metric([name], moment.timestamp())
        yield upcoming


    def _pacing_families(self) -> Iterator[GaugeMetricFamily]:
        limit = GaugeMetricFamily(
            "mirrord_registry_concurrency_limit",
            "Requests to the registry allowed in flight now (halved on 429/503, then "
            "recovering up to max_concurrency).",
            labels=["registry"],
        )
        remaining = GaugeMetricFamily(
            "mirrord_registry_ratelimit_remaining",
            "Pulls the registry last said are left in its window (ratelimit-remaining).",
            labels=["registry"],
        )
        for registry, (allowed, left) in sorted(self._pacing().items()):
            limit.add_metric([registry], allowed)
            if left is not None:
                remaining.add_metric([registry], left)
        yield limit
        yield remaining


class Metrics:
    """Every metric the daemon exports; :meth:`render` is the /metrics body."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._stream_metrics(self.registry)
        self._daemon_metrics(self.registry)
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

    def _daemon_metrics(self, r: CollectorRegistry) -> None:
        """Per registry and for the whole daemon: requests, notifications, reloads."""
        self.requests = Counter(
            "mirrord_registry_requests",
            "HTTP requests sent, by registry and method.",
            ["registry", "method"],
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

    def watch(
        self,
        throttle_waits: Callable[[], dict[str, float]],
        next_runs: Callable[[], Iterable[tuple[str, datetime | None]]],
        pacing: PacingFigures = dict,
    ) -> None:
        self.registry.register(_Dynamic(throttle_waits, next_runs, pacing))

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
            ):
                _forget(metric, name)
            for result in RUN_RESULTS:
                _forget(self.runs, name, result)
            for outcome in IMAGE_OUTCOMES:
                _forget(self.images, name, outcome)
            for outcome in BLOB_OUTCOMES:
                _forget(self.blobs, name, outcome)
        for name in wanted - self._known:
            synced = (last_synced or {}).get(name)
            if synced is not None:
                self.last_success.labels(name).set(synced.timestamp())
            for counter in (self.bytes, self.upstream, self.rate_limit, self.retries):
                counter.labels(name)
            self.duration.labels(name)
            for result in RUN_RESULTS:
                self.runs.labels(name, result)
            for outcome in IMAGE_OUTCOMES:
                self.images.labels(name, outcome)
            for outcome in BLOB_OUTCOMES:
                self.blobs.labels(name, outcome)
        self._known = wanted

    def on_request(self, registry: str, method: str, path: str) -> None:
        """The ClientPool hook: one HTTP request is about to be sent."""
        self.requests.labels(registry, method).inc()
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
            IMAGE_OUTCOMES, (s.images_copied, s.images_unchanged, s.images_failed), strict=True
        ):
            self.images.labels(stream, name).inc(count)
        for name, count in zip(
            BLOB_OUTCOMES, (s.blobs_copied, s.blobs_mounted, s.blobs_present), strict=True
        ):
            self.blobs.labels(stream, name).inc(count)
        self.bytes.labels(stream).inc(s.bytes_copied)
        self.rate_limit.labels(stream).inc(s.rate_limit_waits)
        self.retries.labels(stream).inc(s.retries)
        counts = result.notifications or DeliveryCounts()
        for name, count in zip(
            NOTIFY_RESULTS, (counts.delivered, counts.failed, counts.given_up), strict=True
        ):
            self.notifications.labels(name).inc(count)


def _forget(metric: Gauge | Counter | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never exported: nothing to forget
        metric.remove(*labels)
