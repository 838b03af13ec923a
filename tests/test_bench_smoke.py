"""The benchmark still works: ``python -m bench --smoke`` runs end to end, over TLS.

No time is asserted (CI machines differ): only that the run completes, prints the
table, and writes JSON results with every measure present; that both tools really
verified the registries' certificates (also through the WAN proxy); and that the
benchmark refuses to reach beyond loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness.registry import RegistryProcess
from harness.tls import ca_and_leaf

from bench.measure import BenchError
from bench.tools import PLAIN, Job, Mirrord, Skopeo, Trust
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
    "mirror_requests_per_tag_noop",
    "startup_s",
    "startup_noop_wall_s",
    "mirror_requests_per_blob_cold",
    "source_blob_gets_per_blob_cold",
    "blobs_uploaded_cold",
    "blobs_mounted_cold",
    *(f"{who}_{phase}_s" for who in ("cpu", "source_cpu", "mirror_cpu")
      for phase in ("cold", "noop")),
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
    for key in ("cold_wall_s", "noop_wall_s", "requests_per_unchanged_tag", "peak_rss_cold_mib",
                "startup_s"):
        assert measures[key]["passed"] in (True, False), key  # judged against its target
    runs = written["runs"]
    phases = {(r["tool"], r["phase"]) for r in runs}
    assert phases == {(t, p) for t in ("mirrord", "skopeo")
                      for p in ("cold", "noop", "startup-cold", "startup")}
    loopback = [r for r in runs if r["phase"] in ("cold", "noop")]
    assert written["corpus"]["tags"] == sum(r["tags"] for r in loopback) // 4
    for r in runs:  # every blob that reached the mirror was counted, for both tools
        assert r["mirror"]["errors"] == 0, r
        if r["phase"] == "cold":
            assert r["mirror"]["put_upload_done"] + r["mirror"]["mounted"] > 0, r
        if r["phase"].startswith("startup"):
            assert 0 < r["startup_s"] < r["wall_s"], r  # the tap saw the first connection

    # TLS, verified: registries offered h2 and every request of both tools arrived over TLS
    # (an unverified or plain-HTTP client would have failed the handshake or been refused).
    assert written["options"]["plain_http"] is False
    transport = written["transport"]
    assert transport["tls"] is True and transport["alpn_offered"] == "h2"
    assert set(transport["protocols"]) == {"mirrord", "skopeo"}
    imports = written["importtime"]
    assert imports["total_ms"] > 0 and "mirrord" in imports["by_package_ms"]
    assert "mirrord's imports" in proc.stdout


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
    assert proxy.first_connection_after(0.0) is not None


def test_tls_verifies_through_the_delay_proxy(registry_factory: Any, tmp_path: Path) -> None:
    """The proxy forwards TCP, so the registry's certificate (issued for 127.0.0.1 by the
    session CA) verifies at the proxy's address, and fails without the CA."""
    tls = ca_and_leaf(tmp_path / "tls")
    registry: RegistryProcess = registry_factory(tls=tls)
    with DelayProxy("127.0.0.1", registry.port, delay_ms=5) as proxy:
        with httpx.Client(verify=registry.ssl_context()) as client:
            assert client.get(f"https://{proxy.host}/v2/").status_code == 200
        with httpx.Client() as untrusting, pytest.raises(httpx.ConnectError, match="verify"):
            untrusting.get(f"https://{proxy.host}/v2/")


def test_the_tools_are_given_the_ca_not_insecure(tmp_path: Path) -> None:
    trust = Trust(tmp_path / "ca.crt", tmp_path / "certs.d")
    job = Job("127.0.0.1:5000", ("library/alpine",))
    config = Mirrord(tmp_path, "127.0.0.1:5001", trust=trust).config(job)
    assert config.count(f'ca_file: "{tmp_path / "ca.crt"}"') == 2 and "insecure" not in config
    skopeo = Skopeo(tmp_path, "127.0.0.1:5001", trust=trust)
    (argv,) = skopeo.invocations(job, tmp_path / "run")
    assert "--dest-cert-dir" in argv and "--dest-tls-verify=true" in argv
    source = (tmp_path / "run.skopeo.yaml").read_text()
    assert "tls-verify: true" in source and str(tmp_path / "certs.d") in source
    plain = Mirrord(tmp_path, "127.0.0.1:5001", trust=PLAIN).config(job)
    assert plain.count("insecure: true") == 2  # --plain-http: the old loopback profile


@pytest.mark.parametrize("host", ["10.0.0.1:5000", "registry.example:443", "[::2]:5000"])
def test_the_benchmark_refuses_hosts_beyond_loopback(host: str, tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="loopback"):
        Job(host, ("library/alpine",))
    with pytest.raises(BenchError, match="loopback"):
        Mirrord(tmp_path, host)
    with pytest.raises(ValueError, match="loopback"):
        DelayProxy(host.rpartition(":")[0].strip("[]"), 5000)
