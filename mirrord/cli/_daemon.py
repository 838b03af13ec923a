"""``mirrord daemon``: every stream on its schedule, and the HTTP endpoints."""

from __future__ import annotations

from pathlib import Path

import click

from mirrord.cli._app import config_option, load, main, run_async


@main.command()
@config_option
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
    from mirrord.daemon import Daemon

    config = load(config_path)
    run_async(lambda: Daemon(config, stop_timeout=stop_timeout).run())
