"""The daemon's view of each registry's pacing: Docker Hub's pulls left and the requests
allowed in flight, as gauges on /metrics (a real daemon, the fault proxy's DockerHubLimit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.daemon_support import DaemonProcess
from harness.faultproxy import DockerHubLimit, FaultProxy
from harness.images import build_image, push
from harness.registry import RegistryProcess
from harness.synctools import sync_setup


def test_the_pulls_left_and_the_concurrency_limit_are_gauges(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> None:
    source = registry_factory()
    with source.client() as client:
        for i in range(3):
            push(client, build_image(repo_name, f"v{i}", seed=f"{repo_name}/{i}"))
    proxy: FaultProxy = fault_proxy_factory(source)
    proxy.ratelimit = DockerHubLimit(limit=100, remaining=40)
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror_registry.host}/{repo_name}",
        streams=[{"from": f"{proxy.host}/{repo_name}", "to": "app", "schedule": "1h",
                  "signatures": False}],
        sources=[],
        settings={proxy.host: {"insecure": True, "max_concurrency": 4}},
        extra={"server": {"listen": "127.0.0.1:0"}},
    )
    with DaemonProcess(setup.path) as daemon:
        daemon.wait_for_runs("app", 1)
        remaining = daemon.metric("mirrord_registry_ratelimit_remaining", registry=proxy.host)
        limit = daemon.metric("mirrord_registry_concurrency_limit", registry=proxy.host)
        mirror_limit = daemon.metric(
            "mirrord_registry_concurrency_limit", registry=mirror_registry.host
        )
        metrics = daemon.metrics()
    assert remaining == 37 == proxy.ratelimit.remaining  # three manifest GETs were pulls
    assert limit == 4 and mirror_limit == 6  # no 429: max_concurrency each
    # the mirror sends no such header: no figure for it
    assert not any(
        name == "mirrord_registry_ratelimit_remaining" and dict(labels).get("registry")
        == mirror_registry.host
        for name, labels in metrics
    )
