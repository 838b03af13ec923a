"""``mirrord daemon``: registered on the command group by :mod:`mirrord.cli`."""

from __future__ import annotations

from pathlib import Path

import click


def register(main: click.Group) -> None:
    # mirrord.cli imports this module while it is being imported itself: import it late.
    from mirrord import cli

    @main.command()
    @cli.config_option
    @click.option(
        "--stop-timeout",
        type=click.FloatRange(min=0),
        default=30.0,
        show_default=True,
        envvar="MIRRORD_STOP_TIMEOUT",
        metavar="SECONDS",
        help="On SIGTERM, how long runs in flight may take to finish before they are abandoned.",
    )
    def daemon(config_path: Path | None, stop_timeout: float) -> None:
        """Run every stream on its schedule and serve /healthz /readyz /metrics /api/v1
        until SIGTERM. SIGHUP reloads the configuration."""
        from mirrord._daemon import Daemon

        config = cli.load(config_path)
        cli.run_async(lambda: Daemon(config, stop_timeout=stop_timeout).run())
