"""The two tools under test, configured to mirror exactly the same tags to the same place.

``skopeo sync`` names a destination repository after the last component of the
source repository (``<mirror>/<prefix>/<basename>:<tag>``), so mirrord's streams use
``to: <basename>`` under the same prefix. skopeo 1.9.3 takes the repositories
either one per invocation (``--src docker <host>/<repo>``, every tag) or all at once
from a YAML source file (``images: {<repo>: []}``, every tag); both forms are
supported, YAML (one process, so no per-repository start-up cost) by default.

Both tools verify TLS against the benchmark's CA (:class:`Trust`): mirrord through
``ca_file:`` for each registry, skopeo through a certificate directory holding ``ca.crt``
(``cert-dir:`` in its YAML source, ``--src-cert-dir``/``--dest-cert-dir`` on its command
line). With ``--plain-http`` both speak plain HTTP (mirrord ``insecure: true``, skopeo
``tls-verify: false``). Every host a tool is given must be on loopback.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.measure import BenchError, Proc, run_checked

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "m"  # mirror repositories are <mirror>/m/<basename>
SKOPEO_FORMS = ("yaml", "per-repo")
CLI = "import sys; from mirrord.cli import main; sys.exit(main())"


def loopback(host: str) -> str:
    """``host`` ("IP:PORT") if its address is a loopback one; BenchError otherwise (the
    benchmark never reaches beyond the machine)."""
    address = host.rpartition(":")[0].strip("[]")
    try:
        ok = ipaddress.ip_address(address).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise BenchError(f"{host}: the benchmark talks to loopback addresses only")
    return host


@dataclass(frozen=True)
class Trust:
    """How the tools reach the registries: TLS verified against ``ca_file`` (skopeo reads
    the same CA from ``certs_dir``/ca.crt), or plain HTTP when both are None."""

    ca_file: Path | None = None
    certs_dir: Path | None = None

    @property
    def tls(self) -> bool:
        return self.ca_file is not None


PLAIN = Trust()


@dataclass(frozen=True)
class Job:
    """What to mirror: ``repos`` of ``source`` (host:port); every tag, unless ``tags``
    names them per repository."""

    source: str
    repos: tuple[str, ...]
    tags: dict[str, tuple[str, ...]] | None = None

    def __post_init__(self) -> None:
        loopback(self.source)


def checkout_env() -> dict[str, str]:
    """The environment, with this checkout first on PYTHONPATH: the benchmark measures
    the mirrord it lives in, whatever else is installed."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT)}


def basename(repo: str) -> str:
    return repo.rsplit("/", 1)[-1]


class Mirrord:
    name = "mirrord"

    def __init__(
        self,
        work: Path,
        mirror: str,
        *,
        concurrency: int | None = None,
        entry: Path | None = None,
        trust: Trust = PLAIN,
    ) -> None:
        self.work = work
        self.entry = entry
        self.mirror = loopback(mirror)
        self.trust = trust
        self.concurrency = concurrency
        self.state_dir = work / "mirrord-state"

    def reset(self) -> None:
        """Forget everything (a cold run starts from an empty state directory too)."""
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def registry_settings(self, *, source: bool) -> str:
        """One registry's settings (a YAML flow mapping) for the generated config."""
        items = [f"ca_file: {json.dumps(str(self.trust.ca_file))}" if self.trust.tls
                 else "insecure: true"]
        if source and self.concurrency:
            items.append(f"max_concurrency: {self.concurrency}")
        return "{" + ", ".join(items) + "}"

    def config(self, job: Job, *, extra: tuple[str, ...] = ()) -> str:
        """The config file syncing ``job`` (``extra``: more top-level lines)."""
        lines = [
            "version: 1",
            f"state_dir: {self.state_dir}",
            f"mirror: docker://{self.mirror}/{PREFIX}",
            *extra,
            "registries:",
            f"  {job.source}: {self.registry_settings(source=True)}",
            f"  {self.mirror}: {self.registry_settings(source=False)}",
            "defaults: {max_tags: -1}",
            "streams:",
            *stream_lines(job),
        ]
        return "\n".join(lines) + "\n"

    def argv(self, config_path: Path) -> list[str]:
        if self.entry is not None:
            command = [sys.executable, str(self.entry.resolve())]
        else:
            command = [sys.executable, "-c", CLI]
        return [
            *command,
            "sync",
            "--config",
            str(config_path),
            "-o",
            "json",
        ]

    def sync(self, job: Job, log_base: Path) -> tuple[Proc, dict[str, Any]]:
        config_path = Path(f"{log_base}.yaml")
        config_path.write_text(self.config(job))
        proc = run_checked(self.argv(config_path), log_base, "mirrord sync", cwd=ROOT,
                           env=checkout_env())
        text = Path(f"{log_base}.out").read_text()
        try:
            summary: dict[str, Any] = json.loads(text[text.index("{") :])
        except ValueError as exc:
            raise BenchError(f"mirrord printed no JSON summary ({log_base}.out)") from exc
        if summary.get("failures"):
            raise BenchError(f"mirrord reported failures: {summary['failures'][:3]}")
        return proc, summary


class Skopeo:
    name = "skopeo"

    def __init__(self, work: Path, mirror: str, *, form: str = "yaml",
                 trust: Trust = PLAIN) -> None:
        if form not in SKOPEO_FORMS:
            raise ValueError(f"skopeo form must be one of {SKOPEO_FORMS}")
        self.work = work
        self.mirror = loopback(mirror)
        self.form = form
        self.trust = trust
        self.binary = shutil.which("skopeo") or "skopeo"
        # No registries.conf of the machine's (its mirrors or aliases could redirect a pull).
        self.registries_conf = work / "skopeo-registries.conf"
        self.registries_conf.write_text("")

    def reset(self) -> None:
        pass  # skopeo keeps no state

    def _tls_flags(self, side: str) -> list[str]:
        if not self.trust.tls:
            return [f"--{side}-tls-verify=false"]
        return [f"--{side}-tls-verify=true", f"--{side}-cert-dir", str(self.trust.certs_dir)]

    def _common(self) -> list[str]:
        return [self.binary, "sync", "--all", "--preserve-digests", *self._tls_flags("dest")]

    def yaml_source(self, job: Job) -> str:
        # In the YAML form the per-registry settings replace --src-cert-dir/--src-tls-verify.
        if self.trust.tls:
            tls = ["  tls-verify: true", f"  cert-dir: {json.dumps(str(self.trust.certs_dir))}"]
        else:
            tls = ["  tls-verify: false"]
        lines = [f"{job.source}:", *tls, "  images:"]
        for repo in job.repos:
            tags = list(job.tags[repo]) if job.tags and repo in job.tags else []
            lines.append(f"    {repo}: {json.dumps(tags)}")
        return "\n".join(lines) + "\n"

    def invocations(self, job: Job, log_base: Path) -> list[list[str]]:
        dest = f"{self.mirror}/{PREFIX}"
        if self.form == "yaml":
            source_file = Path(f"{log_base}.skopeo.yaml")
            source_file.write_text(self.yaml_source(job))
            return [[*self._common(), "--src", "yaml", "--dest", "docker", str(source_file), dest]]
        if job.tags:
            raise BenchError("the per-repo skopeo form mirrors every tag; use --skopeo-form yaml")
        return [
            [*self._common(), *self._tls_flags("src"), "--src", "docker", "--dest", "docker",
             f"{job.source}/{repo}", dest]
            for repo in job.repos
        ]

    def sync(self, job: Job, log_base: Path) -> tuple[Proc, dict[str, Any]]:
        env = {**os.environ, "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf)}
        procs = [
            run_checked(argv, Path(f"{log_base}.{i}"), "skopeo sync", env=env)
            for i, argv in enumerate(self.invocations(job, log_base))
        ]
        wall = sum(p.wall_s for p in procs)
        rss = max(p.maxrss_kib for p in procs)
        cpu = sum(p.cpu_s for p in procs)
        return Proc(procs[0].argv, 0, wall, rss, cpu, procs[0].started), {"invocations": len(procs)}


def stream_lines(job: Job) -> list[str]:
    """The ``streams:`` entries of a mirrord config for ``job``: one per repository,
    named after its last component, as skopeo names its destinations."""
    lines = []
    for repo in job.repos:
        lines += [f"  - from: {job.source}/{repo}", f"    to: {basename(repo)}"]
        if job.tags and repo in job.tags:
            lines.append(f"    tags: {json.dumps(list(job.tags[repo]))}")
    return lines


Tool = Mirrord | Skopeo
