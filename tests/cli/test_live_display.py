"""`mirrord sync`'s live display, through a real pseudo-terminal (python `pty`), against
the harness registries; rendered by pyte (a VT100 emulator) to see what a user sees."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pyte
from harness.images import RegistryHTTP, make_layer, push_image
from harness.registry import RegistryProcess
from harness.synctools import Setup, sync_setup

from mirrord.core.units import human_bytes

COLUMNS, LINES = 200, 60
LOG_LINE = re.compile(r"(INFO|WARNING|ERROR) +mirrord[.\w]*: ")


def _images(client: RegistryHTTP, repo: str, count: int) -> int:
    """Push `count` images sharing a base layer; the bytes of their blobs, each once."""
    base = make_layer(150_000, seed=f"{repo}-base")
    images = [
        push_image(client, repo, f"v{i}", seed=f"{repo}/{i}", layers=(base,),
                   layer_sizes=(200_000,))
        for i in range(count)
    ]
    return sum({b.digest: b.size for image in images for b in image.blobs}.values())


def _setup(tmp_path: Path, mirror: RegistryProcess, source: RegistryProcess, repo: str,
           prefix: str) -> Setup:
    tmp_path.mkdir(exist_ok=True)
    return sync_setup(
        tmp_path,
        mirror=f"docker://{mirror.host}/{prefix}",
        streams=[{"from": f"{source.host}/{repo}", "to": "app", "max_tags": -1}],
        sources=[source],
        # One request at a time: the run lasts several refreshes of the display.
        settings={mirror.host: {"max_concurrency": 1}},
    )


def _in_pty(setup: Setup, *args: str, timeout: float = 120.0) -> tuple[int, bytes]:
    """`python -m mirrord sync` with stdout and stderr on one pseudo-terminal."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(COLUMNS),
           "LINES": str(LINES)}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirrord", "sync", "--config", str(setup.path), *args],
        stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, env=env,
    )
    os.close(follower)
    output = bytearray()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    assert proc.wait(timeout=10) is not None
    return proc.returncode, bytes(output)


def _screens(output: bytes) -> list[list[str]]:
    """The terminal's rows after each write of the display (split at each erase-line
    sequence, which starts every redraw), and at the end."""
    screen = pyte.Screen(COLUMNS, LINES)
    stream = pyte.ByteStream(screen)
    seen = []
    for piece in re.split(rb"(?=\x1b\[2K)", output):
        stream.feed(piece)
        seen.append([row.rstrip() for row in screen.display])
    return seen


def test_the_display_counts_to_the_total_and_logs_never_share_its_line(
    tmp_path: Path, basic_registry: RegistryProcess, mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP, repo_name: str,
) -> None:
    total = _images(basic_client, repo_name, 6)
    code, output = _in_pty(_setup(tmp_path, mirror_registry, basic_registry, repo_name, "live"))

    assert code == 0, output.decode(errors="replace")[-3000:]
    screens = _screens(output)
    rows = [row for screen in screens for row in screen]
    progress = [row for row in rows if row.startswith("mirroring")]
    assert progress, "no live display on a terminal"
    # The totals are known from the start: images, and bytes (the shared base once).
    assert all(re.match(r"mirroring(: planning| \d/6 images)", row) for row in progress)
    size = human_bytes(total)
    assert f"mirroring 6/6 images (6 copied, 0 failed), {size}/{size} at " in "\n".join(
        progress
    ), progress
    assert not any("mirroring 0 images" in row for row in rows)
    # Log records (one "copied" line per image) are drawn while the display is up...
    logs = [row for row in screens[-1] if LOG_LINE.search(row)]
    assert sum("mirrord.sync: copied" in row for row in logs) == 6, screens[-1]
    # ...each on its own line, from its first column, never glued to the display.
    for row in rows:
        if LOG_LINE.search(row):
            assert "mirroring" not in row and "MiB/s" not in row and "KiB/s" not in row, row
            assert re.match(r"^(\d{4}-\d\d-\d\dT[\d:]{8} )?(INFO|WARNING|ERROR) ", row), row
    # The display is erased at the end: the last line is the summary.
    last = [row for row in screens[-1] if row]
    assert last[-1].startswith("images: 6 copied, 0 unchanged, 0 failed"), last[-3:]
    assert not any(row.startswith("mirroring") for row in screens[-1])


def test_no_display_with_no_progress_or_off_a_terminal(
    tmp_path: Path, basic_registry: RegistryProcess, mirror_registry: RegistryProcess,
    basic_client: RegistryHTTP, repo_name: str,
) -> None:
    _images(basic_client, repo_name, 2)
    in_terminal = _setup(tmp_path / "a", mirror_registry, basic_registry, repo_name, "np")
    code, output = _in_pty(in_terminal, "--no-progress")
    assert code == 0
    assert b"mirroring" not in output and b"\x1b[" not in output
    assert b"images: 2 copied" in output

    piped = _setup(tmp_path / "b", mirror_registry, basic_registry, repo_name, "piped")
    result = subprocess.run(
        [sys.executable, "-m", "mirrord", "sync", "--config", str(piped.path), "--progress"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "mirroring" not in result.stdout + result.stderr
    assert "\x1b[" not in result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("images: 2 copied")
