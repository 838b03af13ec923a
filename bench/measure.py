"""Measuring one run: wall time, CPU time and peak RSS of a child process.

Every run is a fresh process started by a small launcher (``_launch.py``), which
reports the run's wall time and its peak RSS (``getrusage(RUSAGE_CHILDREN)``,
KiB on Linux), so nothing else's memory is counted.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.counts import MirrorRequests, SourceRequests


class BenchError(RuntimeError):
    """A tool failed, or the mirror it produced is wrong: the numbers would mean nothing."""


@dataclass(frozen=True)
class Proc:
    argv: tuple[str, ...]
    returncode: int
    wall_s: float
    maxrss_kib: int
    cpu_s: float = 0.0
    started: float = 0.0  # time.monotonic() when the launcher forked the command


LAUNCHER = Path(__file__).resolve().parent / "_launch.py"


def run_measured(
    argv: Sequence[str],
    log_base: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Proc:
    """Run ``argv`` to completion through the small launcher (see ``_launch.py``);
    stdout into ``<log_base>.out``, stderr into ``<log_base>.err``."""
    report = Path(f"{log_base}.rusage.json")
    launcher = [sys.executable, "-S", str(LAUNCHER), str(report)]
    with open(f"{log_base}.out", "wb") as out, open(f"{log_base}.err", "wb") as err:
        subprocess.run(
            [*launcher, *argv],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            check=False,
        )
    try:
        measured = json.loads(report.read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"the launcher reported nothing for {argv[0]}: {exc}") from exc
    return Proc(tuple(argv), measured["returncode"], measured["wall_s"], measured["maxrss_kib"],
                measured["cpu_s"], measured["started"])


def run_checked(argv: Sequence[str], log_base: Path, what: str, **kw: Any) -> Proc:
    """:func:`run_measured`; BenchError (with the end of stderr) when it fails."""
    proc = run_measured(argv, log_base, **kw)
    if proc.returncode != 0:
        tail = Path(f"{log_base}.err").read_text(errors="replace")[-3000:]
        raise BenchError(f"{what} exited {proc.returncode}; see {log_base}.err:\n{tail}")
    return proc


@dataclass
class RunRecord:
    """One measured run of one tool in one phase."""

    tool: str
    phase: str
    run: int
    wall_s: float
    maxrss_mib: float
    tags: int
    cpu_s: float = 0.0  # the tool's user + system CPU time
    source_cpu_s: float = 0.0  # the source registry's, during the run
    mirror_cpu_s: float = 0.0  # the mirror registry's, during the run
    source: SourceRequests = field(default_factory=SourceRequests)
    mirror: MirrorRequests = field(default_factory=MirrorRequests)
    proxy_connections: int | None = None
    startup_s: float | None = None  # exec to the first connection at the source (via a proxy)
    summary: dict[str, Any] | None = None

    @property
    def registry_cpu_s(self) -> float:
        return self.source_cpu_s + self.mirror_cpu_s

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def process_cpu(pid: int | None) -> float:
    """User + system CPU seconds of a running process (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median(values: Iterable[float]) -> float | None:
    items = list(values)
    return statistics.median(items) if items else None


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        m = re.search(r"MemTotal:\s+(\d+) kB", meminfo.read_text())
        if m:
            info["memory_gib"] = round(int(m[1]) / 1024 / 1024, 1)
    info["free_h"] = _output(["free", "-h"])
    info["skopeo"] = _output(["skopeo", "--version"])
    info["registry"] = _output([os.environ.get("MIRRORD_TEST_REGISTRY_BIN", "docker-registry"),
                                "--version"])
    root = Path(__file__).resolve().parent.parent
    commit = _output(["git", "-C", str(root), "rev-parse", "--short", "HEAD"])
    dirty = _output(["git", "-C", str(root), "status", "--porcelain", "--", "mirrord"])
    info["mirrord_commit"] = commit + ("+dirty" if dirty else "")
    return info


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return m[1].strip() if m else platform.processor()


def _output(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return ""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def compile_checkout(root: Path) -> None:
    """Byte-compile the checkout's ``mirrord`` (into its gitignored ``__pycache__``), as
    installing a package does: with ``PYTHONDONTWRITEBYTECODE`` set (or a read-only tree)
    every measured run would otherwise compile mirrord's source again (~0.2 s of CPU at
    each start), which no installed mirrord pays. compileall writes whatever that says."""
    import compileall

    if not compileall.compile_dir(str(root / "mirrord"), quiet=1):
        raise BenchError(f"cannot byte-compile {root / 'mirrord'}")


def warm_page_cache(directory: Path) -> int:
    """Read every file under ``directory`` once, so the first run does not pay for the disk."""
    total = 0
    for path in directory.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    total += len(chunk)
    return total
