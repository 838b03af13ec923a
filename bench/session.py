"""One benchmark session: the registries, the two tools, and every measured run.

The source registry serves the cached corpus; the mirror starts empty and is wiped
(stopped, storage deleted, restarted) before every cold sync. Both serve TLS with a
certificate issued by a CA made for the session (``--plain-http``: plain HTTP), and
both tools are given that CA. See bench/README.md for the phases and the measures.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import sys
from pathlib import Path
from typing import Any

from harness.registry import RegistryProcess
from harness.tls import ca_and_leaf

from bench import corpus as corpus_mod
from bench.corpus import BIG_REPO, FULL, SMOKE, TINY_REPO, Generated
from bench.counts import MirrorRequests, SourceRequests
from bench.measure import BenchError, RunRecord, compile_checkout, process_cpu, warm_page_cache
from bench.options import Options
from bench.startup import importtime
from bench.tools import PLAIN, PREFIX, ROOT, Job, Mirrord, Skopeo, Tool, Trust, basename
from bench.wanproxy import DelayProxy

# The registries log errors only (the access log, which counts requests, stays on):
# their info logging costs CPU that both tools would pay on this shared machine.
QUIET: dict[str, Any] = {"log": {"level": "error"}}


class Bench:
    def __init__(self, opts: Options, work: Path) -> None:
        self.opts = opts
        self.work = work
        self.load_start = [round(x, 2) for x in os.getloadavg()]
        if self.load_start[0] > (os.cpu_count() or 1):
            print(f"warning: load average {self.load_start[0]} before the benchmark: other "
                  "work is running, so the absolute times will be noisy", file=sys.stderr)
        self.logs = work / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        spec = SMOKE if opts.smoke else FULL
        self.corpus: Generated = corpus_mod.prepare(spec, opts.cache_dir, opts.blob_mib)
        self.expected = self._expected_digests()
        self.trust = PLAIN
        tls: Any = False
        if not opts.plain_http:
            tls = ca_and_leaf(work / "tls")
            self.trust = Trust(tls.ca_path, tls.certs_dir)
        storage = {"filesystem": {"rootdirectory": str(self.corpus.storage)}}
        self.source = RegistryProcess(
            work / "source", tls=tls, extra_config={"storage": storage, **QUIET}
        ).start()
        self.mirror = RegistryProcess(work / "mirror", tls=tls, extra_config=QUIET).start()
        self.runs: list[RunRecord] = []
        self.importtime: dict[str, Any] = {}
        self.tools: list[Tool] = [
            Mirrord(work, self.mirror.host, concurrency=opts.concurrency,
                    entry=opts.mirrord_entry, trust=self.trust),
            Skopeo(work, self.mirror.host, form=opts.skopeo_form, trust=self.trust),
        ]

    def _expected_digests(self) -> dict[str, dict[str, str]]:
        expected = dict(self.corpus.digests)
        if self.opts.blob_mib:
            home = self.opts.cache_dir / self.corpus.spec.key()
            meta = json.loads((home / f"big-{self.opts.blob_mib}.json").read_text())
            expected[BIG_REPO] = {corpus_mod.big_tag(self.opts.blob_mib): meta["digest"]}
        return expected

    def close(self) -> None:
        self.source.stop()
        self.mirror.stop()

    # -- one measured run -------------------------------------------------------------------
    def measure(self, tool: Tool, phase: str, run: int, job: Job,
                via: DelayProxy | None = None) -> RunRecord:
        """Run ``tool`` on ``job`` once and record it. ``via``: the proxy ``job.source``
        points at (its connections are counted, its first one timed)."""
        tags = sum(len(self._tags(job, repo)) for repo in job.repos)
        source_mark, mirror_mark = self.source.mark(), self.mirror.mark()
        connections = via.connections if via else 0
        cpu = self._registry_cpu()
        proc, summary = tool.sync(job, self.logs / f"{run}-{phase}-{tool.name}")
        source_cpu, mirror_cpu = (after - before for after, before in
                                  zip(self._registry_cpu(), cpu, strict=True))
        record = RunRecord(
            tool=tool.name, phase=phase, run=run, wall_s=proc.wall_s,
            maxrss_mib=proc.maxrss_kib / 1024, tags=tags, cpu_s=proc.cpu_s,
            source_cpu_s=source_cpu, mirror_cpu_s=mirror_cpu,
            source=SourceRequests.of(self.source.access_log(since=source_mark)),
            mirror=MirrorRequests.of(self.mirror.access_log(since=mirror_mark)),
            proxy_connections=(via.connections - connections) if via else None,
            startup_s=via.first_connection_after(proc.started) if via else None,
            summary=summary,
        )
        self.runs.append(record)
        startup = f" start-up {record.startup_s:.3f} s" if record.startup_s is not None else ""
        print(f"  run {run} {phase:<12} {tool.name:<8} {proc.wall_s:7.2f} s "
              f"{record.maxrss_mib:6.1f} MiB {record.source.total:5} upstream requests  "
              f"cpu {proc.cpu_s:5.2f} s (source {source_cpu:5.2f} s, mirror "
              f"{mirror_cpu:5.2f} s){startup}", file=sys.stderr)
        return record

    def _registry_cpu(self) -> tuple[float, float]:
        return process_cpu(self.source.pid), process_cpu(self.mirror.pid)

    def _tags(self, job: Job, repo: str) -> list[str]:
        if job.tags and repo in job.tags:
            return list(job.tags[repo])
        return list(self.expected[repo])

    def cold(self, tool: Tool, phase: str, run: int, job: Job,
             via: DelayProxy | None = None) -> RunRecord:
        """Empty mirror (fresh storage, restarted) and fresh tool state, then sync."""
        self.mirror.wipe()
        tool.reset()
        record = self.measure(tool, phase, run, job, via)
        self.verify(tool, job)
        return record

    def verify(self, tool: Tool, job: Job) -> None:
        """The mirror holds exactly the job's tags, each with the source's digest."""
        with self.mirror.client(anonymous=True) as client:
            for repo in job.repos:
                mirror_repo = f"{PREFIX}/{basename(repo)}"
                want = {t: self.expected[repo][t] for t in self._tags(job, repo)}
                have = set(client.tags(mirror_repo))
                if have != set(want):
                    raise BenchError(f"{tool.name}: {mirror_repo} has tags "
                                     f"{sorted(have ^ set(want))[:5]} wrong")
                for tag, digest in want.items():
                    got = client.head_manifest(mirror_repo, tag)
                    if got != digest:
                        raise BenchError(f"{tool.name}: {mirror_repo}:{tag} is {got}, "
                                         f"expected {digest}")

    # -- phases ------------------------------------------------------------------------------
    def order(self, run: int) -> list[Tool]:
        """Alternate which tool goes first, so drift does not favour one."""
        return self.tools if run % 2 == 0 else self.tools[::-1]

    def loopback(self) -> None:
        job = Job(self.source.host, self.corpus.repos)
        for run in range(self.opts.runs):
            for tool in self.order(run):
                self.cold(tool, "cold", run, job)
                self.measure(tool, "noop", run, job)

    def startup(self) -> None:
        """A one-tag sync, cold then no-op, with the source behind a zero-delay tap that
        times the first connection; then mirrord's no-op once more under -X importtime."""
        with DelayProxy("127.0.0.1", self.source.port, delay_ms=0) as tap:
            job = Job(tap.host, (TINY_REPO,), {TINY_REPO: ("1",)})
            for run in range(self.opts.runs):
                for tool in self.order(run):
                    self.cold(tool, "startup-cold", run, job, tap)
                    self.measure(tool, "startup", run, job, tap)
            mirrord = self.tools[0]
            assert isinstance(mirrord, Mirrord)
            base = self.logs / "importtime"
            config = Path(f"{base}.yaml")
            config.write_text(mirrord.config(job))
            self.importtime = importtime(mirrord, config, base)

    def wan(self) -> None:
        """The whole corpus through the delay proxy: a cold sync, then a no-op."""
        with DelayProxy("127.0.0.1", self.source.port, delay_ms=self.opts.wan_delay) as proxy:
            job = Job(proxy.host, self.corpus.repos)
            for run in range(self.opts.wan_runs):
                for tool in self.order(run):
                    self.cold(tool, "wan-cold", run, job, proxy)
                    self.measure(tool, "wan-noop", run, job, proxy)

    def blob(self) -> None:
        mib = self.opts.blob_mib
        tiny = Job(self.source.host, (TINY_REPO,), {TINY_REPO: ("1",)})
        big = Job(self.source.host, (BIG_REPO,), {BIG_REPO: (corpus_mod.big_tag(mib),)})
        for run in range(self.opts.runs):
            for tool in self.order(run):
                self.cold(tool, "blob-tiny", run, tiny)
                self.cold(tool, "blob-big", run, big)

    def run(self) -> None:
        print(f"warming the page cache ({self.corpus.storage}) ...", file=sys.stderr)
        warm_page_cache(self.corpus.storage)
        compile_checkout(ROOT)
        self.loopback()
        self.startup()
        if self.opts.wan:
            self.wan()
        if self.opts.blob_mib:
            self.blob()
        self.mirror.wipe()  # give the disk back

    def alpn(self) -> str | None:
        """What the source registry picks when a client offers h2 and http/1.1 (ALPN): what
        a tool that can speak HTTP/2 gets. None over plain HTTP."""
        if self.trust.ca_file is None:
            return None
        context = ssl.create_default_context(cafile=str(self.trust.ca_file))
        context.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", self.source.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.selected_alpn_protocol()

    def protocols(self) -> dict[str, dict[str, list[str]]]:
        """The HTTP versions each tool spoke to each registry (from the access logs)."""
        out: dict[str, dict[str, set[str]]] = {}
        for r in self.runs:
            seen = out.setdefault(r.tool, {"source": set(), "mirror": set()})
            seen["source"].update(r.source.protocols)
            seen["mirror"].update(r.mirror.protocols)
        return {t: {k: sorted(v) for k, v in sides.items()} for t, sides in out.items()}
