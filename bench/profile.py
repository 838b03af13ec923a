"""Profile one mirrord sync of the benchmark corpus with pyinstrument (or py-spy).

    python -m bench.profile                         # a cold sync, pyinstrument, full corpus
    python -m bench.profile --phase noop
    python -m bench.profile --profiler py-spy --smoke --out /tmp/prof

It starts the same source and mirror registries as the benchmark (TLS with a session
CA, unless ``--plain-http``), runs a cold sync (and, for ``--phase noop``, profiles the
re-sync after it), and writes the profile to ``--out``. pyinstrument: the session
(``.pyisession``), an HTML rendering, and a summary (``.summary.json``, also printed as
Markdown): wall time of the main thread by where it was spent — mirrord's own code,
httpx/httpcore/h11, ssl, anyio/asyncio, waiting for I/O, imports, other — and the top
frames by self time. py-spy: collapsed stacks (for flamegraph.pl or speedscope).
Install the profilers with ``pip install -r bench/requirements.txt``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from harness.registry import RegistryProcess
from harness.tls import ca_and_leaf

from bench import corpus as corpus_mod
from bench.corpus import FULL, SMOKE
from bench.measure import BenchError, compile_checkout, run_checked
from bench.session import QUIET
from bench.tools import PLAIN, ROOT, Job, Mirrord, Trust, checkout_env

# Where main-thread time goes, by the file a frame's code is in (first match wins).
CATEGORIES = (
    ("mirrord", (f"{ROOT}/mirrord/",)),
    ("httpx/httpcore/h11/h2", ("/httpx/", "/httpcore/", "/h11/", "/h2/", "/hpack/")),
    ("waiting for I/O", ("/selectors.py",)),
    ("ssl", ("/ssl.py",)),
    ("anyio/asyncio", ("/anyio/", "/asyncio/", "/sniffio/")),
    ("imports", ("<frozen importlib", "/importlib/")),
)
TOP = 25


def category(path: str, identifier: str = "") -> str:
    if identifier.startswith("[await]"):
        return "waiting for I/O"
    for name, needles in CATEGORIES:
        if any(n in path for n in needles):
            return name
    return "other"


def summarize(root: Any, top: int = TOP) -> dict[str, Any]:
    """Self time per category and the ``top`` frames by self time (summed over every
    place in the tree a function appears), from a pyinstrument root frame."""
    by_category: dict[str, float] = defaultdict(float)
    by_frame: dict[tuple[str, str, int], float] = defaultdict(float)
    stack = [root]
    while stack:
        frame = stack.pop()
        stack.extend(frame.children)
        if frame.is_synthetic:
            continue
        own = frame.total_self_time
        path = frame.file_path or ""
        by_category[category(path)] += own
        key = (frame.function or "?", frame.file_path_short or path, frame.line_no or 0)
        by_frame[key] += own
    total = root.time or 1.0
    frames = sorted(by_frame.items(), key=lambda kv: -kv[1])[:top]
    return {
        "total_s": round(root.time, 3),
        "by_category_s": {k: round(v, 3) for k, v in
                          sorted(by_category.items(), key=lambda kv: -kv[1])},
        "top_frames": [
            {"function": f, "file": p, "line": n, "self_s": round(t, 3),
             "share": round(t / total, 3), "category": category(p)}
            for (f, p, n), t in frames
        ],
    }


def markdown(summary: dict[str, Any], rows: int = 15) -> str:
    cats = ", ".join(f"{k} {v:.2f} s" for k, v in summary["by_category_s"].items())
    out = [f"Main thread {summary['total_s']:.2f} s: {cats}.", "",
           "| self time | share | where | function | |", "|---:|---:|---|---|---|"]
    for f in summary["top_frames"][:rows]:
        out.append(f"| {f['self_s']:.3f} s | {f['share']:.1%} | {f['category']} | "
                   f"`{f['function']}` | {f['file']}:{f['line']} |")
    return "\n".join(out)


def profiled_argv(
    profiler: str, argv: list[str], out: Path, rate: int, idle: bool = False
) -> list[str]:
    """``argv`` (a ``python -c ...`` mirrord command) run under ``profiler``."""
    if profiler == "py-spy":
        spy = shutil.which("py-spy")
        if spy is None:
            raise BenchError("py-spy is not installed: pip install -r bench/requirements.txt")
        return [spy, "record", "--nonblocking", *(["--idle"] if idle else []), "--rate", str(rate),
                "--format", "raw", "-o", f"{out}.collapsed", "--", *argv]
    if profiler == "pyinstrument":
        script = out.with_suffix(".entry.py")
        script.write_text("import sys\nfrom mirrord.cli import main\nsys.exit(main())\n")
        return [sys.executable, "-m", "pyinstrument", "-r", "pyisession", "-o",
                f"{out}.pyisession", str(script), *argv[argv.index("sync") :]]
    raise BenchError(f"unknown profiler {profiler}")


def report(out: Path) -> str:
    """HTML and the summary from a pyinstrument session; the summary as Markdown."""
    from pyinstrument.renderers import HTMLRenderer
    from pyinstrument.session import Session

    session = Session.load(f"{out}.pyisession")
    Path(f"{out}.html").write_text(HTMLRenderer().render(session))
    root = session.root_frame(trim_stem=False)
    if root is None:
        raise BenchError("pyinstrument recorded no samples")
    summary = {"cpu_time_s": round(session.cpu_time, 3), **summarize(root)}
    Path(f"{out}.summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return f"process CPU time {session.cpu_time:.2f} s. " + markdown(summary)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--phase", choices=("cold", "noop"), default="cold")
    p.add_argument("--profiler", choices=("pyinstrument", "py-spy"), default="pyinstrument")
    p.add_argument("--smoke", action="store_true", help="the tiny corpus")
    p.add_argument("--plain-http", action="store_true", help="plain HTTP registries")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--idle", action="store_true", help="py-spy: sample waiting threads too")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile")
    p.add_argument("--cache-dir", type=Path, default=corpus_mod.default_cache_dir())
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    generated = corpus_mod.prepare(SMOKE if a.smoke else FULL, a.cache_dir)
    a.out.mkdir(parents=True, exist_ok=True)
    compile_checkout(ROOT)
    work = Path(tempfile.mkdtemp(prefix="mirrord-profile-"))
    storage = {"filesystem": {"rootdirectory": str(generated.storage)}}
    trust, tls = PLAIN, None
    if not a.plain_http:
        tls = ca_and_leaf(work / "tls")
        trust = Trust(tls.ca_path, tls.certs_dir)
    try:
        with RegistryProcess(work / "source", tls=tls or False,
                             extra_config={"storage": storage, **QUIET}) as source, \
                RegistryProcess(work / "mirror", tls=tls or False, extra_config=QUIET) as mirror:
            tool = Mirrord(work, mirror.host, trust=trust)
            config = work / "mirrord.yaml"
            config.write_text(tool.config(Job(source.host, generated.repos)))
            base = tool.argv(config)
            out = a.out / f"mirrord-{a.phase}-{a.profiler}"
            if a.phase == "noop":
                run_checked(base, work / "cold", "mirrord sync (cold)", cwd=ROOT,
                            env=checkout_env())
            command = profiled_argv(a.profiler, base, out, a.rate, a.idle)
            subprocess.run(command, cwd=ROOT, env=checkout_env(), check=True,
                           stdout=subprocess.DEVNULL)
            if a.profiler == "pyinstrument":
                print(report(out))
            print(f"profile written next to {out}")
    except BenchError as error:
        print(f"profile failed: {error}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
