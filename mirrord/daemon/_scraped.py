"""The daemon's metrics read when Prometheus scrapes: throttle waits, pacing figures
(allowed concurrency, pulls left) and each stream's next scheduled run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

#: Per registry, read when scraped: (requests allowed in flight, pulls left or None).
PacingFigures = Callable[[], dict[str, tuple[int, int | None]]]


class ScrapedMetrics(Collector):
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
            "mirrord_registry_rate_limit_wait_seconds",
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
