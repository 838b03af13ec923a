"""Shared helpers for tests that run `mirrord sync` against the harness registries."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner, Result

from harness.images import RegistryHTTP, push_image
from harness.registry import RegistryProcess
from mirrord.cli import main


def write_auth_file(path: Path, registries: dict[str, tuple[str, str]]) -> Path:
    """A containers auth.json with a base64 `auth` entry per registry host."""
    auths = {
        host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
        for host, (user, password) in registries.items()
    }
    path.write_text(json.dumps({"auths": auths}))
    return path


@dataclass
class Setup:
    """A config file in a temp dir: its path, its state dir and its auth file."""

    path: Path
    state_dir: Path
    auth_file: Path

    def sync(self, *args: str) -> Result:
        """`mirrord sync --config PATH ARGS…` in this process."""
        return CliRunner().invoke(main, ["sync", "--config", str(self.path), *args])

    def sync_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        result = self.sync("-o", "json", *args)
        # The document starts a line; a log line mixed into the output may hold a "{" too
        # (gpgv's status dict, quoted in a debug line).
        start = re.search(r"^\{", result.output, re.MULTILINE)
        assert start is not None, result.output
        return result.exit_code, json.loads(result.output[start.start():])

    def sync_measured(self, *args: str, timeout: float = 120.0) -> Measured:
        """`python -m mirrord sync -o json ARGS…` as a child process: its exit code,
        output, wall-clock seconds and peak resident memory (see `run_measured`)."""
        return run_measured(
            [sys.executable, "-m", "mirrord", "sync", "--config", str(self.path), "-o", "json",
             *args],
            timeout=timeout,
        )

    def sync_process(self, *args: str, **kw: Any) -> subprocess.Popen[str]:
        """`mirrord sync` as a real child process (for kills and restarts)."""
        return subprocess.Popen(
            [sys.executable, "-m", "mirrord", "sync", "--config", str(self.path), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **kw.pop("env", {})}, **kw,
        )


@dataclass(frozen=True)
class Measured:
    """A finished child process: exit code, stdout, stderr, seconds, peak RSS in bytes."""

    code: int
    stdout: str
    stderr: str
    seconds: float
    max_rss: int

    def document(self) -> dict[str, Any]:
        """The JSON document on stdout (asserting there is one)."""
        start = self.stdout.find("{")
        assert start >= 0, f"no JSON document on stdout; stderr: {self.stderr[-2000:]}"
        document: dict[str, Any] = json.loads(self.stdout[start:])
        return document


def run_measured(argv: list[str], *, timeout: float) -> Measured:
    """Run `argv` to its end (killed past `timeout`, which fails the test) and measure it.

    Peak RSS is the child's own `VmHWM`, read from /proc while it runs: `ru_maxrss` from
    wait4 is useless here, since Linux keeps the high-water mark of the memory a process
    had before `exec` (the forked copy of pytest's), so every child of a grown test
    session would report at least the session's size."""
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as home,
    ):
        # No ambient credentials (the session keyring, podman's and docker's files that
        # other tests' logins fill): what reaches a host is only what the test configured.
        env = {k: v for k, v in os.environ.items()
               if k not in ("DBUS_SESSION_BUS_ADDRESS", "REGISTRY_AUTH_FILE", "DOCKER_CONFIG")}
        env.update(HOME=home, XDG_RUNTIME_DIR=home)
        started = time.monotonic()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
        deadline = started + timeout
        peak = 0
        while True:
            peak = max(peak, _high_water_rss(proc.pid))
            pid, status = os.waitpid(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.waitpid(proc.pid, 0)
                proc.returncode = -9
                raise AssertionError(f"{argv[2:5]}… still running after {timeout}s: killed")
            time.sleep(0.02)
        seconds = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(proc.returncode, out.read().decode(errors="replace"),
                        err.read().decode(errors="replace"), seconds, peak)


def _high_water_rss(pid: int) -> int:
    """`VmHWM` of a running process, in bytes (0 once it has exited)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0  # a zombie has no memory lines


def corrupt_blob(registry: RegistryProcess, digest: str) -> None:
    """Flip a byte in the middle of a blob in the registry's storage: its content no
    longer matches its digest (the registry serves it as it is)."""
    hex_digest = digest.split(":")[1]
    data = next(registry.storage_path.rglob(f"blobs/sha256/{hex_digest[:2]}/{hex_digest}/data"))
    corrupted = bytearray(data.read_bytes())
    corrupted[len(corrupted) // 2] ^= 0xFF
    data.write_bytes(bytes(corrupted))


def sync_setup(
    tmp_path: Path,
    *,
    mirror: str,
    streams: list[dict[str, Any]],
    sources: list[RegistryProcess],
    extra: dict[str, Any] | None = None,
    settings: dict[str, dict[str, Any]] | None = None,
) -> Setup:
    """Write a config mirroring `streams` from `sources` (plain HTTP, harness logins)."""
    auth_file = write_auth_file(
        tmp_path / "auth.json",
        {r.host: (r.username, r.password) for r in sources if r.users},
    )
    registries: dict[str, Any] = {}
    for registry in sources:
        registries[registry.host] = {"insecure": True, "auth_file": str(auth_file)}
        if registry.token_server is not None:
            # A plain-HTTP token realm on another port gets credentials only when its
            # host is configured (mirrord's rule), as a real user would list it.
            registries[registry.token_server.host] = {}
    if mirror.startswith("docker://"):
        host = mirror.removeprefix("docker://").split("/", 1)[0]
        registries.setdefault(host, {"insecure": True})
    for host, more in (settings or {}).items():
        registries.setdefault(host, {"insecure": True}).update(more)
    state_dir = tmp_path / "state"
    document = {
        "version": 1,
        "mirror": mirror,
        "state_dir": str(state_dir),
        "registries": registries,
        "streams": streams,
        **(extra or {}),
    }
    path = tmp_path / "mirrord.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return Setup(path, state_dir, auth_file)


def big_tags_behind_a_slow_mirror(
    tmp_path: Path,
    mirror: RegistryProcess,
    source: RegistryProcess,
    client: RegistryHTTP,
    repo: str,
    *,
    prefix: str,
    count: int,
    size: int,
) -> tuple[list[str], Setup]:
    """`count` tags of `size`-byte layers, mirrored one request at a time: a run long
    enough to interrupt. Returns the tags and the config."""
    tags = [f"v{i}" for i in range(count)]
    for tag in tags:
        push_image(client, repo, tag, seed=f"{repo}/{tag}", layer_sizes=(size,))
    setup = sync_setup(
        tmp_path,
        mirror=f"docker://{mirror.host}/{prefix}",
        streams=[{"from": f"{source.host}/{repo}", "max_tags": -1}],
        sources=[source],
        settings={mirror.host: {"max_concurrency": 1}},
    )
    return tags, setup


def manifest_bytes(client: RegistryHTTP, repo: str, reference: str) -> bytes:
    return client.get_manifest(repo, reference).raw


def assert_same_tree(
    source: RegistryHTTP, src_repo: str, mirror: RegistryHTTP, dst_repo: str, tag: str
) -> str:
    """The mirror's tag is byte-identical to the source's, children and blobs included."""
    fetched = source.get_manifest(src_repo, tag)
    mirrored = mirror.get_manifest(dst_repo, tag)
    assert mirrored.raw == fetched.raw, f"{dst_repo}:{tag} differs from the source"
    document = json.loads(fetched.raw)
    for child in document.get("manifests", []):
        assert mirror.get_manifest(dst_repo, child["digest"]).raw == source.get_manifest(
            src_repo, child["digest"]
        ).raw
    for blob in [document.get("config"), *document.get("layers", [])]:
        if blob:
            assert mirror.blob_exists(dst_repo, blob["digest"])
    return fetched.digest
