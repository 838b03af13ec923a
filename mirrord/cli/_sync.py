"""``mirrord sync`` (one run, then exit) and ``mirrord validate``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import click

from mirrord.cli._app import (
    OnError,
    config_option,
    error_document,
    fail,
    load,
    main,
    output_option,
    run_async,
)
from mirrord.cli._exitcodes import EXIT_FAILED, EXIT_USAGE
from mirrord.cli._signals import Interruption, run_stoppable, stop_timeout_option
from mirrord.config import Config, StreamConfig, missing_file_warnings
from mirrord.errors import ConfigError, MirrordError

if TYPE_CHECKING:
    from mirrord.sync import SyncResult


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
@stop_timeout_option
def sync(
    config_path: Path | None,
    dry_run: bool,
    streams: tuple[str, ...],
    output: str,
    wait: bool,
    progress: bool | None,
    stop_timeout: float,
) -> None:
    """Mirror every configured stream once, then exit (non-zero if any image failed).

    SIGTERM or SIGINT: no new copy starts, copies in flight get --stop-timeout seconds,
    the summary is printed and the exit status is 143 (SIGTERM) or 130 (SIGINT)."""

    def document(error: MirrordError) -> None:
        error_document(error, output, dryRun=dry_run)

    config = load(config_path, embedded=True, on_error=document)
    selected = _select_streams(config, streams, on_error=document)
    show_progress = sys.stdout.isatty() if progress is None else progress
    ok, interruption = run_async(
        lambda: run_sync_command(
            config,
            selected,
            dry_run=dry_run,
            output=output,
            wait=wait,
            progress=show_progress and not dry_run,
            stop_timeout=stop_timeout,
        ),
        on_error=document,
    )
    if interruption.requested:
        click.echo(f"error: {interruption.describe()}", err=True)
        sys.exit(interruption.exit_code)
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


async def run_sync_command(
    config: Config,
    streams: Sequence[StreamConfig],
    *,
    dry_run: bool,
    output: str,
    wait: bool,
    progress: bool,
    stop_timeout: float = 30.0,
) -> tuple[bool, Interruption]:
    """``mirrord sync``: True when every selected tag is in the mirror, and the stop
    signal received (see :mod:`._signals`; the summary is printed either way).

    A run that cannot start (the mirror unreachable, the state unusable, the lock
    held) raises; the CLI prints the error (and, with ``-o json|yaml``, a document
    naming it on stdout, as for a configuration that does not load).
    """
    from mirrord.cli._sync_output import print_summary
    from mirrord.sync import SyncResult

    result = SyncResult()
    _, interruption = await run_stoppable(
        lambda should_stop: _sync_body(
            config, streams, result, dry_run, wait, progress, should_stop
        ),
        stop_timeout,
    )
    result.interrupted = interruption.name
    print_summary(result, output)
    return result.ok, interruption


async def _sync_body(
    config: Config,
    streams: Sequence[StreamConfig],
    result: SyncResult,
    dry_run: bool,
    wait: bool,
    progress: bool,
    should_stop: Callable[[], bool],
) -> None:
    """Open the state and clients, take the lock, run (or plan) into ``result``."""
    from mirrord.cli._sync_output import live_progress, print_plan
    from mirrord.state import Store, open_state, state_exists
    from mirrord.sync import plan_once, sync_once
    from mirrord.transports import ClientPool

    async with AsyncExitStack() as stack:
        store: Store | None = None
        if not dry_run or state_exists(config):  # a dry run creates no state
            store = await anyio.to_thread.run_sync(open_state, config)
            stack.push_async_callback(store.aclose)
        pool = await stack.enter_async_context(ClientPool(config))
        if dry_run:
            await plan_once(config, store, pool, list(streams), result=result)
            print_plan(result)
        else:
            assert store is not None
            await stack.enter_async_context(store.acquire_run_lock(wait=wait))
            await store.abandon_running_jobs()
            with live_progress(result, progress):
                await sync_once(
                    config, store, pool, list(streams), result=result, should_stop=should_stop
                )


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
