"""Tags in the mirror that mirrord did not write: what they name is not pruned.

The registry deletes a manifest by digest (distribution spec, "Deleting Manifests"),
and with it every tag naming it. A mirror is often shared: an admin may have tagged a
mirrored image by hand (``prod``), or another tool writes beside mirrord. Before the
pruner deletes a digest from a repository it lists the repository's tags and asks the
mirror what each tag it does not know names (``HEAD``, no body): a digest one of them
names is kept, with a warning naming the tag. The tags mirrord knows (its streams'
history) are not asked about: the plan already keeps what they name; nor are the
attachment tags keyed by a digest (cosign's ``sha256-<hex>.sig``, the referrers tag
schema's ``sha256-<hex>``), which name signatures and indexes of them, not images.

Only live streams' repositories are checked: a deleted stream's repository holds the
tags mirrord wrote for it, which its state no longer lists.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence

from mirrord.core.reference import escaped
from mirrord.core.selection import is_attached_tag
from mirrord.errors import NotFoundError
from mirrord.prune._plan import closure
from mirrord.transports import Destination

log = logging.getLogger("mirrord.prune")


async def spare_foreign_tags(
    destination: Destination,
    planned: Iterable[tuple[str, str]],
    known_tags: Mapping[str, set[str]],
    children: Mapping[str, Sequence[str]],
) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """``planned`` (repository, digest) split into what may go and what a foreign tag
    keeps: ``(repository, digest, tag)``, an index with its children (``children``:
    index -> child digests). ``known_tags``: per live stream's repository, the tags
    mirrord records there; a repository absent from it is not checked."""
    by_repository: dict[str, list[str]] = {}
    for repository, digest in planned:
        by_repository.setdefault(repository, []).append(digest)
    going: list[tuple[str, str]] = []
    kept: list[tuple[str, str, str]] = []
    for repository, digests in by_repository.items():
        named = (
            await _foreign_names(destination, repository, known_tags[repository])
            if repository in known_tags
            else {}
        )
        # What a foreign tag names stays whole: an index and the manifests it lists.
        held = {d: tag for root, tag in named.items() for d in closure({root}, children)}
        for digest in digests:
            if digest in held:
                kept.append((repository, digest, held[digest]))
                log.warning(
                    "kept %s@%s: the mirror's tag %s, which mirrord did not write, names it",
                    repository, digest, escaped(held[digest], 80),
                )
            else:
                going.append((repository, digest))
    return going, kept


async def _foreign_names(
    destination: Destination, repository: str, known: set[str]
) -> dict[str, str]:
    """digest -> one foreign tag naming it, in ``repository`` of the mirror."""
    named: dict[str, str] = {}
    try:
        listed = await destination.list_tags(repository)
    except NotFoundError:  # the repository is gone: nothing left to delete either
        return named
    for tag in listed:
        if tag in known or is_attached_tag(tag):
            continue
        found = await destination.head_manifest(repository, tag)
        if found is not None:
            named.setdefault(found.digest, tag)
    return named

