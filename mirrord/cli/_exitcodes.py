"""The command line's exit codes (shared by every command module)."""

from __future__ import annotations

EXIT_FAILED = 1  # the run, or some image, stream or receiver, failed; the rest completed
EXIT_USAGE = 2  # bad usage or configuration: nothing was touched
EXIT_LOCKED = 3  # another run holds the state lock
# 128 + signal: stopped by SIGINT (130) or SIGTERM (143); see mirrord.cli._signals
EXIT_INTERRUPTED = 130  # SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # SIGTERM (systemctl stop, podman stop)
