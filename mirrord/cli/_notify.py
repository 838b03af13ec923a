"""``mirrord notifications``: each receiver's outbox and the deliveries that failed.

A reader: it never creates the state, and shows the configured receivers with zero
counts before the first sync.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import click

from mirrord.cli._app import config_option, load, main, output_option, run_async
from mirrord.cli._render import print_document, table
from mirrord.config import Config


@main.command()
@config_option
@output_option
@click.option("--failures", type=click.IntRange(min=0), default=20, metavar="N",
              help="Failed deliveries to list (default 20).")
def notifications(config_path: Path | None, output: str, failures: int) -> None:
    """Show each notification receiver's queue and the deliveries that failed."""
    config = load(config_path, embedded=True)
    document = run_async(lambda: _document(config, failures))
    if output != "text":
        print_document(document, output)
    else:
        _print(document)


async def _document(config: Config, failures: int) -> dict[str, Any]:
    from mirrord.notify import status_document
    from mirrord.state import open_state, state_exists

    if not state_exists(config):  # no state yet: nothing was ever queued
        return await status_document(None, config.notifications, failures=failures)
    async with await anyio.to_thread.run_sync(open_state, config) as store:
        return await status_document(store, config.notifications, failures=failures)


def _print(document: dict[str, Any]) -> None:
    receivers = document["receivers"]
    if not receivers:
        click.echo("No notification receivers are configured.")
        return
    header = ["RECEIVER", "TARGET", "PENDING", "RETRYING", "GIVEN UP", "DELIVERED",
              "LAST DELIVERED"]
    rows = [header] + [
        [r["receiver"], r["target"], str(r["pending"]), str(r["retrying"]), str(r["givenUp"]),
         str(r["delivered"]), r["lastDelivered"] or "-"]
        for r in receivers
    ]
    click.echo(table(rows), nl=False)
    if document["failures"]:
        click.echo("\nFailed deliveries (newest first):")
    for failure in document["failures"]:
        what = (f"{failure['stream']}:{failure['tag']}" if failure["stream"]
                else failure["action"] or "event")  # cluster-resources.changed: no stream
        attempts = f"{failure['attempts']} attempt{'s' if failure['attempts'] != 1 else ''}"
        when = "given up" if failure["givenUp"] else f"next at {failure['nextAttempt']}"
        click.echo(f"  #{failure['id']} {failure['receiver']} {what}: {attempts}, {when}")
        click.echo(f"      {failure['error']}")
