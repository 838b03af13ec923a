"""What ``mirrord sync`` shows: the plan of a dry run, live progress, and the summary."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from mirrord.cli._render import print_document
from mirrord.core.imagestream import TAG_ALIAS
from mirrord.core.reference import escaped
from mirrord.core.units import human_bytes
from mirrord.notify import DeliveryCounts
from mirrord.sync import SyncResult


def summary(result: SyncResult) -> dict[str, Any]:
    """The run's counts, as ``-o json`` prints them."""
    stats = result.stats
    return {
        "dryRun": result.dry_run,
        "images": {
            "copied": stats.images_copied,
            "unchanged": stats.images_unchanged,
            "failed": result.failed_count,
            "planned": result.planned_count,
            "skipped": result.skipped,
            "cut": result.cut,
        },
        "interrupted": result.interrupted or None,
        "blobs": {
            "copied": stats.blobs_copied,
            "mounted": stats.blobs_mounted,
            "present": stats.blobs_present,
        },
        "signatures": {
            "copied": stats.signatures_copied,
            "verified": stats.signatures_verified,
            "rejected": stats.signatures_rejected,
        },
        "referrers": {
            "copied": stats.referrers_copied,
            **({"planned": result.planned_referrers} if result.dry_run else {}),
        },
        "bytes": stats.bytes_copied,
        **({"bytesToCopy": result.planned_bytes} if result.dry_run else {}),
        "seconds": round(result.seconds, 3),
        "retries": stats.retries,
        "rateLimitWaitSeconds": round(stats.rate_limit_waits, 3),
        "failures": [
            {"stream": f.stream, "tag": f.tag, "reason": f.reason, "message": f.message}
            for f in result.failures()
        ],
        "warnings": [
            {"stream": w.stream, "tag": w.tag, "reason": w.reason, "message": w.message}
            for w in result.warnings
        ],
        "leftOut": {p.stream: list(p.left_out) for p in result.plans if p.left_out},
        **({"goneUpstream": _gone_upstream(result)} if result.dry_run else {}),
        **({"followed": _followed(result)} if result.followed else {}),
        **(
            {"notifications": _notifications(result.notifications)}
            if result.notifications is not None
            else {}
        ),
    }


def _gone_upstream(result: SyncResult) -> dict[str, Any]:
    return {
        stream: {"tags": list(tags), "delete": delete}
        for stream, (tags, delete) in result.gone_upstream.items()
    }


def _followed(result: SyncResult) -> dict[str, list[dict[str, str]]]:
    return {
        stream: [{"tag": tag, "policy": policy, "from": source} for tag, policy, source in tags]
        for stream, tags in result.followed.items()
    }


def _notifications(counts: DeliveryCounts) -> dict[str, int]:
    return {
        "delivered": counts.delivered,
        "failed": counts.failed,
        "givenUp": counts.given_up,
        "waiting": counts.waiting,
    }


def print_plan(result: SyncResult, out: TextIO | None = None) -> None:
    """The dry run's plan: each tag with what would happen, and the bytes to copy."""
    out = out or sys.stdout
    for stream_plan in result.plans:
        print(f"stream {stream_plan.stream}:", file=out)
        if stream_plan.error is not None:
            print(f"  error: {stream_plan.error}", file=out)
        for r in (r for r in result.results if r.plan.stream == stream_plan.stream):
            plan = r.plan
            detail = plan.source_digest or ""
            if r.outcome == "planned":
                detail += f" ({human_bytes(plan.bytes_to_copy or 0)}) -> {plan.mirror_reference}"
                if count := plan.referrers_to_copy:
                    detail += f", with {count} referrer{'s' if count > 1 else ''}"
            if r.error is not None:
                detail = str(r.error)
            word = "copy" if r.outcome == "planned" else r.outcome
            print(f"  {word:<9} {plan.tag:<30} {detail}", file=out)
        if stream_plan.left_out:
            print(f"  left out (over max_tags): {', '.join(stream_plan.left_out)}", file=out)
        if stream_plan.missing:
            print(f"  missing upstream: {', '.join(stream_plan.missing)}", file=out)
        if stream_plan.invalid:
            names = ", ".join(escaped(t, 80) for t in stream_plan.invalid)
            print(f"  invalid tag names upstream (skipped): {names}", file=out)
        gone, delete = result.gone_upstream.get(stream_plan.stream, ((), False))
        for tag in gone:
            what = "delete" if delete else "gone"
            why = "(delete_removed_tags)" if delete else "(kept in the mirror)"
            print(f"  {what:<9} {tag:<30} gone upstream {why}", file=out)
        for tag, policy, source in result.followed.get(stream_plan.stream, ()):
            how = "moves with it" if policy == TAG_ALIAS else "re-imported if it moved"
            print(f"  {'follow':<9} {tag:<30} {source} ({how}, after the stream's tags)", file=out)
    shared = sum(r.plan.bytes_to_copy or 0 for r in result.results) - result.planned_bytes
    note = f" (blobs shared by several images counted once: {human_bytes(shared)} less)"
    print(
        f"would copy {human_bytes(result.planned_bytes)} in {len(result.planned_blobs)} blobs"
        f" the target repositories lack{note if shared > 0 else ''}",
        file=out,
    )


def print_summary(result: SyncResult, fmt: str, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if fmt in ("json", "yaml"):
        print_document(summary(result), fmt, out)
        return
    for failure in result.failures():
        print(f"FAILED {failure.where}: [{failure.reason}] {failure.message}", file=out)
    for warning in result.warnings:
        print(f"WARNING {warning.where}: [{warning.reason}] {warning.message}", file=out)
    for stream, left in summary(result)["leftOut"].items():
        print(
            f"info: {stream}: {len(left)} tags not imported (max_tags): {', '.join(left)}", file=out
        )
    if result.notifications is not None:
        print(notifications_line(result.notifications), file=out)
    if result.interrupted:
        print(
            f"interrupted by {result.interrupted}: {result.skipped} copies not started, "
            f"{result.cut} cut short (their tags keep their previous images)",
            file=out,
        )
    if line := attached_line(result):
        print(line, file=out)
    print(result.summary_line(), file=out)


def attached_line(result: SyncResult) -> str:
    """``signatures: 2 copied, 2 verified, 0 rejected; referrers: 3 copied`` ("" for none)."""
    s = result.stats
    if not (s.signatures_copied or s.signatures_verified or s.signatures_rejected
            or s.referrers_copied):
        return ""
    return (
        f"signatures: {s.signatures_copied} copied, {s.signatures_verified} verified, "
        f"{s.signatures_rejected} rejected; referrers: {s.referrers_copied} copied"
    )


def notifications_line(counts: DeliveryCounts) -> str:
    line = (
        f"notifications: {counts.delivered} delivered, {counts.failed} failed "
        f"(retried later), {counts.given_up} given up; {counts.waiting} waiting"
    )
    if counts.failed or counts.given_up:
        line += " (`mirrord notifications` shows why)"
    return line
