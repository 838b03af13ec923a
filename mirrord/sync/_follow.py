"""The tags ``mirrord tag --alias`` / ``--scheduled`` made, followed on each run of their
stream (:func:`follow_tags`, after the stream's own tags are recorded).

- An alias (``Tagged`` reason ``Alias``) moves to where its source tag in the same stream
  points now: within one mirror repository only the tag is written.
- A scheduled tag (reason ``Scheduled``) re-imports its image: one ``HEAD`` of the
  upstream tag; a copy only when the digest differs from what the tag holds.

A tag that moved gains an event and is notified as a sync's tag is. A failure is the
tag's ``ImportSuccess=False`` condition (and a log line), not the run's: the stream's
own tags were mirrored.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from mirrord.config import Config
from mirrord.core.imagestream import (
    IMPORT_SUCCESS,
    TAG_ALIAS,
    ImageStream,
    TagStatus,
    tag_origin,
    tag_policy,
)
from mirrord.errors import MirrordError
from mirrord.notify import Notifier
from mirrord.state import Store
from mirrord.sync._import_image import Refusal
from mirrord.sync._import_image import _followed as followed
from mirrord.sync._tag import Pointed, notify_pointed, point_tag, record_pointed
from mirrord.sync._tag_request import TagTarget
from mirrord.transports import ClientPool, Destination

log = logging.getLogger("mirrord.sync")

async def follow_tags(
    config: Config,
    store: Store,
    pool: ClientPool,
    destination: Destination,
    names: Iterable[str],
    notifier: Notifier | None = None,
) -> int:
    """Follow every alias and scheduled tag of the streams ``names``; how many moved."""
    moved = 0
    for name in names:
        stream = await store.get_stream(name)
        for status in stream.tags if stream is not None else ():
            if stream is not None and followed(status):
                moved += await _follow(config, store, pool, destination, stream, status, notifier)
    return moved


async def _follow(
    config: Config,
    store: Store,
    pool: ClientPool,
    destination: Destination,
    stream: ImageStream,
    status: TagStatus,
    notifier: Notifier | None,
) -> int:
    policy = tag_policy(status) or ""
    target = TagTarget.of(stream.name, status.tag, tag_origin(status) or "", policy)
    current = status.current
    holds = frozenset({current.image, current.source_digest} - {""}) if current else frozenset()
    where = f"{stream.name}:{status.tag}"
    try:
        pointed = await point_tag(config, store, pool, destination, stream, target, unless=holds)
    except MirrordError as error:
        await store.record_tag_failure(stream.name, status.tag, error.reason, str(error))
        log.warning("%s: following %s failed: %s", where, target.source, error)
        return 0
    if isinstance(pointed, Refusal):
        await store.record_tag_failure(stream.name, status.tag, "NotFound", pointed.message)
        log.warning("%s: following %s failed: %s", where, target.source, pointed.message)
        return 0
    if not isinstance(pointed, Pointed):  # the tag holds the source's image already
        if current is not None and status.condition(IMPORT_SUCCESS) is not None:
            await store.record_tag_import(  # reached again: an earlier failure is over
                stream.name,
                status.tag,
                current.image,
                current.docker_image_reference,
                source_digest=current.source_digest,
                platform=current.platform,
                tagged_from=target.tagged_from,
                tag_policy=policy,
            )
        return 0
    recorded = await record_pointed(store, stream, target, pointed)
    await notify_pointed(notifier, destination, stream, status.tag, pointed, recorded)
    verb = "tracks" if policy == TAG_ALIAS else "re-imported"
    log.info("%s %s %s: now %s", where, verb, target.source, pointed.digest)
    return int(recorded.changed)
