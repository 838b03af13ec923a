"""The image-stream commands: ``import-image``, ``streams`` and ``describe``.

:func:`register` adds them to the ``mirrord`` group. It builds them when called,
taking the shared options from :mod:`mirrord.cli` only then: importing that module
at the top would be a cycle when it runs as ``python -m mirrord.cli``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from mirrord._exitcodes import EXIT_FAILED
from mirrord.config import Config, ImportMode, ReferencePolicy

if TYPE_CHECKING:
    from mirrord._connect import ClientPool
    from mirrord._import_image import ImportPlan, ImportRequest, Refusal
    from mirrord.imagestream import ImageStream
    from mirrord.registry import RegistryOptions
    from mirrord.state import Store
    from mirrord.sync import SyncResult

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

_POLICIES: dict[str, ReferencePolicy] = {"source": "Source", "local": "Local"}
_MODES: dict[str, ImportMode] = {"legacy": "Legacy", "preserveoriginal": "PreserveOriginal"}


@dataclass
class ImportOutcome:
    """What ``import-image`` did, for printing."""

    plan: ImportPlan
    result: SyncResult
    stream: ImageStream | None
    """As stored after the run (None after a dry run of a stream not yet stored)."""


def register(main: click.Group) -> None:
    """Add ``import-image``, ``streams`` and ``describe`` to ``main``."""
    from mirrord.cli import config_option, output_option

    for build in (_import_image_command, _streams_command, _describe_command):
        main.add_command(build(config_option, output_option))


def _import_image_command(config_option: Decorator, output_option: Decorator) -> click.Command:
    @click.command("import-image")
    @click.argument("target", metavar="STREAM[:TAG]")
    @click.option("--from", "from_ref", metavar="REF", help="The repository (or REPO:TAG).")
    @click.option(
        "--all", "import_all", is_flag=True, help="Import every tag (at most max_tags, default 50)."
    )
    @click.option(
        "--confirm", is_flag=True, help="Allow creating the stream or changing its source."
    )
    @click.option(
        "--scheduled/--no-scheduled",
        default=None,
        help="Have the daemon re-import the stream periodically (kept when not given).",
    )
    @click.option(
        "--reference-policy",
        type=click.Choice(["source", "local"], case_sensitive=False),
        help="Record the upstream reference (source) or the mirror's (local).",
    )
    @click.option(
        "--import-mode",
        type=click.Choice(["Legacy", "PreserveOriginal"], case_sensitive=False),
        help="PreserveOriginal copies indexes whole; Legacy one platform.",
    )
    @click.option("--insecure", is_flag=True, help="Reach the source over plain HTTP this run.")
    @click.option("--dry-run", is_flag=True, help="Show what would be imported; change nothing.")
    @click.option("--wait/--no-wait", default=False, help="Wait for a running sync, not refuse.")
    @config_option
    @output_option
    def import_image(
        target: str,
        from_ref: str | None,
        import_all: bool,
        confirm: bool,
        scheduled: bool | None,
        reference_policy: str | None,
        import_mode: str | None,
        insecure: bool,
        dry_run: bool,
        wait: bool,
        config_path: Path | None,
        output: str,
    ) -> None:
        """Import STREAM[:TAG] into the mirror, like `oc import-image` (copies the images)."""
        from mirrord._import_image import ImportRequest

        request = ImportRequest(
            target=target,
            from_ref=from_ref,
            all=import_all,
            confirm=confirm,
            scheduled=scheduled,
            reference_policy=_POLICIES[reference_policy.lower()] if reference_policy else None,
            import_mode=_MODES[import_mode.lower()] if import_mode else None,
            insecure=insecure,
            dry_run=dry_run,
            wait=wait,
        )
        _run_import(request, config_path, output)

    return import_image


def _run_import(request: ImportRequest, config_path: Path | None, output: str) -> None:
    from mirrord._import_image import Refusal
    from mirrord.cli import fail, load, run_async

    config = load(config_path, embedded=True)
    outcome = run_async(lambda: import_image(config, request))
    if isinstance(outcome, Refusal):
        fail(outcome.message, outcome.code)
    _print_import(outcome, output, request.dry_run)
    sys.exit(0 if outcome.result.ok else EXIT_FAILED)


# -- running import-image ------------------------------------------------------------


def _insecure_source(registry: str) -> Callable[[str, RegistryOptions], RegistryOptions]:
    """Plain HTTP for ``registry`` in this run (``--insecure``)."""

    def override(host: str, options: RegistryOptions) -> RegistryOptions:
        return dataclasses.replace(options, insecure=True) if host == registry else options

    return override


async def _open_for(config: Config, dry_run: bool) -> Store | None:
    """The store; for a dry run only when it exists (a dry run creates nothing)."""
    from mirrord.state import open_store, store_exists

    if dry_run and not store_exists(config.state_dir):
        return None
    return await anyio.to_thread.run_sync(open_store, config.state_dir)


async def import_image(config: Config, request: ImportRequest) -> ImportOutcome | Refusal:
    """Resolve ``request``, record it, and run it as one recorded sync."""
    from mirrord._connect import ClientPool
    from mirrord._import_image import Refusal, parse_target, resolve
    from mirrord._runs import plan_once, sync_once

    target = parse_target(request)
    if isinstance(target, Refusal):
        return target
    async with AsyncExitStack() as stack:
        store = await _open_for(config, request.dry_run)
        if store is not None:
            stack.push_async_callback(store.aclose)
            if not request.dry_run:
                await stack.enter_async_context(store.acquire_run_lock(wait=request.wait))
                await store.abandon_running_jobs("interrupted: the process running it died")
        stored = await store.get_stream(target.name) if store is not None else None
        plan = resolve(config, request, target, stored)
        if isinstance(plan, Refusal):
            return plan
        others = tuple(s for s in config.streams if s.name != plan.stream.name)
        run_config = dataclasses.replace(config, streams=(*others, plan.stream))
        override = _insecure_source(plan.stream.source_registry) if request.insecure else None
        pool = await stack.enter_async_context(ClientPool(run_config, options_override=override))
        if request.dry_run:
            result = await plan_once(run_config, store, pool, [plan.stream])
            return ImportOutcome(plan, result, stored)
        assert store is not None
        await _record_request(run_config, store, pool, plan, stored)
        result = await sync_once(
            run_config, store, pool, [plan.stream], complete=plan.complete
        )
        return ImportOutcome(plan, result, await store.get_stream(plan.stream.name))


async def _record_request(
    config: Config, store: Store, pool: ClientPool, plan: ImportPlan, stored: ImageStream | None
) -> None:
    """Store the stream's spec; an import of an existing stream is a new generation."""
    from mirrord._connect import open_destination
    from mirrord._recorder import stream_spec

    destination = await open_destination(config, pool)
    updated = await store.upsert_stream(stream_spec(config, plan.stream, destination))
    if stored is not None and updated.generation == stored.generation:
        await store.bump_generation(plan.stream.name)


def _print_import(outcome: ImportOutcome, output: str, dry_run: bool) -> None:
    from mirrord._describe import describe_text, render
    from mirrord._output import print_plan, summary
    from mirrord.imagestream import to_openshift

    result, stream = outcome.result, outcome.stream
    name = outcome.plan.stream.name
    for failed in result.failed:
        error = failed.error
        reason = error.reason if error else "InternalError"
        click.echo(f"error: tag {failed.plan.tag} failed: [{reason}] {error}", err=True)
    for stream_plan in result.stream_errors:
        reason = stream_plan.error.reason if stream_plan.error else "InternalError"
        click.echo(f"error: {stream_plan.stream}: [{reason}] {stream_plan.error}", err=True)
    left_out = [t for p in result.plans for t in p.left_out]
    info = ""
    if left_out:
        limit = outcome.plan.stream.max_tags
        info = (
            f"info: {outcome.plan.stream.source}: {len(left_out)} tags not imported "
            f"(the limit is {limit}): {', '.join(left_out)}"
        )
    if output != "text":  # the stream as stored; for a dry run, the plan as data
        if dry_run:
            click.echo(render(summary(result), output), nl=False)
        elif stream is not None:
            click.echo(render(to_openshift(stream), output), nl=False)
        if info:
            click.echo(info, err=True)
        return
    word = "imported" if result.ok else "imported with errors"
    click.echo(f"imagestream/{name} {word}{' (dry run)' if dry_run else ''}\n")
    if dry_run:
        print_plan(result)
    elif stream is not None:
        click.echo(describe_text(stream), nl=False)
    if info:
        click.echo()
        click.echo(info)


def _streams_command(config_option: Decorator, output_option: Decorator) -> click.Command:
    @click.command()
    @config_option
    @output_option
    def streams(config_path: Path | None, output: str) -> None:
        """List the image streams: mirror repository, tags, last update, failing tags."""
        _list_streams(config_path, output)

    return streams


def _list_streams(config_path: Path | None, output: str) -> None:
    from mirrord._describe import read_streams, render, stream_list, streams_table
    from mirrord.cli import load, run_async

    config = load(config_path, embedded=True)
    found = run_async(lambda: read_streams(config))
    if output != "text":
        click.echo(render(stream_list(found), output), nl=False)
    elif not found:
        click.echo("No image streams found.", err=True)
    else:
        click.echo(streams_table(found), nl=False)


def _describe_command(config_option: Decorator, output_option: Decorator) -> click.Command:
    @click.command()
    @click.argument("name", metavar="STREAM")
    @config_option
    @output_option
    def describe(name: str, config_path: Path | None, output: str) -> None:
        """Show a stream like `oc describe is`: tags, history with ages, conditions."""
        _describe(name, config_path, output)

    return describe


def _describe(name: str, config_path: Path | None, output: str) -> None:
    from mirrord._describe import describe_text, read_streams, render
    from mirrord.cli import fail, load, run_async
    from mirrord.imagestream import to_openshift

    config = load(config_path, embedded=True)
    found = run_async(lambda: read_streams(config, name))
    if not found:
        if any(s.name == name for s in config.streams):
            fail(
                f'the image stream "{name}" is configured but has not been imported yet '
                f"(run: mirrord sync --stream {name})",
                EXIT_FAILED,
            )
        fail(f'image stream "{name}" not found', EXIT_FAILED)
    if output != "text":
        click.echo(render(to_openshift(found[0]), output), nl=False)
    else:
        click.echo(describe_text(found[0]), nl=False)
