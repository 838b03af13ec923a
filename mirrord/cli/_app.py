"""The ``mirrord`` command group and what every command shares: the ``--config`` and
``-o`` options, the logging options, loading the configuration, running an async body,
and exit codes.

``--config``, ``--log-format``, ``--log-level`` and ``--log-stream`` are accepted before
the command (``mirrord --config X sync``) and after it (``mirrord sync --config X``); the
one given after the command wins. The group keeps what it was given in ``ctx.meta``.

Exit codes: 0 success; 1 the run or some image (or stream) failed, the rest completed;
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

from mirrord import __version__
from mirrord.cli._exitcodes import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_TERMINATED,
    EXIT_USAGE,
)
from mirrord.cli._logging import CURRENT, message_line, setup_logging
from mirrord.cli._render import print_document
from mirrord.config import Config, load_config, load_config_or_embedded
from mirrord.errors import ConfigError, LockedError, MirrordError, ungrouped

CONFIG_KEY = "mirrord.config"
LOG_CHOICES = {
    "log_format": ("--log-format", ["text", "json"], "MIRRORD_LOG_FORMAT", "text",
                   "Log lines as text (journald-friendly) or JSON."),
    "log_level": ("--log-level", ["debug", "info", "warning", "error"], "MIRRORD_LOG_LEVEL",
                  "info", "The least severe log lines shown."),
    "log_stream": ("--log-stream", ["stderr", "stdout"], "MIRRORD_LOG_STREAM", "stderr",
                   "Where log lines go (containers: stdout)."),
}


def _config_given(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """``--config`` here wins; else the one given before the command (or None)."""
    if value is not None:
        ctx.meta[CONFIG_KEY] = value
        return value
    given: Path | None = ctx.meta.get(CONFIG_KEY)
    return given


config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    callback=_config_given,
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


def echo_error(message: str, level: str = "error") -> None:
    """An ``error:`` (or ``warning:``) line on stderr; a JSON log record with
    ``--log-format json``."""
    click.echo(message_line(level, message), err=True)


def fail(message: str, code: int) -> NoReturn:
    echo_error(message)
    sys.exit(code)


def exit_code(error: MirrordError) -> int:
    """The exit code for an error that stops a command."""
    if isinstance(error, LockedError):
        return EXIT_LOCKED
    if isinstance(error, ConfigError):
        return EXIT_USAGE
    return EXIT_FAILED


def load(
    config_path: Path | None,
    *,
    embedded: bool = False,
    on_error: OnError | None = None,
    announce: bool = True,
) -> Config:
    """Load the config or exit 2 with the file/line/key message (``on_error`` first);
    ``announce``: say so when it is the embedded default (commands that use its mirror).

    What loads but could not run (a schedule, a registry's options) is refused here too,
    so ``validate`` accepts only what ``sync`` and the daemon can build."""
    _import_http_stack_for_asyncio()
    from mirrord.sync import check_buildable

    try:
        config = (
            load_config_or_embedded(config_path, announce=announce)
            if embedded
            else load_config(config_path)
        )
        check_buildable(config)
        return config
    except ConfigError as error:
        if on_error is not None:
            on_error(error)
        fail(str(error), EXIT_USAGE)


def _import_http_stack_for_asyncio() -> None:
    """Import httpcore with trio hidden, unless something imported either already.

    Commands run on asyncio (:func:`run_async`), but httpcore imports trio whenever it is
    installed, for code running under trio: ~90 ms of every start-up on a host that has
    it (``python -X importtime``, issue 17). A program that embeds mirrord, or the test
    suite, has imported httpcore before any command loads, and keeps trio."""
    if "httpcore" in sys.modules or "trio" in sys.modules:
        return
    sys.modules["trio"] = None  # type: ignore[assignment]  # `import trio` raises ImportError
    try:
        import httpcore  # noqa: F401
    finally:
        del sys.modules["trio"]


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
        message = "interrupted; the mirror and state are consistent, re-run to continue"
        fail(message, EXIT_INTERRUPTED)


def error_document(error: MirrordError, output: str, **extra: Any) -> None:
    """With ``-o json|yaml``, a command that cannot run still prints one document on
    stdout: ``{…extra, "error": {"reason": …, "message": …}}``."""
    if output != "text":
        failure = {**extra, "error": {"reason": error.reason, "message": str(error)}}
        print_document(failure, output)


# -- the logging options, before or after the command ------------------------------------


def _relog(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """A logging option given after the command: log that way from now on."""
    if value is not None and param.name is not None and not ctx.resilient_parsing:
        settings = {**CURRENT, param.name.removeprefix("log_"): value}
        setup_logging(settings["format"], settings["level"], settings["stream"])


def _log_option(name: str, *, on_group: bool) -> click.Option:
    flag, choices, envvar, default, help_text = LOG_CHOICES[name]
    if on_group:
        return click.Option(
            [flag, name], type=click.Choice(choices), default=default, envvar=envvar,
            show_envvar=True, help=help_text,
        )
    return click.Option(
        [flag, name], type=click.Choice(choices), default=None, expose_value=False,
        callback=_relog, help=help_text,
    )


def add_global_options(group: click.Group) -> None:
    """Give every command of ``group`` (and of its subgroups) the logging options, so
    they may follow the command too (commands with ``--config`` have it already)."""
    for command in group.commands.values():
        have = {p.name for p in command.params}
        command.params += [_log_option(n, on_group=False) for n in LOG_CHOICES if n not in have]
        if isinstance(command, click.Group):
            add_global_options(command)


EPILOG = f"""\b
Exit codes:
  0    success
  {EXIT_FAILED}    some image, stream or receiver failed (the rest completed); the run failed
  {EXIT_USAGE}    bad usage or configuration; nothing was touched
  {EXIT_LOCKED}    another run holds the state lock (mirrord sync --wait waits)
  {EXIT_INTERRUPTED}  stopped by SIGINT (Ctrl-C)
  {EXIT_TERMINATED}  stopped by SIGTERM (systemctl stop, podman stop)

\b
Configuration: --config FILE, else $MIRRORD_CONFIG, else /etc/mirrord/mirrord.yaml
(root) or ~/.config/mirrord/mirrord.yaml; without one, every command but daemon and
validate uses the embedded default (ubi9/ubi-micro from registry.access.redhat.com).
Shell completion: mirrord completion bash|zsh|fish --help.
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EPILOG)
@config_option
@click.version_option(__version__, "--version", prog_name="mirrord",
                      message="%(prog)s version %(version)s")
@click.pass_context
def main(ctx: click.Context, config_path: Path | None, **logging_options: str) -> None:
    """Keep a mirror registry (or OCI layout) in step with upstream repositories."""
    setup_logging(
        logging_options["log_format"], logging_options["log_level"], logging_options["log_stream"]
    )


main.params += [_log_option(n, on_group=True) for n in LOG_CHOICES]
