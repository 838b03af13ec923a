"""The ``mirrord`` command group and what every command shares: the ``--config`` and
``-o`` options, loading the configuration, running an async body, and exit codes.

Exit codes: 0 success; 1 some image (or stream) failed, the rest completed;
2 bad usage or configuration (nothing was touched); 3 another run holds the
state lock; 128 + the signal when SIGINT (130) or SIGTERM (143) stopped it (see
:mod:`._signals`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import anyio
import click

from mirrord.cli._exitcodes import EXIT_FAILED, EXIT_LOCKED, EXIT_USAGE
from mirrord.cli._logging import setup_logging
from mirrord.cli._render import print_document
from mirrord.config import Config, load_config, load_config_or_embedded
from mirrord.errors import ConfigError, LockedError, MirrordError, ungrouped

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Configuration file (default: $MIRRORD_CONFIG, /etc/mirrord/mirrord.yaml as root, "
    "else ~/.config/mirrord/mirrord.yaml).",
)
output_option = click.option(
    "-o",
    "--output",
    "output",
    type=click.Choice(["text", "json", "yaml"]),
    default="text",
    help="Output format.",
)

OnError = Callable[[MirrordError], None]


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def exit_code(error: MirrordError) -> int:
    """The exit code for an error that stops a command."""
    if isinstance(error, LockedError):
        return EXIT_LOCKED
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    return EXIT_FAILED


def load(
    config_path: Path | None, *, embedded: bool = False, on_error: OnError | None = None
) -> Config:
    """Load the config or exit 2 with the file/line/key message (``on_error`` first).

    What loads but could not run (a schedule, a registry's options) is refused here too,
    so ``validate`` accepts only what ``sync`` and the daemon can build."""
    from mirrord.sync import check_buildable

    try:
        config = load_config_or_embedded(config_path) if embedded else load_config(config_path)
        check_buildable(config)
        return config
    except ConfigError as error:
        if on_error is not None:
            on_error(error)
        fail(str(error), EXIT_USAGE)


def run_async(func: Callable[[], Any], *, on_error: OnError | None = None) -> Any:
    """Run an async entry point; MirrordErrors become a clear message and exit code
    (after ``on_error``, which may print a document naming the error on stdout)."""
    try:
        with ungrouped():
            return anyio.run(func)
    except MirrordError as error:
        if on_error is not None:
            on_error(error)
        fail(str(error), exit_code(error))
    except KeyboardInterrupt:
        fail("interrupted; the mirror and state are consistent, re-run to continue", 130)


def error_document(error: MirrordError, output: str, **extra: Any) -> None:
    """With ``-o json|yaml``, a command that cannot run still prints one document on
    stdout: ``{…extra, "error": {"reason": …, "message": …}}``."""
    if output != "text":
        failure = {**extra, "error": {"reason": error.reason, "message": str(error)}}
        print_document(failure, output)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    envvar="MIRRORD_LOG_FORMAT",
    help="Log lines as text (journald-friendly) or JSON.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    envvar="MIRRORD_LOG_LEVEL",
)
@click.option(
    "--log-stream",
    type=click.Choice(["stderr", "stdout"]),
    default="stderr",
    envvar="MIRRORD_LOG_STREAM",
    help="Where log lines go (containers: stdout).",
)
@click.version_option(package_name="mirrord")
def main(log_format: str, log_level: str, log_stream: str) -> None:
    """Keep a mirror registry (or OCI layout) in step with upstream repositories."""
    setup_logging(log_format, log_level, log_stream)
