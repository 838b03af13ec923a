"""Start-up: what mirrord imports before its first request (``python -X importtime``).

The time from ``exec`` to the first connection is measured by the benchmark itself (a
zero-delay :class:`bench.wanproxy.DelayProxy` in front of the source times the first
connection against the launcher's fork time). This module adds the why: one ``mirrord
sync`` run under ``-X importtime``, its import time in all, per top-level package, and
the slowest imports with everything they pulled in.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.measure import run_checked
from bench.tools import CLI, ROOT, Mirrord, checkout_env

# "import time:       123 |        456 |     package.module" (indent = nesting)
_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)\s*$")
TOP = 15


def parse_importtime(text: str, top: int = TOP) -> dict[str, Any]:
    """From ``-X importtime`` output: the total (the sum of every module's own time), the
    own time per top-level package, and the ``top`` imports by cumulative time, outermost
    first (an import's cumulative time includes the imports nested under it)."""
    total_us = 0
    per_package: dict[str, int] = defaultdict(int)
    modules: list[dict[str, Any]] = []
    for line in text.splitlines():
        m = _LINE.match(line)
        if m is None:
            continue
        own, cumulative, depth = int(m[1]), int(m[2]), (len(m[3]) - 1) // 2
        total_us += own
        per_package[m[4].split(".")[0]] += own
        modules.append({"module": m[4], "depth": depth, "self_ms": round(own / 1000, 1),
                        "cumulative_ms": round(cumulative / 1000, 1)})
    modules.sort(key=lambda e: (-e["cumulative_ms"], e["depth"]))
    packages = sorted(per_package.items(), key=lambda kv: -kv[1])[:top]
    return {
        "modules": len(modules),
        "total_ms": round(total_us / 1000, 1),
        "by_package_ms": {name: round(us / 1000, 1) for name, us in packages},
        "top_cumulative": modules[:top],
    }


def importtime(tool: Mirrord, config_path: Path, log_base: Path) -> dict[str, Any]:
    """Run ``mirrord sync`` (mirrord's CLI, as the benchmark runs it) under
    ``-X importtime`` and parse what it printed."""
    python, *rest = tool.argv(config_path)  # python -c CLI sync ... (or python SCRIPT sync ...)
    argv = [python, "-X", "importtime", *rest]
    run_checked(argv, log_base, "mirrord sync -X importtime", cwd=ROOT, env=checkout_env())
    parsed = parse_importtime(Path(f"{log_base}.err").read_text(errors="replace"))
    shown = ["-c", "'<mirrord CLI>'", *rest[2:]] if rest[:2] == ["-c", CLI] else rest
    parsed["command"] = " ".join(["python", "-X", "importtime", *shown])
    return parsed


def summary(parsed: dict[str, Any], packages: int = 8) -> str:
    """One Markdown paragraph: the import total and the heaviest packages."""
    if not parsed:
        return ""
    heavy = ", ".join(f"{name} {ms:g} ms" for name, ms in
                      list(parsed["by_package_ms"].items())[:packages])
    return (f"mirrord's imports (`-X importtime`, a one-tag no-op sync): "
            f"{parsed['total_ms']:g} ms for {parsed['modules']} modules; by package "
            f"(own time): {heavy}.")
