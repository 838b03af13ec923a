"""The benchmark: mirrord sync against skopeo sync, on the same corpus, alternating.

    python -m bench                 # full: 3 runs, TLS, 1 GiB blob, WAN profile (~15 min)
    python -m bench --smoke         # tiny corpus, 1 run, no big blob, no WAN (~20 s)
    python -m bench --runs 5 --wan-delay 50 --plain-http

See bench/README.md for what each measure means.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`: the checkout and its test harness
    sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in ("", "tests")]

from bench.measure import BenchError, machine
from bench.options import parse_args
from bench.report import measures, table
from bench.session import Bench
from bench.startup import summary as importtime_summary


def collect(bench: Bench, started: float) -> dict[str, Any]:
    """Everything the run measured, as written to the JSON results."""
    opts = bench.opts
    rows = measures(
        bench.runs,
        repos=len(bench.corpus.repos),
        blob_mib=opts.blob_mib,
        delay_ms=opts.wan_delay,
        blob_skipped="" if opts.blob_mib else ("--smoke" if opts.smoke else "off"),
        wan_skipped="" if opts.wan else ("--smoke" if opts.smoke else "--no-wan"),
    )
    spec = bench.corpus.spec
    return {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "duration_s": round(time.monotonic() - started, 1),
        "machine": {**machine(), "loadavg_start": bench.load_start},
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()},
        "transport": {"tls": bench.trust.tls, "alpn_offered": bench.alpn(),
                      "protocols": bench.protocols()},
        "corpus": {
            "name": spec.name, "key": spec.key(), "repositories": len(spec.repos),
            "tags": spec.tag_count, "unique_mib": round(bench.corpus.unique_bytes / 2**20, 1),
        },
        "measures": {row.key: row.as_dict() for row in rows},
        "table": table(rows),
        "importtime": bench.importtime,
        "runs": [r.as_dict() for r in bench.runs],
    }


def write_results(results: dict[str, Any], directory: Path, smoke: bool) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{'smoke' if smoke else 'bench'}-{stamp}.json"
    path = directory / name
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    (directory / f"{'smoke' if smoke else 'bench'}-latest.json").write_text(path.read_text())
    return path


def _load(values: Sequence[float]) -> str:
    return "/".join(f"{x:g}" for x in values)


def _transport(t: dict[str, Any]) -> str:
    if not t["tls"]:
        return "plain HTTP"
    return f"TLS, verified against the session CA (ALPN picks {t['alpn_offered']} when offered h2)"


def header(results: dict[str, Any]) -> str:
    m, c, o, t = results["machine"], results["corpus"], results["options"], results["transport"]
    spoke = "; ".join(
        f"{tool} spoke {'+'.join(sides['source']) or '?'} to the source, "
        f"{'+'.join(sides['mirror']) or '?'} to the mirror"
        for tool, sides in t["protocols"].items()
    )
    return (
        f"mirrord {m['mirrord_commit']} vs {m['skopeo']}; {m['nproc']} CPUs ({m['cpu']}), "
        f"{m.get('memory_gib', '?')} GiB RAM; {m['registry']}\n"
        f"corpus {c['name']}: {c['repositories']} repositories, {c['tags']} tags, "
        f"{c['unique_mib']} MiB unique blobs; medians of {o['runs']} run(s); "
        f"skopeo form: {o['skopeo_form']}; took {results['duration_s']} s; "
        f"load average (1/5/15 min) {_load(m['loadavg_start'])} before, "
        f"{_load(m['loadavg'])} after\n"
        f"registries: {_transport(t)}; {spoke}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    opts = parse_args(argv)
    started = time.monotonic()
    work = opts.work_dir or Path(tempfile.mkdtemp(prefix="mirrord-bench-"))
    bench = None
    try:
        bench = Bench(opts, work)
        bench.run()
        results = collect(bench, started)
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
    if results["importtime"]:
        print("\n" + importtime_summary(results["importtime"]))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
