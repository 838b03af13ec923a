"""SIGTERM and SIGINT to the one-shot commands, as `systemctl stop`, `podman stop` and
Ctrl-C send them, against real registries and real child processes (issue 11).

A copy in flight is made slow by the fault proxy in front of the source (a throttled
blob); the signal is sent once the mirror has been asked to start the upload.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from harness.faultproxy import FaultProxy
from harness.images import RegistryHTTP, build_image, push
from harness.registry import RegistryProcess
from harness.stopping import (
    MiB,
    SlowSource,
    document,
    jobs,
    mirrord_process,
    slow_source,
    started,
)
from harness.synctools import sync_setup

from mirrord.state import JOB_DIED


@pytest.fixture
def slow(
    tmp_path: Path,
    registry_factory: Any,
    fault_proxy_factory: Any,
    mirror_registry: RegistryProcess,
    repo_name: str,
) -> Iterator[Callable[..., SlowSource]]:
    """`slow(small=N, big_size=B, bandwidth=R)`: a slow source into the mirror registry;
    its client is closed after the test, whatever the test's outcome."""
    made: list[SlowSource] = []

    def make(**kw: Any) -> SlowSource:
        made.append(
            slow_source(
                tmp_path, registry_factory, fault_proxy_factory, mirror_registry, repo_name, **kw
            )
        )
        return made[-1]

    yield make
    for source in made:
        source.client.close()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_stop_signal_mid_copy_cuts_it_after_the_grace_period_and_reports(
    signum: signal.Signals,
    code: int,
    slow: Callable[..., SlowSource],
    mirror_registry: RegistryProcess,
    mirror_client: RegistryHTTP,
    repo_name: str,
) -> None:
    source = slow(small=2, big_size=8 * MiB)
    setup, proxy = source.setup, source.proxy
    mark = mirror_registry.mark()
    proc = setup.sync_process("-o", "json", "--no-progress", "--stop-timeout", "1")
    started(proc, lambda: proxy.log.count("blobs", method="GET") >= 3, "the copies to start")
    time.sleep(0.5)  # the big layer is streaming now
    sent = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent

    assert proc.returncode == code, err[-3000:]
    assert 0.8 <= took < 6, err  # the grace period, then the cut
    summary = document(out)
    assert summary["interrupted"] == signum.name
    assert summary["images"]["cut"] >= 1  # the big one was cut mid-copy
    assert summary["images"]["failed"] == 0
    assert f"{signum.name} received: no new copy starts" in err
    assert f"interrupted by {signum.name} (copies in flight were cut)" in err
    job = jobs(setup.state_dir)[0]
    assert job.status == "Failed" and job.message.startswith("interrupted")
    assert job.finished is not None
    # a tag never names what the mirror lacks; the big image never got its tag
    assert "big" not in source.consistent(mirror_client, repo_name)
    assert mirror_registry.count("PUT", r"/manifests/big$", since=mark) == 0
    if signum != signal.SIGTERM:
        return
    # the next run picks up where it stopped
    again = subprocess.run(
        [sys.executable, "-m", "mirrord", "sync", "--config", str(setup.path), "-o", "json"],
        capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert set(source.consistent(mirror_client, repo_name)) == {"s00", "s01", "big"}


def test_a_second_signal_cuts_at_once_and_the_summary_keeps_the_runs_time(
    slow: Callable[..., SlowSource],
) -> None:
    source = slow(small=2, big_size=8 * MiB)
    setup, proxy = source.setup, source.proxy
    began = time.monotonic()
    proc = setup.sync_process("-o", "json", "--no-progress", "--stop-timeout", "60")
    started(proc, lambda: proxy.log.count("blobs", method="GET") >= 3, "the copies to start")
    time.sleep(0.5)  # the big layer is streaming now
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)  # the second: no grace period
    out, err = proc.communicate(timeout=30)
    ran = time.monotonic() - began

    assert proc.returncode == 143, err[-3000:]
    assert time.monotonic() - sent < 10, err  # not the 60 s grace period
    summary = document(out)
    assert summary["images"]["cut"] >= 1
    assert 1.0 <= summary["seconds"] <= ran, summary["seconds"]


def test_sigterm_lets_copies_in_flight_finish_and_starts_no_new_one(
    slow: Callable[..., SlowSource], mirror_client: RegistryHTTP, repo_name: str
) -> None:
    """20 tags: 16 copies start at once (the run's image limit), 4 wait. SIGTERM with a
    long grace period: the 16 finish, the 4 never start; exit 143, the job says so."""
    source = slow(small=20, bandwidth=1 * MiB)
    proc = source.start("sync", "-o", "json", "--no-progress", "--stop-timeout", "60")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)

    assert proc.returncode == 143, err[-3000:]
    summary = document(out)
    images = summary["images"]
    assert summary["interrupted"] == "SIGTERM"
    assert images["cut"] == 0 and images["failed"] == 0
    assert images["skipped"] >= 1 and images["copied"] + images["skipped"] == 20
    assert "copies in flight finished" in err
    job = jobs(source.setup.state_dir)[0]
    assert job.status == "Failed"
    assert job.message.startswith(f"interrupted: a stop was requested, {images['skipped']} ")
    assert len(source.consistent(mirror_client, repo_name)) == images["copied"]


def test_import_image_stops_on_sigterm_too(
    slow: Callable[..., SlowSource], repo_name: str
) -> None:
    source = slow(small=0, big_size=8 * MiB)
    proc = source.start(
        "import-image", f"{repo_name}:big", "--from", f"{source.proxy.host}/{repo_name}:big",
        "--confirm", "--insecure", "-o", "json", "--stop-timeout", "0.5",
    )
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err[-3000:]
    found = document(out)
    assert found["interrupted"] == "SIGTERM"
    assert found["error"]["reason"] == "Interrupted"
    job = jobs(source.setup.state_dir)[0]
    assert (job.kind, job.status, job.message) == ("sync", "Failed", "interrupted: 1 copies "
                                                   "cut short, 0 not started (the mirror keeps "
                                                   "their previous images)")


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
    prune = mirrord_process(
        setup, "prune", "--confirm", "--keep-tag-revisions", "0", "--keep-younger-than", "0",
        "--stop-timeout", "0.5", "-o", "json",
    )
    started(prune, lambda: front.log.count("manifests") >= 1, "the prune to read the mirror")
    prune.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out, err = prune.communicate(timeout=30)
    assert prune.returncode == 143, err[-3000:]
    assert time.monotonic() - sent < 4.0, err  # the grace period, not the slow answer
    assert document(out)["error"]["reason"] == "Interrupted"
    job = next(j for j in jobs(setup.state_dir) if j.kind == "prune")
    assert (job.status, job.message) == ("Failed", "interrupted")
    client.close()


def test_a_killed_runs_job_is_closed_when_noticed_and_says_its_end_is_unknown(
    slow: Callable[..., SlowSource],
) -> None:
    source = slow(small=0, big_size=4 * MiB)
    setup = source.setup
    proc = source.start("sync", "--no-progress")
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
