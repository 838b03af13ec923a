"""Scale-out benchmark (issue 16): a cold sync of many streams by 1, 2, 3 daemons sharing
one PostgreSQL database.

    python -m bench.workers                      # 1,2,3 workers, the full corpus (~5 min)
    python -m bench.workers --workers 1,3 --chunk 5
    python -m bench.workers --smoke              # tiny corpus, 1 and 2 workers

The streams are the benchmark corpus's repositories, the big CI repository split into
streams of ``--chunk`` tags each (so there are enough streams to share out). For each
worker count: an empty mirror, a fresh database in a throwaway PostgreSQL cluster
(``harness.postgres``), N ``mirrord daemon`` processes started together, each with its
own config (``database:``, ``worker_name:``, its own API port and state directory); the
wall time runs from the first ``exec`` until some daemon's ``/api/v1/streams`` shows
every stream synced. Then the mirror is checked tag by tag, and the daemons' sync jobs
(``/api/v1/jobs``) tell how the work was divided and whether a stream was synced twice.

Skips (exit status 0, a message on stderr) when the PostgreSQL harness or psycopg is
missing, or when the mirrord under test refuses the ``database:`` key: both arrive with
branch wip/pg.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness.registry import RegistryProcess, free_port
from harness.tls import ca_and_leaf

from bench import corpus as corpus_mod
from bench.corpus import FULL, SMOKE, Generated
from bench.measure import BenchError, machine, process_cpu, warm_page_cache
from bench.options import RESULTS
from bench.session import QUIET
from bench.tools import CLI, PLAIN, PREFIX, ROOT, Mirrord, Trust, checkout_env

SYNCED = "openshift.io/image.dockerRepositoryCheck"  # set when a stream's sync succeeded
FAILED = "mirrord.io/import-failure"
_LIBC = ctypes.CDLL(None, use_errno=True)


class Skip(Exception):
    """The benchmark cannot run here yet; the message says why."""


@dataclass(frozen=True)
class Stream:
    name: str
    repo: str
    tags: tuple[str, ...] | None  # None: every tag


def streams(corpus: Generated, chunk: int) -> list[Stream]:
    """One stream per repository; one per ``chunk`` tags of a repository with many."""
    out: list[Stream] = []
    for repo in corpus.repos:
        tags = sorted(corpus.digests[repo])
        base = repo.rsplit("/", 1)[-1]
        if len(tags) <= 2 * chunk:
            out.append(Stream(base, repo, None))
            continue
        for i in range(0, len(tags), chunk):
            out.append(Stream(f"{base}-{i // chunk:03d}", repo, tuple(tags[i : i + chunk])))
    return out


@dataclass
class Round:
    """One measured cold sync by ``workers`` daemons."""

    workers: int
    wall_s: float
    streams: int
    jobs: int = 0
    jobs_per_worker: dict[str, int] = field(default_factory=dict)
    synced_twice: list[str] = field(default_factory=list)
    daemon_cpu_s: list[float] = field(default_factory=list)
    peak_rss_mib: list[float] = field(default_factory=list)
    source_cpu_s: float = 0.0
    mirror_cpu_s: float = 0.0


def probe(directory: Path) -> None:
    """Skip unless ``mirrord validate`` accepts the shared-state keys a worker's config uses
    (nothing is connected to: validation reads the file only)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "password").write_text("x\n")
    path = directory / "mirrord.yaml"
    path.write_text(
        "version: 1\n"
        "database: postgresql://bench@127.0.0.1:9/bench\n"
        f"database_password_file: {json.dumps(str(directory / 'password'))}\n"
        "worker_name: bench-0\n"
        "streams: [{from: 127.0.0.1:9/probe}]\n"
    )
    proc = subprocess.run([sys.executable, "-c", CLI, "validate", "--config", str(path)],
                          capture_output=True, text=True, cwd=ROOT, env=checkout_env(),
                          timeout=60, check=False)
    if proc.returncode != 0:
        said = (proc.stderr or proc.stdout).strip().splitlines()
        first = next((line for line in said if "database" in line), said[-1] if said else "")
        raise Skip(f"this mirrord does not take `database:` yet (branch wip/pg): {first}")


def _die_with_parent() -> None:  # in the child: no daemon outlives the benchmark
    _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _peak_rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class Fleet:
    """The registries, the PostgreSQL cluster and, per round, N daemons."""

    def __init__(self, opts: argparse.Namespace, work: Path) -> None:
        self.opts, self.work = opts, work
        try:
            from harness.postgres import PostgresCluster
        except ImportError as exc:  # psycopg, or the harness module itself (branch wip/pg)
            raise Skip(f"no PostgreSQL harness here ({exc}); it comes with branch wip/pg") from exc
        probe(work / "probe")
        self.corpus = corpus_mod.prepare(SMOKE if opts.smoke else FULL, opts.cache_dir)
        self.streams = streams(self.corpus, opts.chunk)
        self.trust, tls = PLAIN, False
        if not opts.plain_http:
            files = ca_and_leaf(work / "tls")
            self.trust, tls = Trust(files.ca_path, files.certs_dir), files
        storage = {"filesystem": {"rootdirectory": str(self.corpus.storage)}}
        self.source = RegistryProcess(work / "source", tls=tls,
                                      extra_config={"storage": storage, **QUIET}).start()
        self.mirror = RegistryProcess(work / "mirror", tls=tls, extra_config=QUIET).start()
        self.cluster = PostgresCluster().start()
        self.password_file = work / "database-password"
        self.password_file.write_text(self.cluster.password + "\n")
        self.password_file.chmod(0o600)

    def close(self) -> None:
        self.source.stop()
        self.mirror.stop()
        self.cluster.remove()

    def config(self, directory: Path, index: int, database_url: str, port: int) -> Path:
        tool = Mirrord(directory, self.mirror.host, trust=self.trust)
        lines = [
            "version: 1",
            f"state_dir: {directory / 'state'}",
            f"mirror: docker://{self.mirror.host}/{PREFIX}",
            f"database: {json.dumps(database_url)}",
            f"database_password_file: {json.dumps(str(self.password_file))}",
            f"worker_name: bench-{index}",
            f"server: {{listen: '127.0.0.1:{port}'}}",
            # every sync job kept (the default keeps 3): the jobs tell who ran what
            "pruning: {suspend: true, successfulJobsHistoryLimit: 1000, "
            "failedJobsHistoryLimit: 1000}",
            "registries:",
            f"  {self.source.host}: {tool.registry_settings(source=True)}",
            f"  {self.mirror.host}: {tool.registry_settings(source=False)}",
            "defaults: {max_tags: -1, schedule: 24h}",  # each stream syncs once, at start
            "streams:",
        ]
        for s in self.streams:
            lines += [f"  - from: {self.source.host}/{s.repo}", f"    to: {s.name}"]
            if s.tags is not None:
                lines.append(f"    tags: {json.dumps(list(s.tags))}")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "mirrord.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- one round ---------------------------------------------------------------------------
    def round(self, workers: int) -> Round:
        self.mirror.wipe()
        database = self.cluster.create_database()
        home = self.work / f"workers-{workers}"
        ports = [free_port() for _ in range(workers)]
        configs = [self.config(home / f"w{i}", i, database.url, ports[i]) for i in range(workers)]
        cpu = process_cpu(self.source.pid), process_cpu(self.mirror.pid)
        started = time.monotonic()
        procs = [self._spawn(c) for c in configs]
        try:
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            with httpx.Client(timeout=5) as http:
                self._wait_synced(http, urls, procs, configs)
                wall = time.monotonic() - started
                result = Round(workers, wall, len(self.streams),
                               daemon_cpu_s=[process_cpu(p.pid) for p in procs],
                               peak_rss_mib=[_peak_rss_mib(p.pid) for p in procs],
                               source_cpu_s=process_cpu(self.source.pid) - cpu[0],
                               mirror_cpu_s=process_cpu(self.mirror.pid) - cpu[1])
                self._jobs(http, urls[0], result)
        finally:
            for p in procs:
                self._stop(p)
            self.cluster.drop_database(database.name)
        self._verify()
        return result

    def _spawn(self, config: Path) -> subprocess.Popen[bytes]:
        with open(config.parent / "daemon.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-c", CLI, "daemon", "--config", str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=ROOT, env=checkout_env(),
                preexec_fn=_die_with_parent,
            )

    def _wait_synced(self, http: httpx.Client, urls: list[str],
                     procs: list[subprocess.Popen[bytes]], configs: list[Path]) -> None:
        want = {s.name for s in self.streams}
        deadline = time.monotonic() + self.opts.timeout
        while True:
            synced: set[str] = set()
            for url, proc, config in zip(urls, procs, configs, strict=True):
                if proc.poll() is not None:
                    log = (config.parent / "daemon.log").read_text(errors="replace")[-2000:]
                    raise BenchError(f"a daemon exited ({proc.returncode}):\n{log}")
                synced |= self._synced(http, url)
            if want <= synced:
                return
            if time.monotonic() > deadline:
                raise BenchError(f"after {self.opts.timeout:g} s, {len(want - synced)} of "
                                 f"{len(want)} streams not synced: {sorted(want - synced)[:5]}")
            time.sleep(0.1)

    @staticmethod
    def _synced(http: httpx.Client, url: str) -> set[str]:
        try:
            items = http.get(f"{url}/api/v1/streams").json()["items"]
        except (httpx.HTTPError, ValueError, KeyError):
            return set()  # not listening yet
        done = set()
        for item in items:
            notes = item.get("metadata", {}).get("annotations", {})
            if FAILED in notes:
                raise BenchError(f"stream {item['metadata']['name']} failed: {notes[FAILED]}")
            if SYNCED in notes:
                done.add(item["metadata"]["name"])
        return done

    @staticmethod
    def _jobs(http: httpx.Client, url: str, result: Round) -> None:
        jobs = http.get(f"{url}/api/v1/jobs", params={"kind": "sync", "limit": 200}).json()
        runs = [j for j in jobs["items"] if j.get("status") != "running"]
        result.jobs = len(runs)
        result.jobs_per_worker = dict(Counter(str(j.get("worker", "?")) for j in runs))
        per_stream = Counter(j["stream"] for j in runs)
        result.synced_twice = sorted(s for s, n in per_stream.items() if n > 1)

    @staticmethod
    def _stop(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _verify(self) -> None:
        with self.mirror.client(anonymous=True) as client:
            for s in self.streams:
                digests = self.corpus.digests[s.repo]
                want = {t: digests[t] for t in s.tags or digests}
                repo = f"{PREFIX}/{s.name}"
                if set(client.tags(repo)) != set(want):
                    raise BenchError(f"{repo}: the mirror's tags differ from the source's")
                for tag, digest in want.items():
                    if client.head_manifest(repo, tag) != digest:
                        raise BenchError(f"{repo}:{tag} is not {digest}")


# -- the command ---------------------------------------------------------------------------
def table(rounds: Sequence[Round]) -> str:
    out = ["| Workers | Cold sync, wall time | vs 1 worker | Sync jobs (per worker) | "
           "Streams synced twice | Daemons' CPU | Peak RSS (largest) | Source / mirror CPU |",
           "|---:|---:|---:|---|---:|---:|---:|---:|"]
    one = next((r.wall_s for r in rounds if r.workers == 1), None)
    for r in rounds:
        speed = f"{one / r.wall_s:.2f}x faster" if one else ""
        per = ", ".join(f"{k}: {v}" for k, v in sorted(r.jobs_per_worker.items()))
        out.append(f"| {r.workers} | {r.wall_s:.2f} s | {speed} | {r.jobs} ({per}) | "
                   f"{len(r.synced_twice)} | {sum(r.daemon_cpu_s):.2f} s | "
                   f"{max(r.peak_rss_mib, default=0):.1f} MiB | "
                   f"{r.source_cpu_s:.2f} s / {r.mirror_cpu_s:.2f} s |")
    return "\n".join(out)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.workers",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", default=None, metavar="N[,N...]",
                   help="daemon counts to time (default 1,2,3; --smoke 1,2)")
    p.add_argument("--chunk", type=int, default=None,
                   help="tags per stream of a repository with many (default 10; --smoke 3)")
    p.add_argument("--smoke", action="store_true", help="the tiny corpus")
    p.add_argument("--plain-http", action="store_true", help="plain HTTP registries")
    p.add_argument("--timeout", type=float, default=600.0, help="per round, seconds")
    p.add_argument("--cache-dir", type=Path, default=corpus_mod.default_cache_dir())
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    p.add_argument("--keep-work", action="store_true")
    a = p.parse_args(argv)
    try:
        a.workers = [int(n) for n in (a.workers or ("1,2" if a.smoke else "1,2,3")).split(",")]
    except ValueError:
        p.error("--workers takes counts like 1,2,3")
    if not a.workers or min(a.workers) < 1:
        p.error("--workers takes counts of at least 1")
    a.chunk = a.chunk or (3 if a.smoke else 10)
    if a.chunk < 1:
        p.error("--chunk must be at least 1")
    return a


def run(opts: argparse.Namespace, work: Path) -> dict[str, Any]:
    fleet = Fleet(opts, work)
    try:
        warm_page_cache(fleet.corpus.storage)
        rounds = []
        for n in opts.workers:
            print(f"{n} worker(s), {len(fleet.streams)} streams ...", file=sys.stderr)
            rounds.append(fleet.round(n))
            print(f"  {rounds[-1].wall_s:.2f} s", file=sys.stderr)
    finally:
        fleet.close()
    return {"when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
            "corpus": fleet.corpus.spec.name, "tls": fleet.trust.tls,
            "streams": [asdict(s) for s in fleet.streams],
            "rounds": [asdict(r) for r in rounds], "table": table(rounds)}


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="mirrord-workers-"))
    try:
        results = run(opts, work)
    except Skip as why:
        print(f"skipped: {why}", file=sys.stderr)
        return 0
    except BenchError as error:
        print(f"workers benchmark failed: {error}", file=sys.stderr)
        return 2
    finally:
        if opts.keep_work:
            print(f"work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    opts.results_dir.mkdir(parents=True, exist_ok=True)
    path = opts.results_dir / f"workers-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    (opts.results_dir / "workers-latest.json").write_text(path.read_text())
    print(results["table"])
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
