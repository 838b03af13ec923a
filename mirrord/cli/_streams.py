"""The image-stream commands: ``import-image``, ``streams`` and ``describe``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mirrord.cli._app import (
    config_option,
    echo_error,
    fail,
    load,
    main,
    output_option,
    run_async,
)
from mirrord.cli._completion import complete_streams
from mirrord.cli._exitcodes import EXIT_FAILED, EXIT_USAGE
from mirrord.cli._render import print_document, render
from mirrord.cli._signals import run_stoppable, stop_timeout_option
from mirrord.core.modes import ImportMode, ReferencePolicy

if TYPE_CHECKING:
    from mirrord.sync import ImportOutcome, ImportRequest


@main.command("import-image")
@click.argument("target", metavar="STREAM[:TAG]")
@click.option("--from", "from_ref", metavar="REF", help="The repository (or REPO:TAG).")
@click.option(
    "--all", "import_all", is_flag=True, help="Import every tag (at most max_tags, default 50)."
)
@click.option("--confirm", is_flag=True, help="Allow creating the stream or changing its source.")
@click.option(
    "--scheduled/--no-scheduled",
    default=None,
    help="Have the daemon re-import the stream periodically (kept when not given).",
)
@click.option(
    "--reference-policy",
    type=click.Choice([p.value for p in ReferencePolicy], case_sensitive=False),
    help="Record the upstream reference (source) or the mirror's (local).",
)
@click.option(
    "--import-mode",
    type=click.Choice([m.value for m in ImportMode], case_sensitive=False),
    help="PreserveOriginal copies indexes whole; Legacy one platform.",
)
@click.option("--insecure", is_flag=True, help="Reach the source over plain HTTP this run.")
@click.option("--dry-run", is_flag=True, help="Show what would be imported; change nothing.")
@click.option("--wait/--no-wait", default=False, help="Wait for a running sync, not refuse.")
@config_option
@output_option
@stop_timeout_option
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
    stop_timeout: float,
) -> None:
    """Import STREAM[:TAG] into the mirror, like `oc import-image` (copies the images).

    SIGTERM/SIGINT stop it as they stop `mirrord sync` (exit 143/130)."""
    from mirrord.sync import ImportRequest

    request = ImportRequest(
        target=target,
        from_ref=from_ref,
        all=import_all,
        confirm=confirm,
        scheduled=scheduled,
        reference_policy=ReferencePolicy.parse(reference_policy) if reference_policy else None,
        import_mode=ImportMode.parse(import_mode) if import_mode else None,
        insecure=insecure,
        dry_run=dry_run,
        wait=wait,
    )
    _run_import(request, config_path, output, stop_timeout)


def _run_import(
    request: ImportRequest, config_path: Path | None, output: str, stop_timeout: float
) -> None:
    from mirrord.sync import Refusal, SyncResult
    from mirrord.sync import import_image as run_import

    config = load(config_path, embedded=True)
    result = SyncResult()
    outcome, interruption = run_async(
        lambda: run_stoppable(
            lambda stop: run_import(config, request, should_stop=stop, result=result),
            stop_timeout,
        )
    )
    if isinstance(outcome, Refusal):
        fail(outcome.message, EXIT_USAGE if outcome.usage else EXIT_FAILED)
    if outcome is not None:
        _print_import(outcome, output, request.dry_run)
    elif output != "text":  # cut: the stream as stored is not known here
        reason = {"reason": "Interrupted", "message": interruption.describe()}
        print_document({"interrupted": interruption.name, "error": reason}, output)
    if interruption.requested:
        fail(interruption.describe(), interruption.exit_code)
    sys.exit(0 if outcome is not None and outcome.result.ok else EXIT_FAILED)


def _print_import(outcome: ImportOutcome, output: str, dry_run: bool) -> None:
    from mirrord.cli._describe import describe_text
    from mirrord.cli._sync_output import print_plan, summary
    from mirrord.core.openshift import to_openshift

    result, stream = outcome.result, outcome.stream
    name = outcome.plan.stream.name
    for failed in result.failed:
        error = failed.error
        reason = error.reason if error else "InternalError"
        echo_error(f"tag {failed.plan.tag} failed: [{reason}] {error}")
    for stream_plan in result.stream_errors:
        reason = stream_plan.error.reason if stream_plan.error else "InternalError"
        echo_error(f"{stream_plan.stream}: [{reason}] {stream_plan.error}")
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


@main.command()
@config_option
@output_option
def streams(config_path: Path | None, output: str) -> None:
    """List the image streams: stored ones and configured ones not synced yet, with
    their mirror repository, tags, last update, failing tags and status."""
    from mirrord.cli._describe import (
        pending,
        pending_document,
        pending_row,
        read_streams,
        stream_list,
        streams_table,
    )

    config = load(config_path, embedded=True, announce=False)
    found = run_async(lambda: read_streams(config))
    waiting = pending(config, found)
    if output != "text":
        documents = [pending_document(config, s) for s in waiting]
        click.echo(render(stream_list(found, documents), output), nl=False)
    elif not found and not waiting:
        click.echo("No image streams found.", err=True)
    else:
        rows = [pending_row(config, s) for s in waiting]
        click.echo(streams_table(found, pending_rows=rows), nl=False)


@main.command()
@click.argument("name", metavar="STREAM[:TAG]", shell_complete=complete_streams)
@config_option
@output_option
def describe(name: str, config_path: Path | None, output: str) -> None:
    """Show a stream like `oc describe is`: tags, history with ages, conditions; or,
    for STREAM:TAG, that one tag's history."""
    from mirrord.cli._describe import describe_text, read_runs, read_streams, tag_text
    from mirrord.core.openshift import tag_status_dict, to_openshift

    config = load(config_path, embedded=True, announce=False)
    stream_name, tag = _split_tag(name)
    found = run_async(lambda: read_streams(config, stream_name))
    if not found:
        if any(s.name == stream_name for s in config.streams):
            fail(
                f'the image stream "{stream_name}" is configured but has not been imported yet '
                f"(run: mirrord sync --stream {stream_name})",
                EXIT_FAILED,
            )
        fail(f'image stream "{stream_name}" not found', EXIT_FAILED)
    stream = found[0]
    if tag is None:
        if output != "text":
            click.echo(render(to_openshift(stream), output), nl=False)
        else:
            runs = run_async(lambda: read_runs(config, stream.name))
            click.echo(describe_text(stream, runs=runs), nl=False)
        return
    status = stream.tag(tag)
    if status is None:
        fail(f'image stream tag "{stream_name}:{tag}" not found', EXIT_FAILED)
    if output != "text":
        click.echo(render({"stream": stream.name, **tag_status_dict(status)}, output), nl=False)
    else:
        click.echo(tag_text(stream, status), nl=False)


def _split_tag(name: str) -> tuple[str, str | None]:
    """``STREAM[:TAG]``: a stream name has no ``:`` (it is a repository path)."""
    stream, sep, tag = name.partition(":")
    if sep and not tag:
        fail(f"{name!r}: expected STREAM or STREAM:TAG", EXIT_USAGE)
    return stream, tag or None
