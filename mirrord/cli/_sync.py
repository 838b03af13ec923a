"""``mirrord sync`` (one run, then exit) and ``mirrord validate``."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import click

from mirrord.cli._app import (
    config_option,
    echo_error,
    error_document,
    load,
    main,
    output_option,
    run_async,
)
from mirrord.cli._completion import complete_streams
from mirrord.cli._exitcodes import EXIT_FAILED
from mirrord.cli._signals import Interruption, run_stoppable, stop_timeout_option
from mirrord.config import Config, StreamConfig, missing_file_warnings
from mirrord.errors import MirrordError

if TYPE_CHECKING:
    from mirrord.state import Store
    from mirrord.sync import SyncResult


@main.command()
@config_option
@click.option("--dry-run", is_flag=True, help="Print the plan and change nothing.")
@click.option(
    "--stream",
    "streams",
    multiple=True,
    metavar="NAME",
    shell_complete=complete_streams,
    help="Only these streams.",
)
@output_option
@click.option(
    "--wait/--no-wait", default=False, help="Wait for a running sync to finish instead of refusing."
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Live progress display when stdout is a terminal (never off one).",
)
@click.option(
    "--verify",
    is_flag=True,
    help="HEAD every tag at the mirror (finds tags changed there out of band) "
    "instead of one tag listing per repository checked against the state.",
)
@stop_timeout_option
def sync(
    config_path: Path | None,
    dry_run: bool,
    streams: tuple[str, ...],
    output: str,
    wait: bool,
    progress: bool | None,
    verify: bool,
    stop_timeout: float,
) -> None:
    """Mirror every configured stream once, then exit (non-zero if any image failed).

    An unchanged tag costs one HEAD at the source; the mirror is checked with one tag
    listing per repository against the state (a tag deleted there is copied again).
    --verify HEADs every mirror tag too, so a tag overwritten there is found.

    SIGTERM or SIGINT: no new copy starts, copies in flight get --stop-timeout seconds,
    the summary is printed and the exit status is 143 (SIGTERM) or 130 (SIGINT)."""

    def document(error: MirrordError) -> None:
        error_document(error, output, dryRun=dry_run)

    config = load(config_path, embedded=True, on_error=document)
    from mirrord.transports import prepare_tls  # loaded with the configuration's checks

    # The TLS contexts build in threads while the run starts (~50 ms of trust stores).
    prepare_tls(config)
    # Never off a terminal (a pipe, a file, journald), whatever --progress says.
    show_progress = sys.stdout.isatty() and progress is not False
    ok, interruption = run_async(
        lambda: run_sync_command(
            config,
            streams,
            dry_run=dry_run,
            output=output,
            wait=wait,
            progress=show_progress and not dry_run,
            stop_timeout=stop_timeout,
            verify=verify,
        ),
        on_error=document,
    )
    if interruption.requested:
        echo_error(interruption.describe())
        sys.exit(interruption.exit_code)
    sys.exit(0 if ok else EXIT_FAILED)


async def run_sync_command(
    config: Config,
    names: Sequence[str],
    *,
    dry_run: bool,
    output: str,
    wait: bool,
    progress: bool,
    stop_timeout: float = 30.0,
    verify: bool = False,
) -> tuple[bool, Interruption]:
    """``mirrord sync``: True when every selected tag is in the mirror, and the stop
    signal received (see :mod:`._signals`; the summary is printed either way).

    ``names`` (``--stream``) may name configured streams and streams the state holds
    (created by ``import-image`` or ``tag``); none: the configured streams and the
    stored ones marked scheduled, as the daemon runs them. An unknown name raises
    ConfigError (exit 2) before anything runs.

    A run that cannot start (the mirror unreachable, the state unusable, the lock
    held) raises; the CLI prints the error (and, with ``-o json|yaml``, a document
    naming it on stdout, as for a configuration that does not load).
    """
    from mirrord.cli._sync_output import print_plan, print_summary
    from mirrord.sync import SyncResult

    result = SyncResult()
    started = time.monotonic()
    _, interruption = await run_stoppable(
        lambda should_stop: _sync_body(
            config, names, result, dry_run, wait, progress, should_stop, verify
        ),
        stop_timeout,
    )
    result.interrupted = interruption.name
    if not result.seconds:  # a run cut short (a second signal) never set its time
        result.seconds = time.monotonic() - started
    if dry_run and output == "text":  # -o json|yaml: the document alone on stdout
        print_plan(result)
    print_summary(result, output)
    if config.path is None:
        _embedded_default_hint(config, result)
    return result.ok, interruption


async def _sync_body(
    config: Config,
    names: Sequence[str],
    result: SyncResult,
    dry_run: bool,
    wait: bool,
    progress: bool,
    should_stop: Callable[[], bool],
    verify: bool = False,
) -> None:
    """Open the state and clients, take the lock, run (or plan) into ``result``."""
    from mirrord.cli._live import live_progress
    from mirrord.state import open_state, state_exists
    from mirrord.sync import plan_once, runnable, sync_once
    from mirrord.transports import ClientPool

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
            await plan_once(config, store, pool, streams, result=result)
        else:
            assert store is not None
            await _hold(stack, config, store, streams, wait)
            await store.abandon_running_jobs()
            with live_progress(result, progress):
                await sync_once(
                    config,
                    store,
                    pool,
                    streams,
                    result=result,
                    should_stop=should_stop,
                    estimate_bytes=progress,
                    verify=verify,
                )


async def _hold(
    stack: AsyncExitStack, config: Config, store: Store, streams: Sequence[StreamConfig],
    wait: bool,
) -> None:
    """The run lock: exclusive on a store of one process; on one several workers share
    (PostgreSQL), shared, with the leases of the run's streams (another worker's stream
    refuses the run, or with ``wait`` is waited for)."""
    from mirrord.sync import hold_streams

    if not store.several_daemons:
        await stack.enter_async_context(store.acquire_run_lock(wait=wait))
        return
    await stack.enter_async_context(store.acquire_run_lock(wait=wait, shared=True))
    names = [s.name for s in streams]
    await stack.enter_async_context(hold_streams(store, names, config.lease, wait=wait))


def _embedded_default_hint(config: Config, result: SyncResult) -> None:
    """The quick start without network: say that the registry cannot be reached, that
    this is the embedded default, and how to name a configuration instead."""
    from mirrord.config import default_config_path
    from mirrord.errors import ConnectError

    errors = [p.error for p in result.stream_errors] + [r.error for r in result.failed]
    hosts = sorted({e.registry for e in errors if isinstance(e, ConnectError) and e.registry})
    if not hosts:
        return
    sources = ", ".join(
        f"{s.source}:{','.join(s.tags)}" if s.tags else s.source for s in config.streams
    )
    echo_error(
        f"cannot reach the registry {', '.join(hosts)}: this run used the embedded default "
        f"configuration ({sources} into {config.mirror}), as no configuration file was "
        f"found at {default_config_path()}. Check this machine's network, or point mirrord "
        f"at a configuration: --config FILE, $MIRRORD_CONFIG, or {default_config_path()} "
        "(config/minimal.yaml is a start)."
    )


@main.command()
@config_option
def validate(config_path: Path | None) -> None:
    """Check the configuration file and exit (2 when it is invalid).

    A file the configuration names that is absent on this machine (an auth_file, a
    ca_file, the API token, a webhook secret, the database password, the policy) is a
    warning (it may exist where mirrord runs), and so are an empty secret and an
    auth_file that cannot be read or is not an auth file; the exit status stays 0.
    """
    config = load(config_path)
    for warning in (*missing_file_warnings(config), *_unreadable_auth_files(config)):
        echo_error(warning, "warning")
    click.echo(f"{config.path}: valid: {len(config.streams)} streams, mirror {config.mirror}")


def _unreadable_auth_files(config: Config) -> list[str]:
    """One line per configured ``auth_file`` that exists but cannot be used (unreadable,
    a directory, not JSON, not an auth file); the error names the file, never a value."""
    from mirrord.credentials import read_auth_file
    from mirrord.errors import CredentialError

    warnings: list[str] = []
    for host, settings in config.registries.items():
        path = settings.auth_file
        if path is None or not path.is_file():
            continue  # absent or not a file: missing_file_warnings said so
        try:
            read_auth_file(path, f'registries["{host}"].auth_file: {path}')
        except CredentialError as error:
            warnings.append(f"{error} (mirrord cannot use it)")
    return warnings
