"""Run one command in a fresh, small process and report its peak RSS and wall time.

    python -S bench/_launch.py REPORT.json COMMAND [ARG...]

Linux carries the high-water RSS of the process that ``exec``s into the new program
(the forked copy of the parent's memory), so a child forked straight from the
benchmark would report at least the benchmark's own RSS. This launcher is tiny
(about 8 MiB): the command is forked from it, and its peak RSS is read from
``getrusage(RUSAGE_CHILDREN)`` after it exits. Standard library only; run with ``-S``.

``started`` is ``time.monotonic()`` just before the fork (CLOCK_MONOTONIC, the same clock
in every process of the machine), so a proxy in the benchmark's process can time the
command's first connection against it (its start-up time).
"""

import json
import os
import resource
import sys
import time


def main() -> int:
    report, argv = sys.argv[1], sys.argv[2:]
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    wall = time.monotonic() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    code = os.waitstatus_to_exitcode(status)
    with open(report, "w") as f:
        cpu = usage.ru_utime + usage.ru_stime
        json.dump({"wall_s": wall, "cpu_s": cpu, "maxrss_kib": usage.ru_maxrss,
                   "returncode": code, "started": started}, f)
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
