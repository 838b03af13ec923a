"""The benchmark still works: ``python -m bench --smoke`` runs end to end.

No time is asserted (CI machines differ): only that the run completes, prints the
table, and writes JSON results with every measure present.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from harness.registry import RegistryProcess

from bench.wanproxy import DelayProxy

ROOT = Path(__file__).resolve().parents[1]

MEASURED = (  # the measures a smoke run takes, each for both tools
    "cold_wall_s",
    "noop_wall_s",
    "requests_per_unchanged_tag",
    "tag_lists_per_run",
    "manifest_gets_noop",
    "version_checks_noop",
    "peak_rss_cold_mib",
    "peak_rss_noop_mib",
    "requests_cold",
    "manifest_gets_cold",
    "cpu_cold_s",
    "registry_cpu_cold_s",
    "cpu_noop_s",
    "registry_cpu_noop_s",
)
SKIPPED = ("blob_rss_delta_mib", "wan_noop_wall_s", "wan_cold_wall_s")  # by --smoke


def test_smoke_run_prints_the_table_and_writes_every_measure(tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--results-dir", str(results),
         "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| Measure | mirrord | skopeo |" in proc.stdout
    for label in ("Cold sync, wall time", "No-op re-sync, wall time", "Peak RSS, cold sync",
                  "upstream requests per unchanged tag"):
        assert label in proc.stdout

    written = json.loads((results / "smoke-latest.json").read_text())
    measures = written["measures"]
    for key in MEASURED:
        row = measures[key]
        assert row["mirrord"] is not None and row["skopeo"] is not None, key
        assert not row["skipped"], key
    for key in SKIPPED:
        assert measures[key]["skipped"] == "--smoke", key
    for key in ("cold_wall_s", "noop_wall_s", "requests_per_unchanged_tag", "peak_rss_cold_mib"):
        assert measures[key]["passed"] in (True, False), key  # judged against its target
    phases = {(r["tool"], r["phase"]) for r in written["runs"]}
    assert phases == {(t, p) for t in ("mirrord", "skopeo") for p in ("cold", "noop")}
    assert written["corpus"]["tags"] == sum(r["tags"] for r in written["runs"]) // 4


def test_delay_proxy_forwards_requests_to_the_registry(registry_factory: Any) -> None:
    registry: RegistryProcess = registry_factory()
    with DelayProxy("127.0.0.1", registry.port, delay_ms=5) as proxy, \
            httpx.Client(base_url=f"http://{proxy.host}") as client:
        first = client.get("/v2/")
        second = client.get("/v2/_catalog")
    assert first.status_code == 200
    assert first.headers["x-harness-instance"]  # the registry answered, through the proxy
    assert second.status_code == 200 and "repositories" in second.json()
    assert proxy.connections == 1  # keep-alive: one connection carried both requests
