"""``mirrord notifications``: each receiver's outbox and the deliveries that failed.

Registered on the ``mirrord`` group by :func:`register` (see ``mirrord.cli``). A
reader: it never creates the state, and shows the configured receivers with zero
counts before the first sync.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import click
import yaml

from mirrord.cli import config_option, load, run_async
from mirrord.config import Config


def register(main: click.Group) -> None:
    main.add_command(notifications)


@click.command()
@config_option
@click.option(
    "-o", "--output", "output", type=click.Choice(["text", "json", "yaml"]), default="text"
)
@click.option("--failures", type=click.IntRange(min=0), default=20, metavar="N",
              help="Failed deliveries to list (default 20).")
def notifications(config_path: Path | None, output: str, failures: int) -> None:
    """Show each notification receiver's queue and the deliveries that failed."""
    config = load(config_path, embedded=True)
    document = run_async(lambda: _document(config, failures))
    if output == "json":
        click.echo(json.dumps(document, indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(document, sort_keys=False), nl=False)
    else:
        _print(document)


async def _document(config: Config, failures: int) -> dict[str, Any]:
    from mirrord.notify import status_document
    from mirrord.state import open_store, store_exists

    if not store_exists(config.state_dir):  # no state yet: nothing was ever queued
        return await status_document(None, config.notifications, failures=failures)
    async with await anyio.to_thread.run_sync(open_store, config.state_dir) as store:
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
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if document["failures"]:
        click.echo("\nFailed deliveries (newest first):")
    for failure in document["failures"]:
        what = f"{failure['stream']}:{failure['tag']}"
        attempts = f"{failure['attempts']} attempt{'s' if failure['attempts'] != 1 else ''}"
        when = "given up" if failure["givenUp"] else f"next at {failure['nextAttempt']}"
        click.echo(f"  #{failure['id']} {failure['receiver']} {what}: {attempts}, {when}")
        click.echo(f"      {failure['error']}")
