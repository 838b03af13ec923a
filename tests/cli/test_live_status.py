"""The live display's lines, rendered from a SyncResult as a run fills it in."""

from __future__ import annotations

from rich.console import Console

from mirrord.cli._live import LiveStatus, _eta
from mirrord.copy import Action, StreamPlan, TagPlan
from mirrord.sync import SyncResult, TagResult


def _plan(stream: str, tag: str) -> TagPlan:
    return TagPlan(stream, tag, f"src/{stream}", f"m/{stream}", Action.COPY)


def _render(status: LiveStatus) -> str:
    console = Console(width=160, record=True, color_system=None)
    console.print(status)
    return console.export_text()


def test_planning_then_totals_streams_and_large_blobs_in_flight() -> None:
    result = SyncResult()
    status = LiveStatus(result)
    assert _render(status).startswith("mirroring: planning")

    result.plans = [
        StreamPlan("ubi9", tuple(_plan("ubi9", f"v{i}") for i in range(3))),
        StreamPlan("[bold]x", (_plan("[bold]x", "1"),)),  # names are text, never markup
    ]
    result.planned_blobs = {"sha256:" + "a" * 64: 3 << 20, "sha256:" + "b" * 64: 1 << 20}
    result.results.append(TagResult(result.plans[0].tags[0], "copied"))
    result.stats.images_copied = 1
    result.stats.bytes_streamed[0] = 1 << 20
    result.stats.streaming["sha256:" + "a" * 64] = ("m/ubi9", 3 << 20)
    result.stats.streaming["sha256:" + "c" * 64] = ("m/ubi9", 1000)  # small: no line

    lines = _render(status).splitlines()

    assert lines[0].startswith("mirroring 1/4 images (1 copied, 0 failed), 1.0 MiB/4.0 MiB at ")
    assert lines[1:] == [
        "  ubi9 1/3",
        "  [bold]x 0/1",
        "  blob sha256:aaaaaaaaaaaa (3.0 MiB) into m/ubi9",
    ]


def test_eta() -> None:
    assert _eta(0, 10, 5.0) == "--"
    assert _eta(10, 10, 5.0) == "0:00"
    assert _eta(1, 4, 20.0) == "1:00"
    assert _eta(1, 1000, 10.0) == "2:46:30"
