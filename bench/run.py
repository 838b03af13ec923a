"""The benchmark: mirrord sync against skopeo sync, on the same corpus, alternating.

    python -m bench                 # full: 3 runs, 1 GiB blob, WAN profile (~5 min)
    python -m bench --smoke         # tiny corpus, 1 run, no big blob, no WAN (~15 s)
    python -m bench --runs 5 --wan-delay 80

See bench/README.md for what each measure means.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: the checkout and its test harness
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("", "tests")]

from harness.images import RegistryHTTP
from harness.registry import RegistryProcess

from bench import corpus as corpus_mod
from bench.corpus import BIG_REPO, FULL, SMOKE, TINY_REPO, WAN_COLD_REPOS, Generated
from bench.measure import (
    BenchError,
    RunRecord,
    SourceRequests,
    machine,
    process_cpu,
    warm_page_cache,
)
from bench.report import measures, table
from bench.tools import PREFIX, SKOPEO_FORMS, Job, Mirrord, Skopeo, Tool, basename
from bench.wanproxy import DelayProxy

RESULTS = Path(__file__).resolve().parent / "results"
# The registries log errors only (the access log, which counts requests, stays on):
# their info logging costs CPU that both tools would pay on this shared machine.
QUIET: dict[str, Any] = {"log": {"level": "error"}}


@dataclass(frozen=True)
class Options:
    smoke: bool
    runs: int
    wan_delay: float
    wan_runs: int
    blob_mib: int
    wan: bool
    cache_dir: Path
    results_dir: Path
    work_dir: Path | None
    keep_work: bool
    skopeo_form: str
    concurrency: int | None
    mirrord_entry: Path | None


def parse_args(argv: Sequence[str] | None = None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true",
                   help="tiny corpus, 1 run, no big blob, no WAN profile (for CI)")
    p.add_argument("--runs", type=int, default=None, help="runs per measure (default 3; smoke 1)")
    p.add_argument("--wan-delay", type=float, default=50.0, metavar="MS",
                   help="round trip the WAN proxy adds to every request (default 50)")
    p.add_argument("--wan-runs", type=int, default=1,
                   help="runs of the WAN profile (default 1: it is latency-bound, so steady, "
                   "and skopeo's no-op through it takes minutes)")
    p.add_argument("--blob-mib", type=int, default=1024,
                   help="size of the big blob (default 1024; 0 skips it)")
    p.add_argument("--no-wan", action="store_true", help="skip the WAN profile")
    p.add_argument("--cache-dir", type=Path, default=corpus_mod.default_cache_dir(),
                   help="where generated corpora are kept (default ~/.cache/mirrord-bench)")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument("--work-dir", type=Path, default=None,
                   help="registries, configs and logs (default: a fresh temporary directory)")
    p.add_argument("--keep-work", action="store_true", help="keep the work directory")
    p.add_argument("--skopeo-form", choices=SKOPEO_FORMS, default="yaml",
                   help="one skopeo run from a YAML source (default) or one per repository")
    p.add_argument("--mirrord-concurrency", type=int, default=None, metavar="N",
                   help="max_concurrency for the source registry (default: mirrord's default)")
    p.add_argument("--mirrord-entry", type=Path, default=None, metavar="SCRIPT",
                   help="run this Python script instead of mirrord's CLI (it must behave "
                   "like `mirrord`; for measuring a patched or monkeypatched mirrord)")
    a = p.parse_args(argv)
    runs = a.runs if a.runs is not None else (1 if a.smoke else 3)
    if runs < 1:
        p.error("--runs must be at least 1")
    return Options(
        smoke=a.smoke, runs=runs, wan_delay=a.wan_delay, wan_runs=max(1, a.wan_runs),
        blob_mib=0 if a.smoke else a.blob_mib, wan=not (a.smoke or a.no_wan),
        cache_dir=a.cache_dir, results_dir=a.results_dir, work_dir=a.work_dir,
        keep_work=a.keep_work, skopeo_form=a.skopeo_form, concurrency=a.mirrord_concurrency,
        mirrord_entry=a.mirrord_entry,
    )


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
        storage = {"filesystem": {"rootdirectory": str(self.corpus.storage)}}
        self.source = RegistryProcess(
            work / "source", extra_config={"storage": storage, **QUIET}
        ).start()
        self.mirror = RegistryProcess(work / "mirror", extra_config=QUIET).start()
        self.runs: list[RunRecord] = []
        self.tools: list[Tool] = [
            Mirrord(work, self.mirror.host, concurrency=opts.concurrency,
                    entry=opts.mirrord_entry),
            Skopeo(work, self.mirror.host, form=opts.skopeo_form),
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
                proxy: DelayProxy | None = None) -> RunRecord:
        tags = sum(len(self._tags(job, repo)) for repo in job.repos)
        mark = self.source.mark()
        connections = proxy.connections if proxy else 0
        registry_cpu = self._registry_cpu()
        proc, summary = tool.sync(job, self.logs / f"{run}-{phase}-{tool.name}")
        registry_cpu = self._registry_cpu() - registry_cpu
        record = RunRecord(
            tool=tool.name, phase=phase, run=run, wall_s=proc.wall_s,
            maxrss_mib=proc.maxrss_kib / 1024, tags=tags, cpu_s=proc.cpu_s,
            registry_cpu_s=registry_cpu,
            source=SourceRequests.of(self.source.access_log(since=mark)),
            proxy_connections=(proxy.connections - connections) if proxy else None,
            summary=summary,
        )
        self.runs.append(record)
        print(f"  run {run} {phase:<9} {tool.name:<8} {proc.wall_s:7.2f} s "
              f"{record.maxrss_mib:6.1f} MiB  {record.source.total:5} upstream requests  "
              f"cpu {proc.cpu_s:5.2f} s (registries {registry_cpu:5.2f} s)", file=sys.stderr)
        return record

    def _registry_cpu(self) -> float:
        return sum(
            process_cpu(r._proc.pid if r._proc is not None else None)
            for r in (self.source, self.mirror)
        )

    def _tags(self, job: Job, repo: str) -> list[str]:
        if job.tags and repo in job.tags:
            return list(job.tags[repo])
        return list(self.expected[repo])

    def cold(self, tool: Tool, phase: str, run: int, job: Job,
             proxy: DelayProxy | None = None) -> RunRecord:
        """Empty mirror (fresh storage, restarted) and fresh tool state, then sync."""
        self.mirror.wipe()
        tool.reset()
        record = self.measure(tool, phase, run, job, proxy)
        self.verify(tool, job)
        return record

    def verify(self, tool: Tool, job: Job) -> None:
        """The mirror holds exactly the job's tags, each with the source's digest."""
        with RegistryHTTP(self.mirror.url) as client:
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

    def loopback(self, proxy: DelayProxy | None) -> None:
        job = Job(self.source.host, self.corpus.repos)
        wan_job = Job(proxy.host, self.corpus.repos) if proxy else None
        for run in range(self.opts.runs):
            for tool in self.order(run):
                self.cold(tool, "cold", run, job)
                self.measure(tool, "noop", run, job)
                if wan_job is not None and run < self.opts.wan_runs:
                    self.measure(tool, "wan-noop", run, wan_job, proxy)

    def wan_cold(self, proxy: DelayProxy) -> None:
        repos = WAN_COLD_REPOS[self.corpus.spec.name]
        job = Job(proxy.host, repos)
        for run in range(self.opts.wan_runs):
            for tool in self.order(run):
                self.cold(tool, "wan-cold", run, job, proxy)

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
        proxy = None
        if self.opts.wan:
            proxy = DelayProxy("127.0.0.1", self.source.port, delay_ms=self.opts.wan_delay)
            proxy.start()
        try:
            self.loopback(proxy)
            if proxy is not None:
                self.wan_cold(proxy)
        finally:
            if proxy is not None:
                proxy.stop()
        if self.opts.blob_mib:
            self.blob()
        self.mirror.wipe()  # give the disk back

    # -- results ----------------------------------------------------------------------------
    def results(self, started: float) -> dict[str, Any]:
        rows = measures(
            self.runs,
            repos=len(self.corpus.repos),
            blob_mib=self.opts.blob_mib,
            delay_ms=self.opts.wan_delay,
            blob_skipped="" if self.opts.blob_mib else ("--smoke" if self.opts.smoke else "off"),
            wan_skipped="" if self.opts.wan else ("--smoke" if self.opts.smoke else "--no-wan"),
        )
        spec = self.corpus.spec
        return {
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "duration_s": round(time.monotonic() - started, 1),
            "machine": {**machine(), "loadavg_start": self.load_start},
            "options": {k: str(v) if isinstance(v, Path) else v
                        for k, v in vars(self.opts).items()},
            "corpus": {
                "name": spec.name, "key": spec.key(), "repositories": len(spec.repos),
                "tags": spec.tag_count, "unique_mib": round(self.corpus.unique_bytes / 2**20, 1),
                "wan_cold_repositories": list(WAN_COLD_REPOS[spec.name]),
            },
            "measures": {row.key: row.as_dict() for row in rows},
            "table": table(rows),
            "runs": [r.as_dict() for r in self.runs],
        }


def write_results(results: dict[str, Any], directory: Path, smoke: bool) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{'smoke' if smoke else 'bench'}-{stamp}.json"
    path = directory / name
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    (directory / f"{'smoke' if smoke else 'bench'}-latest.json").write_text(path.read_text())
    return path


def header(results: dict[str, Any]) -> str:
    m, c, o = results["machine"], results["corpus"], results["options"]
    return (
        f"mirrord {m['mirrord_commit']} vs {m['skopeo']}; {m['nproc']} CPUs ({m['cpu']}), "
        f"{m.get('memory_gib', '?')} GiB RAM; {m['registry']}\n"
        f"corpus {c['name']}: {c['repositories']} repositories, {c['tags']} tags, "
        f"{c['unique_mib']} MiB unique blobs; medians of {o['runs']} run(s); "
        f"skopeo form: {o['skopeo_form']}; took {results['duration_s']} s; "
        f"load average {m['loadavg_start'][0]} before, {m['loadavg'][0]} after"
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    started = time.monotonic()
    work = opts.work_dir or Path(tempfile.mkdtemp(prefix="mirrord-bench-"))
    bench = None
    try:
        bench = Bench(opts, work)
        bench.run()
        results = bench.results(started)
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        return 2
    finally:
        if bench is not None:
            bench.close()
        if not opts.keep_work:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}", file=sys.stderr)
    path = write_results(results, opts.results_dir, opts.smoke)
    print(header(results))
    print()
    print(results["table"])
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
