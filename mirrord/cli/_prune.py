"""``mirrord prune`` (a dry run unless ``--confirm``) and ``mirrord prune status``.

"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import click

from mirrord.cli._app import config_option, echo_error, load, main, output_option, run_async
from mirrord.cli._exitcodes import EXIT_FAILED
from mirrord.cli._render import print_document, table
from mirrord.cli._signals import run_stoppable, stop_timeout_option
from mirrord.config import Config
from mirrord.core.imagestream import rfc3339
from mirrord.core.schedule import parse_duration
from mirrord.core.units import human_bytes

if TYPE_CHECKING:
    from mirrord.prune import PruneOverrides, PruneResult
    from mirrord.state import JobRun, PrunerCondition

DRY_RUN_LINE = "Dry run enabled - no modifications will be made. Add --confirm to remove images"
GC_LINE = (
    "Deleting manifests does not free blob storage: the registry's own garbage collection "
    "(`docker-registry garbage-collect /etc/docker/registry/config.yml` on Debian, "
    "`registry garbage-collect …` in the distribution image) "
    "reclaims it."
)
def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@main.group(invoke_without_command=True)
@config_option
@click.option("--confirm", is_flag=True, help="Remove what the dry run lists.")
@click.option(
    "--dry-run", is_flag=True, help="Only list what would go (the default without --confirm)."
)
@click.option(
    "--keep-tag-revisions",
    type=click.IntRange(min=0),
    metavar="N",
    help="Revisions of each tag to keep (default: pruning.keepTagRevisions).",
)
@click.option(
    "--keep-younger-than",
    metavar="DURATION",
    callback=_duration,
    help="Keep revisions younger than this Go duration, e.g. 60m, 1h30m "
    "(default: pruning.keepYoungerThanDuration).",
)
@click.option(
    "--prune-registry/--no-prune-registry",
    default=None,
    help="Also delete the manifests from the mirror (default: pruning.pruneRegistry).",
)
@output_option
@stop_timeout_option
@click.pass_context
def prune(
    ctx: click.Context,
    config_path: Path | None,
    confirm: bool,
    dry_run: bool,
    keep_tag_revisions: int | None,
    keep_younger_than: float | None,
    prune_registry: bool | None,
    output: str,
    stop_timeout: float,
) -> None:
    """Prune old tag revisions (and their manifests) like `oc adm prune images`.

    A dry run unless --confirm. `mirrord prune status` shows the pruner's conditions.
    SIGTERM/SIGINT: it may finish for --stop-timeout seconds, then is cut (recorded as
    interrupted; exit 143/130).
    """
    from mirrord.prune import PruneOverrides

    if ctx.invoked_subcommand is not None:
        ctx.obj = config_path
        return
    if confirm and dry_run:
        raise click.UsageError("--confirm and --dry-run contradict each other: pass one")
    config = load(config_path, embedded=True)
    overrides = PruneOverrides(keep_tag_revisions, keep_younger_than, prune_registry)
    if not confirm:
        click.echo(DRY_RUN_LINE, err=output != "text")
    ok, interruption = run_async(
        lambda: run_stoppable(
            lambda _: _prune_command(config, confirm, overrides, output), stop_timeout
        )
    )
    if interruption.requested:
        if ok is None and output != "text":  # cut: no result to print
            why = {"reason": "Interrupted", "message": interruption.describe()}
            print_document({"dryRun": not confirm, "ok": False, "error": why}, output)
        echo_error(interruption.describe())
        sys.exit(interruption.exit_code)
    sys.exit(0 if ok else EXIT_FAILED)


@prune.command()
@config_option
@output_option
@click.pass_context
def status(ctx: click.Context, config_path: Path | None, output: str) -> None:
    """Show the pruner's conditions and its last jobs."""
    config = load(config_path or ctx.obj, embedded=True)
    data = run_async(lambda: _status(config))
    if output != "text":
        print_document(data, output)
        return
    _print_status(data)


async def _prune_command(
    config: Config, confirm: bool, overrides: PruneOverrides, output: str
) -> bool:
    from mirrord.prune import run_prune
    from mirrord.state import open_state, open_store, state_exists
    from mirrord.transports import ClientPool

    async with AsyncExitStack() as stack:
        if confirm or state_exists(config):
            os.makedirs(config.state_dir, exist_ok=True)
            store = await anyio.to_thread.run_sync(open_state, config)
        else:  # nothing recorded yet; a dry run must not create the state to find that out
            empty = stack.enter_context(tempfile.TemporaryDirectory(prefix="mirrord-prune-"))
            store = await anyio.to_thread.run_sync(open_store, empty)
        stack.push_async_callback(store.aclose)
        if confirm:
            await stack.enter_async_context(store.acquire_run_lock(wait=False))
            await store.abandon_running_jobs()
        pool = await stack.enter_async_context(ClientPool(config))
        result = await run_prune(config, store, pool, confirm=confirm, overrides=overrides)
    if output != "text":
        print_document(result_dict(result), output)
    else:
        _print_result(result)
    if not result.ok:
        echo_error(result.message)
    return result.ok


def _table(rows: list[list[str]]) -> None:
    click.echo(table(rows), nl=False)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _print_result(result: PruneResult) -> None:
    plan = result.plan
    if not result.ok:
        click.echo(
            f"Prune failed after deleting {_plural(len(result.manifests_deleted), 'manifest')} "
            f"and {_plural(result.revisions_deleted, 'tag revision')}; the next run resumes."
        )
    if plan.pruned and result.ok:
        click.echo("\nDeleting tag revisions ...")
        rows = [["STREAM", "TAG", "REVISION", "IMAGE", "CREATED"]]
        rows += [
            [r.stream, r.tag, str(r.index), r.digest, rfc3339(r.event.created)] for r in plan.pruned
        ]
        _table(rows)
    if result.orphans.pruned and result.ok:
        click.echo("\nDeleting images of deleted image streams ...")
        rows = [["STREAM", "REPOSITORY", "IMAGE", "CREATED"]]
        rows += [
            [d.orphan.stream, d.repository or "", d.orphan.image, rfc3339(d.orphan.created)]
            for d in result.orphans.pruned
        ]
        _table(rows)
    if result.planned_manifests and result.ok:
        click.echo(f"\nDeleting manifests from {result.mirror} ...")
        _table([["REPOSITORY", "DIGEST"], *([r, d] for r, d in result.planned_manifests)])
    counts = result.counts()
    done = "would be deleted" if result.dry_run else "deleted"
    gone = (
        f" ({counts['manifestsAlreadyGone']} already gone)"
        if counts["manifestsAlreadyGone"]
        else ""
    )
    click.echo(
        f"\nSummary: {_plural(counts['tagRevisions'], 'tag revision')} {done}, "
        f"{_plural(counts['manifests'], 'manifest')} {done}{gone}, "
        f"{_plural(counts['streams'], 'image stream')} "
        f"{'would be updated' if result.dry_run else 'updated'}"
        + _orphan_summary(result, counts["orphanedImages"], done)
    )
    if not result.settings.prune_registry:
        click.echo(
            "pruneRegistry is false: only mirrord's metadata is pruned; the mirror is untouched."
        )
    elif result.blob_gc:
        verb = "would be removed" if result.dry_run else "removed"
        click.echo(
            f"Unreferenced blobs {verb} from {result.mirror}: "
            f"{counts['blobs']} ({human_bytes(counts['bytes'])})"
        )
    else:
        click.echo(GC_LINE)


def _orphan_summary(result: PruneResult, count: int, done: str) -> str:
    """``, N images of deleted streams deleted (M kept)`` when there are any."""
    kept = len(result.orphans.kept)
    if not count and not kept:
        return ""
    also = f" ({kept} kept: {_kept_reasons(result)})" if kept else ""
    return f", {_plural(count, 'image')} of deleted streams {done}{also}"


def _kept_reasons(result: PruneResult) -> str:
    reasons: dict[str, int] = {}
    for decision in result.orphans.kept:
        reasons[decision.kept_because] = reasons.get(decision.kept_because, 0) + 1
    return ", ".join(f"{n} {why}" for why, n in reasons.items())


async def _status(config: Config) -> dict[str, Any]:
    from mirrord.prune import PRUNER
    from mirrord.state import open_state, state_exists

    conditions: list[PrunerCondition] = []
    jobs: list[JobRun] = []
    if state_exists(config):  # a reader never creates the state
        async with await anyio.to_thread.run_sync(open_state, config) as store:
            conditions = await store.pruner_conditions(PRUNER)
            pruning = config.pruning
            limit = pruning.successful_jobs_history_limit + pruning.failed_jobs_history_limit
            jobs = await store.list_jobs(limit=limit, kind="prune")
    return {
        "conditions": [
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message,
                "lastTransitionTime": rfc3339(c.last_transition_time),
            }
            for c in conditions
        ],
        "jobs": [
            {
                "id": j.id,
                "status": j.status,
                "started": rfc3339(j.started),
                "finished": rfc3339(j.finished) if j.finished else None,
                "counts": dict(j.counts),
                "message": j.message,
            }
            for j in jobs
        ],
    }


def _print_status(data: dict[str, Any]) -> None:
    if not data["conditions"]:
        click.echo("The pruner has not run yet: no conditions recorded.")
    else:
        rows = [["TYPE", "STATUS", "REASON", "LAST TRANSITION", "MESSAGE"]]
        rows += [
            [c["type"], c["status"], c["reason"], c["lastTransitionTime"], c["message"]]
            for c in data["conditions"]
        ]
        _table(rows)
    if data["jobs"]:
        click.echo("\nPrune jobs:")
        rows = [["ID", "STATUS", "STARTED", "REVISIONS", "MANIFESTS", "MESSAGE"]]
        rows += [
            [
                str(j["id"]),
                j["status"],
                j["started"],
                str(j["counts"].get("tagRevisions", "")),
                str(j["counts"].get("manifests", "")),
                j["message"][:80],
            ]
            for j in data["jobs"]
        ]
        _table(rows)


def result_dict(result: PruneResult) -> dict[str, object]:
    """``mirrord prune -o json``."""
    s = result.settings
    counts = result.counts()
    return {
        "dryRun": result.dry_run,
        "mirror": result.mirror,
        "settings": {
            "keepTagRevisions": s.keep_tag_revisions,
            "keepYoungerThanSeconds": s.keep_younger_than,
            "pruneRegistry": s.prune_registry,
        },
        "tagRevisions": [
            {
                "stream": r.stream,
                "tag": r.tag,
                "revision": r.index,
                "image": r.digest,
                "created": rfc3339(r.event.created),
            }
            for r in result.plan.pruned
        ],
        "manifests": [{"repository": r, "digest": d} for r, d in result.planned_manifests],
        "keptForForeignTags": [
            {"repository": r, "digest": d, "tag": t} for r, d, t in result.foreign_kept
        ],
        "orphanedImages": [
            {
                "stream": d.orphan.stream,
                "repository": d.repository,
                "image": d.orphan.image,
                "created": rfc3339(d.orphan.created),
                "keptBecause": d.kept_because or None,
            }
            for d in (*result.orphans.pruned, *result.orphans.kept)
        ],
        "summary": {
            "tagRevisionsDeleted": counts["tagRevisions"],
            "manifestsDeleted": counts["manifests"],
            "manifestsAlreadyGone": counts["manifestsAlreadyGone"],
            "streamsUpdated": counts["streams"],
            "orphanedImagesDeleted": counts["orphanedImages"],
            "blobsDeleted": counts["blobs"],
            "bytesFreed": counts["bytes"],
        },
        "ok": result.ok,
        "reason": result.reason,
        "message": result.message,
        "job": result.job_id,
    }
