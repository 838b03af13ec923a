"""The mirror side of planning: one tag listing instead of a ``HEAD`` per tag.

The state records which image each mirror tag was given. When the mirror
repository's tag listing still shows a tag and the record says the mirror holds
what the source's ``HEAD`` names, the tag is unchanged without asking the mirror.
Any disagreement (not listed, no record, the source moved) falls back to a ``HEAD``.
The same listings (taken where planning did not) tell the copy which repositories held
no tag when the run began: their blobs are not ``HEAD``ed one by one.

The trade-off: a tag deleted from the mirror out of band is repaired on every run
(the listing lacks it); a tag overwritten out of band under the same name is not
seen until a verifying run ``HEAD``s every tag (``mirrord sync --verify``, the
daemon's ``verify_every``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping

import anyio

from mirrord.config import StreamConfig
from mirrord.copy import Action, Imported, decide
from mirrord.core.imagestream import TagEvent
from mirrord.core.oci import Descriptor
from mirrord.errors import MirrordError, NotFoundError, ungrouped
from mirrord.registry import RetryPolicies, retrying
from mirrord.transports import Destination

log = logging.getLogger("mirrord.sync")

# A stream's recorded current mirror image per tag (removed tags left out).
RecordedHook = Callable[[str], Mapping[str, TagEvent]]
RetryHook = Callable[[MirrordError, float], None]


class MirrorView:
    """What the mirror holds, as one listing per repository and the state agree.

    ``recorded`` None (no state, or a verifying run): :meth:`known` is always None,
    so every tag is ``HEAD``ed at the mirror."""

    def __init__(self, recorded: RecordedHook | None) -> None:
        self._recorded = recorded
        # Per stream: the mirror's listed tags and the records, read once.
        self._listings: dict[str, frozenset[str]] = {}
        self._records: dict[str, Mapping[str, TagEvent]] = {}
        # Per mirror repository: whether its listing showed a tag (before any copy).
        self._tagged: dict[str, bool] = {}

    async def list(
        self,
        stream: StreamConfig,
        destination: Destination,
        policy: RetryPolicies,
        on_retry: RetryHook,
    ) -> None:
        """List ``stream``'s mirror repository once, if the state has records to check.

        The listing is bounded as the upstream one is (pages, tags). A listing that
        fails is no failure of the stream: its tags are then ``HEAD``ed one by one."""
        records = self._recorded(stream.name) if self._recorded is not None else {}
        if not records:
            return
        repository = destination.repository(stream.to)
        try:  # a repository gone from the mirror lists no tag: every tag is repaired
            listed = await _mirror_tags(destination, repository, policy, on_retry)
        except MirrordError as error:
            log.info("stream %s: %s; checking each tag instead", stream.name, error)
            return
        self._listings[stream.name] = frozenset(listed)
        self._records[stream.name] = records
        self._tagged[repository] = bool(listed)

    async def untagged(
        self,
        repositories: Iterable[str],
        destination: Destination,
        policy: RetryPolicies,
        on_retry: RetryHook,
    ) -> frozenset[str]:
        """Which of ``repositories`` hold no tag in the mirror (called before anything is
        copied: the copy engine does not ``HEAD`` blobs there, see
        :class:`~mirrord.copy.CopyEngine`). A repository planning listed is not listed
        again; one whose listing fails counts as tagged."""

        async def look(repository: str) -> None:
            try:
                listed = await _mirror_tags(destination, repository, policy, on_retry)
            except MirrordError as error:
                log.info("mirror %s: %s; its blobs are checked one by one", repository, error)
                return
            self._tagged[repository] = bool(listed)

        wanted = set(repositories)
        with ungrouped():
            async with anyio.create_task_group() as tg:
                for repository in wanted - self._tagged.keys():
                    tg.start_soon(look, repository)
        return frozenset(r for r in wanted if self._tagged.get(r) is False)

    def known(self, stream: StreamConfig, tag: str, found: Descriptor) -> Descriptor | None:
        """The mirror's descriptor of ``tag`` when the listing and the record agree it
        is unchanged against ``found`` (the source's HEAD); None: ``HEAD`` the mirror."""
        listed = self._listings.get(stream.name)
        if listed is None or tag not in listed:
            return None
        event = self._records[stream.name].get(tag)
        if event is None:
            return None
        # Only the digest of a mirror descriptor is used downstream (size not recorded).
        guess = Descriptor(found.media_type, event.image, found.size)
        imported = (
            Imported(event.image, event.source_digest, event.platform)
            if event.source_digest
            else None
        )
        action = decide(found, guess, stream.import_mode, stream.platform, imported)
        return guess if action is Action.UNCHANGED else None


async def _mirror_tags(
    destination: Destination, repository: str, policy: RetryPolicies, on_retry: RetryHook
) -> list[str]:
    """The mirror repository's tags, retried as its registry says; none for a repository
    the mirror does not have (yet)."""
    try:
        return list(await retrying(
            lambda: destination.list_tags(repository),
            f"list tags of mirror {repository}",
            policy,
            on_retry,
        ))
    except NotFoundError:
        return []
