"""The live display of ``mirrord sync`` on a terminal: images done of the planned
total, bytes streamed, rate, ETA, and the streams still in flight.

It only reads the :class:`~mirrord.sync.SyncResult` the run fills in (its plans
once planning ends, a result per finished tag, the streamed-bytes counter), from
rich's refresh thread: appends and counter updates are atomic, so a snapshot is
consistent enough for a display and the run never waits for it. While it is
shown, log records are printed above it through the same console.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mirrord.core.units import human_bytes
from mirrord.sync import SyncResult

MAX_STREAMS_SHOWN = 4
MAX_BLOBS_SHOWN = 3
LARGE_BLOB = 1 << 20  # smaller blobs come and go too fast to be worth a line


class LiveStatus:
    """The display's renderable: re-rendered four times a second."""

    def __init__(self, result: SyncResult) -> None:
        self.result = result
        self.started = time.monotonic()

    def __rich__(self) -> Any:
        from rich.text import Text

        plans = list(self.result.plans)
        if not plans:
            return Text("mirroring: planning (listing tags, reading the heads)…")
        lines = [Text(self.headline(plans))]
        lines += [Text(f"  {line}") for line in self.streams_in_flight(plans)]
        lines += [Text(f"  {line}") for line in self.blobs_in_flight()]
        return Text("\n").join(lines)

    def headline(self, plans: list[Any]) -> str:
        """``mirroring 12/331 images (10 copied, 0 failed), 103.1 MiB/228.4 MiB at
        44.4 MiB/s, ETA 0:42``: bytes of the planned total once it is known (the
        blobs the mirror had or mounted count as done), the ETA by bytes then."""
        stats = self.result.stats
        total = sum(len(p.tags) for p in plans)
        done = len(self.result.results)
        elapsed = max(time.monotonic() - self.started, 0.001)
        streamed = stats.bytes_streamed[0]
        planned = self.result.planned_bytes
        bytes_done = min(streamed + stats.bytes_skipped, planned)
        size = f"{human_bytes(streamed)}"
        eta = _eta(done, total, elapsed)
        if planned:
            size = f"{human_bytes(bytes_done)}/{human_bytes(planned)}"
            eta = _eta(bytes_done, planned, elapsed) if done < total else "0:00"
        return (
            f"mirroring {done}/{total} images ({stats.images_copied} copied, "
            f"{stats.images_failed} failed), {size} at "
            f"{human_bytes(streamed / elapsed)}/s, ETA {eta}"
        )

    def blobs_in_flight(self) -> list[str]:
        """The largest blobs being streamed: ``blob sha256:0123456789ab (120.0 MiB) into R``."""
        large = [
            (size, digest, repo)
            for digest, (repo, size) in list(self.result.stats.streaming.items())
            if size >= LARGE_BLOB
        ]
        return [
            f"blob {digest[:19]} ({human_bytes(size)}) into {repo}"
            for size, digest, repo in sorted(large, reverse=True)[:MAX_BLOBS_SHOWN]
        ]

    def streams_in_flight(self, plans: list[Any]) -> list[str]:
        """``stream done/total`` for the streams with tags still to finish."""
        finished = Counter(r.plan.stream for r in list(self.result.results))
        busy = [(p.stream, finished[p.stream], len(p.tags)) for p in plans]
        busy = [b for b in busy if b[1] < b[2]]
        shown = [f"{name} {done}/{total}" for name, done, total in busy[:MAX_STREAMS_SHOWN]]
        if len(busy) > MAX_STREAMS_SHOWN:
            shown.append(f"and {len(busy) - MAX_STREAMS_SHOWN} more streams")
        return shown


def _eta(done: int, total: int, elapsed: float) -> str:
    """What remains of ``total`` at the rate so far (``--`` before anything is done)."""
    if done >= total:
        return "0:00"
    if done == 0:
        return "--"
    seconds = int(elapsed / done * (total - done))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@contextmanager
def live_progress(result: SyncResult, enabled: bool) -> Iterator[None]:
    """The live display while the block runs, when ``enabled`` and stdout is a terminal;
    log records are printed above it. It is erased at the end (the summary follows)."""
    if not enabled or not sys.stdout.isatty():
        yield
        return
    from rich.console import Console
    from rich.live import Live

    from mirrord.cli._logging import logs_through

    console = Console()
    status = LiveStatus(result)
    live = Live(status, console=console, refresh_per_second=4, transient=True)
    with live, logs_through(console):
        try:
            yield
        finally:
            live.refresh()  # the final count (N/N) is drawn before it is erased
