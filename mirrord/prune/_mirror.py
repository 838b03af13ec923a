"""Which mirror repository a recorded stream's history belongs to."""

from __future__ import annotations

import logging

from mirrord.core.imagestream import ImageStream
from mirrord.state import OrphanedImage
from mirrord.transports import Destination

log = logging.getLogger("mirrord.prune")


def mirror_repository(destination: Destination, stream: ImageStream) -> str | None:
    """The stream's repository in ``destination``; None when its history was recorded
    for another mirror (then the pruner touches only its metadata)."""
    repository = destination.repository(stream.name)
    here = destination.reference(repository, "").rstrip(":")
    if stream.docker_image_repository != here:
        log.warning(
            "stream %s was mirrored to %s, not %s: only its metadata is pruned",
            stream.name,
            stream.docker_image_repository,
            here,
        )
        return None
    return repository


def orphan_repository(destination: Destination, orphan: OrphanedImage) -> str | None:
    """The repository in ``destination`` a deleted stream's image is in; None when the
    stream mirrored it to another mirror (then the pruner leaves it)."""
    repository = destination.repository(orphan.stream)
    here = destination.reference(repository, "").rstrip(":")
    return repository if orphan.docker_image_repository == here else None
