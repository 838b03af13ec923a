"""Child Python processes for tests that need a second process (locks, crashes, races)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

__all__ = ["spawn_python"]


def spawn_python(code: str, *args: str) -> subprocess.Popen[str]:
    """``python -c code args...`` (``code`` dedented), stdout piped as text; the child
    inherits the environment, PYTHONPATH included."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
