"""The ``mirrord`` command line.

Exit codes: 0 success; 1 some image (or stream) failed, the rest completed;
2 bad usage or configuration (nothing was touched); 3 another run holds the
state lock.
"""

from __future__ import annotations

import getpass
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import anyio
import click

from mirrord._errors import ConfigError, LockedError, MirrordError, first_error
from mirrord._exitcodes import EXIT_FAILED, EXIT_LOCKED, EXIT_USAGE
from mirrord._logging import setup_logging
from mirrord.config import (
    Config,
    StreamConfig,
    load_config,
    load_config_or_embedded,
    missing_file_warnings,
)

log = logging.getLogger("mirrord")


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Configuration file (default: $MIRRORD_CONFIG, /etc/mirrord/mirrord.yaml as root, "
    "else ~/.config/mirrord/mirrord.yaml).",
)
output_option = click.option(
    "-o", "--output", "output", type=click.Choice(["text", "json", "yaml"]), default="text"
)


def fail(message: str, code: int) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


OnError = Callable[[MirrordError], None]


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
    """Load the config or exit 2 with the file/line/key message (``on_error`` first)."""
    try:
        return load_config_or_embedded(config_path) if embedded else load_config(config_path)
    except ConfigError as error:
        if on_error is not None:
            on_error(error)
        fail(str(error), EXIT_USAGE)


def run_async(func: Callable[[], Any], *, on_error: OnError | None = None) -> Any:
    """Run an async entry point; MirrordErrors become a clear message and exit code
    (after ``on_error``, which may print a document naming the error on stdout)."""
    try:
        try:
            return anyio.run(func)
        except BaseExceptionGroup as group:  # a task group's: report its MirrordError
            raise first_error(group) from None
    except MirrordError as error:
        if on_error is not None:
            on_error(error)
        fail(str(error), exit_code(error))
    except KeyboardInterrupt:
        fail("interrupted; the mirror and state are consistent, re-run to continue", 130)


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


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option("--stream", "streams", multiple=True, metavar="NAME", help="Only these streams.")
@output_option
@click.option(
    "--wait/--no-wait", default=False, help="Wait for a running sync to finish instead of refusing."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Live progress display (default: when stdout is a terminal).",
)
def sync(
    config_path: Path | None,
    dry_run: bool,
    streams: tuple[str, ...],
    output: str,
    wait: bool,
    progress: bool | None,
) -> None:
    """Mirror every configured stream once, then exit (non-zero if any image failed)."""
    from mirrord._runs import run_sync_command

    def document(error: MirrordError) -> None:
        _print_failure(error, output, dry_run=dry_run)

    config = load(config_path, embedded=True, on_error=document)
    selected = _select_streams(config, streams, on_error=document)
    show_progress = sys.stdout.isatty() if progress is None else progress
    ok = run_async(
        lambda: run_sync_command(
            config,
            selected,
            dry_run=dry_run,
            output=output,
            wait=wait,
            progress=show_progress and not dry_run,
        ),
        on_error=document,
    )
    sys.exit(0 if ok else EXIT_FAILED)


def _select_streams(
    config: Config, names: tuple[str, ...], on_error: OnError
) -> list[StreamConfig]:
    """The streams named by ``--stream`` (all without one); exit 2 on an unknown name."""
    try:
        return [config.stream(name) for name in names] if names else list(config.streams)
    except ConfigError as error:
        on_error(error)
        fail(str(error), EXIT_USAGE)


def _print_failure(error: MirrordError, output: str, *, dry_run: bool) -> None:
    """With ``-o json|yaml``, a run that cannot start still prints one document on stdout."""
    if output == "text":
        return
    from mirrord._output import print_document

    failure = {"dryRun": dry_run, "error": {"reason": error.reason, "message": str(error)}}
    print_document(failure, output)


@main.command()
@config_option
def validate(config_path: Path | None) -> None:
    """Check the configuration file and exit (2 when it is invalid).

    A registry's auth_file or ca_file absent on this machine is a warning (the
    file may exist where mirrord runs); the exit status stays 0.
    """
    config = load(config_path)
    for warning in missing_file_warnings(config):
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"{config.path}: valid: {len(config.streams)} streams, mirror {config.mirror}")


@main.command()
@click.argument("registry")
@click.option("-u", "--username", help="User name (prompted for when absent).")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@config_option
def login(
    registry: str, username: str | None, password_stdin: bool, config_path: Path | None
) -> None:
    """Check credentials against REGISTRY, then store them in the keyring."""
    from mirrord._runs import login_command

    if password_stdin:
        if not username:
            fail("--password-stdin needs --username", EXIT_USAGE)
        password = sys.stdin.read().rstrip("\r\n")
    else:
        username = username or click.prompt("Username")
        password = getpass.getpass("Password: ")
    if not password:
        fail("empty password", EXIT_USAGE)
    assert username is not None
    config = load(config_path, embedded=True)
    run_async(lambda: login_command(config, registry, username, password))
    click.echo(f"Login Succeeded: {registry} (stored in the keyring)")


@main.command()
@click.argument("registry")
def logout(registry: str) -> None:
    """Remove REGISTRY's credentials from the keyring."""
    from mirrord.credentials import logout as keyring_logout

    removed = run_async(lambda: keyring_logout(registry))
    if not removed:
        fail(f"not logged in to {registry}", EXIT_FAILED)
    click.echo(f"Removed login credentials for {registry}")


def _register_more_commands() -> None:
    """Commands that live in their own modules (kept small)."""
    for module_name in (
        "mirrord._cli_streams",
        "mirrord._cli_daemon",
        "mirrord._cli_prune",
        "mirrord._cli_notify",
        "mirrord._cli_cluster",
    ):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(main)


_register_more_commands()
