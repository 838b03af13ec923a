"""Profile one mirrord sync of the benchmark corpus with py-spy or pyinstrument.

    python -m bench.profile                         # cold sync, py-spy, full corpus
    python -m bench.profile --phase noop --profiler pyinstrument
    python -m bench.profile --smoke --out /tmp/prof

It starts the same source and mirror registries as the benchmark, runs a cold sync
(and, for ``--phase noop``, profiles the re-sync after it), and writes the profile
(py-spy: collapsed stacks, for flamegraph.pl or speedscope; pyinstrument: HTML) to
``--out``. py-spy samples on-CPU stacks only unless ``--idle``.
Install the profilers with ``pip install -r bench/requirements.txt``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from harness.registry import RegistryProcess

from bench import corpus as corpus_mod
from bench.corpus import FULL, SMOKE
from bench.measure import BenchError, run_checked
from bench.tools import ROOT, Job, Mirrord, checkout_env


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
        return [sys.executable, "-m", "pyinstrument", "-r", "html", "-o", f"{out}.html",
                str(script), *argv[argv.index("sync") :]]
    raise BenchError(f"unknown profiler {profiler}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.profile", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--phase", choices=("cold", "noop"), default="cold")
    p.add_argument("--profiler", choices=("py-spy", "pyinstrument"), default="py-spy")
    p.add_argument("--smoke", action="store_true", help="the tiny corpus")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    p.add_argument("--idle", action="store_true", help="py-spy: sample waiting threads too")
    p.add_argument("--out", type=Path, default=Path("bench/results/profile"))
    p.add_argument("--cache-dir", type=Path, default=corpus_mod.default_cache_dir())
    a = p.parse_args(argv)
    generated = corpus_mod.prepare(SMOKE if a.smoke else FULL, a.cache_dir)
    a.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mirrord-profile-"))
    storage = {"filesystem": {"rootdirectory": str(generated.storage)}}
    try:
        with RegistryProcess(work / "source", extra_config={"storage": storage}) as source, \
                RegistryProcess(work / "mirror") as mirror:
            tool = Mirrord(work, mirror.host)
            job = Job(source.host, generated.repos)
            config = work / "mirrord.yaml"
            config.write_text(tool.config(job))
            base = tool.argv(config)
            out = a.out / f"mirrord-{a.phase}-{a.profiler}"
            if a.phase == "noop":
                run_checked(base, work / "cold", "mirrord sync (cold)", cwd=ROOT,
                            env=checkout_env())
            command = profiled_argv(a.profiler, base, out, a.rate, a.idle)
            subprocess.run(command, cwd=ROOT, env=checkout_env(), check=True,
                           stdout=subprocess.DEVNULL)
            print(f"profile written next to {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
