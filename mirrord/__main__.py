"""``python -m mirrord``: the command line."""

from __future__ import annotations

from mirrord.cli import main

if __name__ == "__main__":
    main(prog_name="mirrord")  # also names $_MIRRORD_COMPLETE, as for the script
