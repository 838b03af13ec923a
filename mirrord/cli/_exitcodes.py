"""The command line's exit codes (shared by every command module)."""

from __future__ import annotations

EXIT_FAILED = 1  # some image, stream or receiver failed; the rest completed
EXIT_USAGE = 2  # bad usage or configuration: nothing was touched
EXIT_LOCKED = 3  # another run holds the state lock
EXIT_INTERRUPTED = 130  # interrupted (SIGINT): 128 + the signal's number
