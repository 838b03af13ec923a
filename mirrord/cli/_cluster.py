"""``mirrord cluster-resources``: IDMS, ITMS, ICSP, registries.conf and registries.d files
from what is mirrored.

A reader of the state: it never creates it, and takes no lock (the files are replaced
atomically, so a sync refreshing them at the same moment leaves one complete set).

Without ``--output-dir`` the files go to ``<state_dir>/cluster-resources/``, the
directory every sync refreshes; a partial view (``--stream``) or a merge of several
configurations must name its own directory, so it never overwrites that one.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import click

from mirrord.cli._app import fail, load, main, run_async
from mirrord.cli._exitcodes import EXIT_USAGE
from mirrord.cluster import (
    Change,
    ClusterResources,
    Inputs,
    build,
    default_directory,
    mirror_target,
    plan_changes,
    write_files,
)
from mirrord.config import Config
from mirrord.errors import ConfigError
from mirrord.state import Store, open_state, state_exists


@main.command("cluster-resources")
@click.option(
    "--config",
    "config_paths",
    type=click.Path(path_type=Path),
    multiple=True,
    help="Configuration file (default as for `sync`). Repeat to merge several mirrors of "
    "the same sources into one set (the first file's mirrors first).",
)
@click.option(
    "--output-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where to write (default: <state_dir>/cluster-resources).",
)
@click.option("--stream", "streams", multiple=True, metavar="NAME", help="Only these streams.")
@click.option(
    "--per-repository", is_flag=True, help="One entry per repository, never per namespace."
)
@click.option("--dry-run", is_flag=True, help="Print what would be written; write nothing.")
def cluster_resources(
    config_paths: tuple[Path, ...],
    output_dir: Path | None,
    streams: tuple[str, ...],
    per_repository: bool,
    dry_run: bool,
) -> None:
    """Write ImageDigestMirrorSet, ImageTagMirrorSet, ImageContentSourcePolicy and
    registries.conf files naming the mirror for what it holds."""
    configs = _registry_configs([load(p, embedded=True) for p in config_paths or (None,)])
    directory = output_dir or _default_directory(configs, streams)
    resources, inputs = run_async(lambda: _build(configs, streams, per_repository))
    for note in inputs.notes:
        click.echo(f"note: {note}", err=True)
    if dry_run:
        _print_plan(resources, directory, plan_changes(resources.files, directory))
        return
    changes = run_async(lambda: anyio.to_thread.run_sync(write_files, resources.files, directory))
    _print_result(resources, directory, changes)


def _registry_configs(configs: list[Config]) -> list[Config]:
    """The configurations with a registry mirror; exit 2 when none has one (an OCI
    layout is not something a cluster or podman can pull from)."""
    wanted: list[Config] = []
    for config in configs:
        try:
            mirror_target(config)
        except ConfigError as error:
            if len(configs) == 1:
                fail(str(error), EXIT_USAGE)
            click.echo(f"warning: skipped: {error}", err=True)
            continue
        if config not in wanted:
            wanted.append(config)
    if not wanted:
        fail("no configuration mirrors into a registry: nothing to describe", EXIT_USAGE)
    return wanted


def _default_directory(configs: Sequence[Config], streams: Sequence[str]) -> Path:
    if len(configs) > 1 or streams:
        why = "--stream" if streams else "several --config"
        fail(
            f"with {why}, name the directory with --output-dir: "
            f"{default_directory(configs[0])} holds what every stream mirrors "
            "(each sync rewrites it)",
            EXIT_USAGE,
        )
    return default_directory(configs[0])


async def _build(
    configs: Sequence[Config], streams: Sequence[str], per_repository: bool
) -> tuple[ClusterResources, Inputs]:
    async with AsyncExitStack() as stack:
        sources: list[tuple[Config, Store | None]] = []
        for config in configs:
            store: Store | None = None
            if state_exists(config):  # a reader never creates the state
                store = await anyio.to_thread.run_sync(open_state, config)
                stack.push_async_callback(store.aclose)
            sources.append((config, store))
        resources, inputs = await build(sources, names=streams, per_repository=per_repository)
    if unknown := [n for n in streams if n not in inputs.known]:
        configs[0].stream(unknown[0])  # raises ConfigError with a "did you mean"
        raise ConfigError(f"no stream named {unknown[0]!r}")
    return resources, inputs


def _print_plan(resources: ClusterResources, directory: Path, changes: list[Change]) -> None:
    changed = {c.name: c.action for c in changes}
    for name, text in resources.files.items():
        state = "would be written" if name in changed else "unchanged"
        click.echo(f"# --- {directory / name} ({state})")
        click.echo(text, nl=False)
    for name, action in changed.items():
        if action == "removed":
            click.echo(f"# --- {directory / name} (would be removed: nothing to describe)")
    if not resources.files:
        click.echo("Nothing is mirrored yet: no file would be written.")


def _print_result(resources: ClusterResources, directory: Path, changes: list[Change]) -> None:
    for change in changes:
        click.echo(f"{change.action} {directory / change.name}")
    unchanged = len(resources.files) - sum(c.action == "written" for c in changes)
    if unchanged:
        click.echo(f"unchanged: {unchanged} file{'s' if unchanged != 1 else ''} in {directory}")
    if not resources.files:
        click.echo("Nothing is mirrored yet (run `mirrord sync`): no file written.")
