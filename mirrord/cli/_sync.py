"""``mirrord sync`` (one run, then exit) and ``mirrord validate``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import click

from mirrord.cli._app import (
    config_option,
    error_document,
    load,
    main,
    output_option,
    run_async,
)
from mirrord.cli._exitcodes import EXIT_FAILED
from mirrord.config import Config, missing_file_warnings
from mirrord.errors import MirrordError


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

    def document(error: MirrordError) -> None:
        error_document(error, output, dryRun=dry_run)

    config = load(config_path, embedded=True, on_error=document)
    show_progress = sys.stdout.isatty() if progress is None else progress
    ok = run_async(
        lambda: run_sync_command(
            config,
            streams,
            dry_run=dry_run,
            output=output,
            wait=wait,
            progress=show_progress and not dry_run,
        ),
        on_error=document,
    )
    sys.exit(0 if ok else EXIT_FAILED)


async def run_sync_command(
    config: Config,
    names: Sequence[str],
    *,
    dry_run: bool,
    output: str,
    wait: bool,
    progress: bool,
) -> bool:
    """``mirrord sync``: True when every selected tag is in the mirror.

    ``names`` (``--stream``) may name configured streams and streams the state holds
    (created by ``import-image`` or ``tag``); none: the configured streams and the
    stored ones marked scheduled, as the daemon runs them. An unknown name raises
    ConfigError (exit 2) before anything runs.

    A run that cannot start (the mirror unreachable, the state unusable, the lock
    held) raises; the CLI prints the error (and, with ``-o json|yaml``, a document
    naming it on stdout, as for a configuration that does not load).
    """
    from mirrord.cli._sync_output import live_progress, print_plan, print_summary
    from mirrord.state import Store, open_state, state_exists
    from mirrord.sync import SyncResult, plan_once, runnable, sync_once
    from mirrord.transports import ClientPool

    result = SyncResult()
    async with AsyncExitStack() as stack:
        store: Store | None = None
        exists = state_exists(config)
        if names and not exists:
            runnable(config, [], names)  # an unknown name fails before the state is created
        if not dry_run or exists:  # a dry run creates no state
            store = await anyio.to_thread.run_sync(open_state, config)
            stack.push_async_callback(store.aclose)
        stored = await store.list_streams() if store is not None else []
        config, streams = runnable(config, stored, names)
        pool = await stack.enter_async_context(ClientPool(config))
        if dry_run:
            result = await plan_once(config, store, pool, streams)
            print_plan(result)
        else:
            assert store is not None
            await stack.enter_async_context(store.acquire_run_lock(wait=wait))
            await store.abandon_running_jobs("interrupted: the process running it died")
            with live_progress(result, progress):
                await sync_once(config, store, pool, streams, result=result)
    print_summary(result, output)
    return result.ok


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
