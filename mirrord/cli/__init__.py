"""The ``mirrord`` command line: one click group (:data:`main`), one module per family
of commands, one ``-o`` option and one renderer (:mod:`._render`).

Each command module adds its commands to :data:`main` when imported, below. The
commands import what they run inside their bodies, so ``mirrord --help`` or a sync
never loads the daemon's server stack.
"""

from __future__ import annotations

from mirrord.cli import (  # noqa: F401  (each adds its commands to main)
    _cluster,
    _completion,
    _daemon,
    _edit,
    _login,
    _notify,
    _prune,
    _streams,
    _sync,
    _units,
)
from mirrord.cli._app import add_global_options, main

add_global_options(main)

__all__ = ["main"]
