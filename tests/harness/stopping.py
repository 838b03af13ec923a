"""Helpers for the stop-signal tests (tests/cli/test_stop_signals.py): a source made slow
by the fault proxy, `mirrord` child processes started and waited on until their copies
begin, their JSON documents and the jobs they left."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from harness.daemon_support import wait_until
from harness.faultproxy import FaultProxy
from harness.faults import Throttle
from harness.images import RegistryHTTP, build_image, push
from harness.registry import RegistryProcess
from harness.synctools import Setup, assert_same_tree, sync_setup
from mirrord.state import JobRun, open_store

MiB = 1 << 20


def jobs(state_dir: Path) -> list[JobRun]:
    """The jobs the state recorded, newest first."""

    async def read() -> list[JobRun]:
        async with open_store(state_dir) as store:
            return await store.list_jobs(limit=50)

    return anyio.run(read)


def document(out: str) -> dict[str, Any]:
    """The JSON document a command printed (after any text before it)."""
    found: dict[str, Any] = json.loads(out[out.index("{"):])
    return found


def mirrord_process(setup: Setup, command: str, *args: str) -> subprocess.Popen[str]:
    """`python -m mirrord COMMAND --config PATH ARGS…` as a real child process."""
    return subprocess.Popen(
        [sys.executable, "-m", "mirrord", command, "--config", str(setup.path), *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def started(proc: subprocess.Popen[str], condition: Callable[[], bool], what: str) -> None:
    """Wait (30 s at most) until `condition` holds, or the process already ended."""
    wait_until(lambda: proc.poll() is not None or condition(), timeout=30, what=what)


@dataclass
class SlowSource:
    """A source behind a throttling fault proxy, mirrored into `stop/` of `mirror`."""

    setup: Setup
    proxy: FaultProxy
    client: RegistryHTTP
    mirror: RegistryProcess

    def copying(self, since: int) -> bool:
        """The mirror has been asked to start an upload since the log mark `since`."""
        return self.mirror.count("POST", r"/blobs/uploads/", since=since) > 0

    def start(self, command: str, *args: str) -> subprocess.Popen[str]:
        """Start `mirrord COMMAND ARGS…` and return once its first upload began."""
        mark = self.mirror.mark()
        if command == "sync":
            proc = self.setup.sync_process(*args)
        else:
            proc = mirrord_process(self.setup, command, *args)
        started(proc, lambda: self.copying(mark), f"the {command} to start copying")
        return proc

    def consistent(self, mirror: RegistryHTTP, repo: str) -> list[str]:
        """Every tag the mirror has is the source's, children and blobs included."""
        tags = [t for t in self.client.tags(repo) if mirror.head_manifest(f"stop/{repo}", t)]
        for tag in tags:
            assert_same_tree(self.client, repo, mirror, f"stop/{repo}", tag)
        return tags


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
) -> SlowSource:
    """`small` tags of 200 kB images (and a tag `big` with a `big_size` layer), served
    through a proxy sending blobs at `bandwidth` bytes/s. Close `.client` when done."""
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
    return SlowSource(setup, proxy, client, mirror)
