"""SIGTERM and SIGINT to the one-shot commands, as `systemctl stop`, `podman stop` and
Ctrl-C send them, against real registries and real child processes (issue 11).

A copy in flight is made slow by the fault proxy in front of the source (a throttled
blob); the signal is sent once the mirror has been asked to start the upload.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness.daemon_support import wait_until
from harness.faultproxy import FaultProxy
from harness.faults import Throttle
from harness.images import RegistryHTTP, build_image, push
from harness.registry import RegistryProcess
from harness.synctools import Setup, assert_same_tree, sync_setup

from mirrord.state import JOB_DIED, JobRun, open_store

MiB = 1 << 20


def jobs(state_dir: Path) -> list[JobRun]:
    async def read() -> list[JobRun]:
        async with open_store(state_dir) as store:
            return await store.list_jobs(limit=50)

    return anyio.run(read)


def slow_source(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    mirror: RegistryProcess,
    repo: str,
    *,
    small: int,
    big_size: int = 0,
    bandwidth: float = 2 * MiB,
) -> tuple[Setup, FaultProxy, RegistryHTTP]:
    """`small` tags of 200 kB images (and a tag `big` with a `big_size` layer), served
    through a proxy sending blobs at `bandwidth` bytes/s."""
    source = registry_factory()
    client = source.client()
    for i in range(small):
        push(client, build_image(repo, f"s{i:02d}", seed=f"{repo}/{i}", layer_sizes=(200_000,)))
    if big_size:
        push(client, build_image(repo, "big", seed=f"{repo}/big", layer_sizes=(big_size,)))
    proxy: FaultProxy = fault_proxy_factory(source)
    proxy.on("blobs", Throttle(bandwidth), methods="GET")
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror.host}/stop",
        streams=[{"from": f"{proxy.host}/{repo}", "max_tags": -1, "signatures": False}],
        sources=[],
        settings={proxy.host: {"insecure": True}},
    )
    return setup, proxy, client


def copying(mirror: RegistryProcess, since: int) -> bool:
    return mirror.count("POST", r"/blobs/uploads/", since=since) > 0


def check_consistent(source: RegistryHTTP, mirror: RegistryHTTP, repo: str) -> list[str]:
    """Every tag the mirror has is the source's, children and blobs included."""
    tags = [t for t in source.tags(repo) if mirror.head_manifest(f"stop/{repo}", t)]
    for tag in tags:
        assert_same_tree(source, repo, mirror, f"stop/{repo}", tag)
    return tags


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_mid_copy_cuts_it_after_the_grace_period_and_reports(
    signum: signal.Signals,
    code: int,
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    setup, proxy, source = slow_source(
        tmp_path, registry_factory, fault_proxy_factory, mirror_registry, repo_name,
        small=2, big_size=8 * MiB,
    )
    mark = mirror_registry.mark()
    proc = setup.sync_process("-o", "json", "--no-progress", "--stop-timeout", "1")
    wait_until(lambda: proc.poll() is not None or proxy.log.count("blobs", method="GET") >= 3,
               timeout=30, what="the copies to start")
    time.sleep(0.5)  # the big layer is streaming now
    sent = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent

    assert proc.returncode == code, err[-3000:]
    assert 0.8 <= took < 6, err  # the grace period, then the cut
    summary = json.loads(out[out.index("{"):])
    assert summary["interrupted"] == signum.name
    assert summary["images"]["cut"] >= 1  # the big one was cut mid-copy
    assert summary["images"]["failed"] == 0
    assert f"{signum.name} received: no new copy starts" in err
    assert f"interrupted by {signum.name} (copies in flight were cut)" in err
    job = jobs(setup.state_dir)[0]
    assert job.status == "Failed" and job.message.startswith("interrupted")
    assert job.finished is not None
    # a tag never names what the mirror lacks; the big image never got its tag
    assert "big" not in check_consistent(source, mirror_client, repo_name)
    assert mirror_registry.count("PUT", r"/manifests/big$", since=mark) == 0
    if signum != signal.SIGTERM:
        source.close()
        return
    # the next run picks up where it stopped
    again = subprocess.run(
        [sys.executable, "-m", "mirrord", "sync", "--config", str(setup.path), "-o", "json"],
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert set(check_consistent(source, mirror_client, repo_name)) == {"s00", "s01", "big"}
    source.close()


def test_a_second_signal_cuts_at_once_and_the_summary_keeps_the_runs_time(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> None:
    setup, proxy, source = slow_source(
        tmp_path, registry_factory, fault_proxy_factory, mirror_registry, repo_name,
        small=2, big_size=8 * MiB,
    )
    started = time.monotonic()
    proc = setup.sync_process("-o", "json", "--no-progress", "--stop-timeout", "60")
    wait_until(lambda: proc.poll() is not None or proxy.log.count("blobs", method="GET") >= 3,
               timeout=30, what="the copies to start")
    time.sleep(0.5)  # the big layer is streaming now
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # the second: no grace period
    out, err = proc.communicate(timeout=30)
    ran = time.monotonic() - started

    assert proc.returncode == 143, err[-3000:]
    assert time.monotonic() - sent < 10, err  # not the 60 s grace period
    summary = json.loads(out[out.index("{"):])
    assert summary["images"]["cut"] >= 1
    assert 1.0 <= summary["seconds"] <= ran, summary["seconds"]
    source.close()


def test_sigterm_lets_copies_in_flight_finish_and_starts_no_new_one(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    """20 tags: 16 copies start at once (the run's image limit), 4 wait. SIGTERM with a
    long grace period: the 16 finish, the 4 never start; exit 143, the job says so."""
    setup, proxy, source = slow_source(
        tmp_path, registry_factory, fault_proxy_factory, mirror_registry, repo_name,
        small=20, bandwidth=1 * MiB,
    )
    mark = mirror_registry.mark()
    proc = setup.sync_process("-o", "json", "--no-progress", "--stop-timeout", "60")
    wait_until(lambda: proc.poll() is not None or copying(mirror_registry, mark), timeout=30,
               what="the copies to start")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 143, err[-3000:]
    summary = json.loads(out[out.index("{"):])
    images = summary["images"]
    assert summary["interrupted"] == "SIGTERM"
    assert images["cut"] == 0 and images["failed"] == 0
    assert images["skipped"] >= 1 and images["copied"] + images["skipped"] == 20
    assert "copies in flight finished" in err
    job = jobs(setup.state_dir)[0]
    assert job.status == "Failed"
    assert job.message.startswith(f"interrupted: a stop was requested, {images['skipped']} ")
    assert len(check_consistent(source, mirror_client, repo_name)) == images["copied"]
    source.close()
    del proxy


def test_import_image_stops_on_sigterm_too(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> None:
    setup, proxy, source = slow_source(
        tmp_path, registry_factory, fault_proxy_factory, mirror_registry, repo_name,
        small=0, big_size=8 * MiB,
    )
    mark = mirror_registry.mark()
    args = ["import-image", f"{repo_name}:big", "--from", f"{proxy.host}/{repo_name}:big",
            "--confirm", "--insecure", "-o", "json", "--stop-timeout", "0.5"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirrord", *args[:1], "--config", str(setup.path), *args[1:]],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    wait_until(lambda: proc.poll() is not None or copying(mirror_registry, mark), timeout=30,
               what="the import to start copying")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err[-3000:]
    document = json.loads(out[out.index("{"):])
    assert document["interrupted"] == "SIGTERM"
    assert document["error"]["reason"] == "Interrupted"
    job = jobs(setup.state_dir)[0]
    assert (job.kind, job.status, job.message) == ("sync", "Failed", "interrupted: 1 copies "
                                                   "cut short, 0 not started (the mirror keeps "
                                                   "their previous images)")

    source.close()


def test_prune_confirm_stops_on_sigterm(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    repo_name: str,
) -> None:
    """Two revisions of a tag, then a prune whose mirror answers slowly: SIGTERM, the
    grace period, the cut; the prune job is recorded as interrupted, exit 143."""
    source, mirror = registry_factory(), registry_factory()
    front: FaultProxy = fault_proxy_factory(mirror)
    client = source.client()
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{front.host}/stop",
        streams=[{"from": f"{source.host}/{repo_name}", "tags": ["v1"], "signatures": False}],
        sources=[source],
    )
    for revision in range(2):
        push(client, build_image(repo_name, "v1", seed=f"{repo_name}/{revision}"))
        assert setup.sync("--no-progress").exit_code == 0
    front.log.clear()
    front.latency = 5.0
    prune = subprocess.Popen(
        [sys.executable, "-m", "mirrord", "prune", "--config", str(setup.path), "--confirm",
         "--keep-tag-revisions", "0", "--keep-younger-than", "0", "--stop-timeout", "0.5",
         "-o", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    wait_until(lambda: prune.poll() is not None or front.log.count("manifests") >= 1,
               timeout=30, what="the prune to read the mirror")
    prune.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out, err = prune.communicate(timeout=30)
    assert prune.returncode == 143, err[-3000:]
    assert time.monotonic() - sent < 4.0, err  # the grace period, not the slow answer
    assert json.loads(out[out.index("{"):])["error"]["reason"] == "Interrupted"
    job = next(j for j in jobs(setup.state_dir) if j.kind == "prune")
    assert (job.status, job.message) == ("Failed", "interrupted")
    client.close()


def test_a_killed_runs_job_is_closed_when_noticed_and_says_its_end_is_unknown(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> None:
    setup, _, source = slow_source(
        tmp_path, registry_factory, fault_proxy_factory, mirror_registry, repo_name,
        small=0, big_size=4 * MiB,
    )
    mark = mirror_registry.mark()
    proc = setup.sync_process("--no-progress")
    wait_until(lambda: proc.poll() is not None or copying(mirror_registry, mark), timeout=30,
               what="the copy to start")
    proc.kill()
    proc.communicate(timeout=10)
    killed = datetime.now(UTC)
    assert [j.status for j in jobs(setup.state_dir)] == ["Running"]
    time.sleep(1.1)
    noticed = datetime.now(UTC)
    again = setup.sync_process("--no-progress")
    again.communicate(timeout=120)
    assert again.returncode == 0
    old = jobs(setup.state_dir)[-1]
    assert (old.status, old.message) == ("Failed", JOB_DIED)
    assert "when it ended is unknown" in old.message
    assert old.finished is not None and old.finished >= noticed > killed
    source.close()
