"""What an upstream lists and references, checked: the valid tags of a listing, and
the blobs of an image (every manifest read bounded by the configured limits)."""

from __future__ import annotations

import logging

from mirrord.config import StreamConfig
from mirrord.copy import TagPlan, check_manifest
from mirrord.core.limits import Limits
from mirrord.core.reference import escaped
from mirrord.core.selection import split_invalid, wanted_invalid
from mirrord.transports import Source

log = logging.getLogger("mirrord.sync")


def valid_tags(stream: StreamConfig, listed: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """The listed tags that are valid, and the invalid ones the stream would select.

    Every invalid one is skipped with a warning naming it escaped (``repr``); it never
    reaches a URL, a file name or the state."""
    valid, invalid = split_invalid(listed)
    if invalid:
        shown = ", ".join(escaped(t, 80) for t in invalid[:10])
        more = f" and {len(invalid) - 10} more" if len(invalid) > 10 else ""
        log.warning(
            "stream %s: %s lists %d tags that are not valid tag names; skipped: %s%s",
            stream.name,
            stream.source,
            len(invalid),
            shown,
            more,
        )
    return valid, wanted_invalid(invalid, stream)


async def image_blobs(source: Source, plan: TagPlan, limits: Limits) -> dict[str, int]:
    """Digest -> size of every blob the tag's image (all platforms of an index) references."""
    assert plan.source is not None
    where = f"{source.registry}/{plan.source_repository}@{plan.source.digest}"
    manifest = await source.get_manifest(plan.source_repository, plan.source.digest)
    check_manifest(manifest, limits, where)
    children = [manifest]
    if manifest.is_index:
        children = [
            await source.get_manifest(plan.source_repository, child.digest)
            for child in manifest.manifests
        ]
        for child in children:
            check_manifest(child, limits, f"{where} child {child.digest}")
    return {blob.digest: blob.size for child in children for blob in child.blobs}
