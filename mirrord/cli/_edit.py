"""The commands that change image streams without a sync: ``tag`` and ``delete``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mirrord.cli._app import config_option, fail, load, main, output_option, run_async
from mirrord.cli._exitcodes import EXIT_FAILED, EXIT_USAGE
from mirrord.cli._render import render

if TYPE_CHECKING:
    from mirrord.sync import Deletion


@main.command()
@click.argument("source", metavar="SOURCE")
@click.argument("target", metavar="STREAM:TAG")
@click.option(
    "--alias",
    is_flag=True,
    help="Follow SOURCE (a tag of the same stream): every run moves the tag with it.",
)
@click.option(
    "--scheduled",
    is_flag=True,
    help="Re-import SOURCE (an image by tag) on every run of the stream.",
)
@click.option("--wait/--no-wait", default=False, help="Wait for a running sync, not refuse.")
@config_option
@output_option
def tag(
    source: str,
    target: str,
    alias: bool,
    scheduled: bool,
    wait: bool,
    config_path: Path | None,
    output: str,
) -> None:
    """Point STREAM:TAG at SOURCE, like `oc tag` (copies the image into the mirror).

    SOURCE is another stream's tag (STREAM:TAG) or an image with a registry host
    (quay.io/org/image:1.2, host/repo@sha256:...). The tag's history gains an event
    (and a notification, as a sync sends). Without --alias or --scheduled the tag is
    pointed once; the stream's runs leave it alone until `import-image STREAM:TAG`
    points it back at the stream's source. A stream that does not exist is created.
    """
    from mirrord.cli._describe import tag_text
    from mirrord.core.openshift import to_openshift
    from mirrord.sync import Refusal, run_tag

    config = load(config_path, embedded=True)
    outcome = run_async(
        lambda: run_tag(config, source, target, wait=wait, alias=alias, scheduled=scheduled)
    )
    if isinstance(outcome, Refusal):
        fail(outcome.message, EXIT_USAGE if outcome.usage else EXIT_FAILED)
    if output != "text":
        click.echo(render(to_openshift(outcome.stream), output), nl=False)
        return
    moved = "tag" if outcome.result.changed else "tag unchanged"
    how = (
        f"set up to track {source}"
        if alias
        else f"set to import {source} periodically (on every run of {outcome.stream.name})"
        if scheduled
        else f"set to {source}"
    )
    click.echo(f"{moved}: {outcome.stream.name}:{outcome.tag} {how}")
    status = outcome.stream.tag(outcome.tag)
    if status is not None:
        click.echo()
        click.echo(tag_text(outcome.stream, status), nl=False)


@main.command()
@click.argument("names", metavar="STREAM...", nargs=-1, required=True)
@click.option(
    "--confirm",
    "--yes",
    "-y",
    "confirm",
    is_flag=True,
    help="Delete (without it: show what would be deleted).",
)
@click.option("--wait/--no-wait", default=False, help="Wait for a running sync, not refuse.")
@config_option
@output_option
def delete(
    names: tuple[str, ...], confirm: bool, wait: bool, config_path: Path | None, output: str
) -> None:
    """Remove image streams and their tag history from the state (a dry run unless
    --confirm). The images stay in the mirror until `mirrord prune --confirm` removes
    them (under the pruner's rules: keepYoungerThanDuration, never an image another
    stream uses). A stream still in the configuration is recreated by its next sync:
    remove it from the file to stop that (the pruner leaves its images until then)."""
    from mirrord.sync import delete_streams

    config = load(config_path, embedded=True)
    found = run_async(lambda: delete_streams(config, names, confirm=confirm, wait=wait))
    where = str(config.path) if config.path else "the embedded default configuration"
    if output != "text":
        click.echo(render(_document(found, confirm), output), nl=False)
    else:
        for item in found:
            _print_deletion(item, confirm, where)
        if not confirm and any(d.found for d in found):
            click.echo("(dry run: nothing deleted; pass --confirm to delete)")
        elif any(d.deleted and d.events for d in found):
            click.echo(
                "The images stay in the mirror until `mirrord prune --confirm` removes them "
                "(`mirrord prune` lists them)."
            )
    sys.exit(0 if all(d.found for d in found) else EXIT_FAILED)


def _print_deletion(item: Deletion, confirm: bool, where: str) -> None:
    if not item.found:
        hint = " (it is configured but has not been synced yet)" if item.configured else ""
        click.echo(f'error: image stream "{item.name}" not found{hint}', err=True)
        return
    what = f"{item.tags} tags, {item.events} tag events"
    verb = "deleted" if item.deleted else "would be deleted"
    click.echo(f'imagestream.image.openshift.io "{item.name}" {verb} ({what})')
    if item.configured:
        click.echo(
            f"  note: {item.name} is still defined in {where}: its next sync recreates it; "
            "remove it from the configuration to stop that"
        )


def _document(found: list[Deletion], confirm: bool) -> dict[str, Any]:
    return {
        "dryRun": not confirm,
        "items": [
            {
                "name": d.name,
                "found": d.found,
                "deleted": d.deleted,
                "tags": d.tags,
                "tagEvents": d.events,
                "configured": d.configured,
            }
            for d in found
        ],
    }
