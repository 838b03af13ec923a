"""What the copy engine reports and is given: its counters, what a tag now names, the
gate a tag passes before it moves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from mirrord.copy._plan import TagPlan
from mirrord.core.oci import Manifest
from mirrord.errors import MirrordError
from mirrord.registry import Condition, condition
from mirrord.transports import Source


@dataclass
class CopyStats:
    """Counters of one run (an accumulator, shared by every task of the run)."""

    images_copied: int = 0
    images_unchanged: int = 0
    images_failed: int = 0
    blobs_copied: int = 0
    blobs_mounted: int = 0
    blobs_present: int = 0
    manifests_pushed: int = 0
    bytes_copied: int = 0
    retries: int = 0
    rate_limit_waits: float = 0.0
    signatures_copied: int = 0  # lookaside signature-N files written to the mirror's
    signatures_verified: int = 0  # manifests the verification policy accepted
    signatures_rejected: int = 0  # tags the verification policy refused (not moved)
    referrers_copied: int = 0  # OCI referrer manifests pushed to the mirror
    # Bytes streamed so far, updated chunk by chunk (for live progress).
    bytes_streamed: list[int] = field(default_factory=lambda: [0])
    # Bytes of blobs the mirror already had or mounted (for live progress).
    bytes_skipped: int = 0
    # The blobs being streamed now: digest -> (mirror repository, size) (live progress).
    streaming: dict[str, tuple[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int | float]:
        live = ("bytes_streamed", "bytes_skipped", "streaming")
        return {k: v for k, v in vars(self).items() if k not in live}

    def count_retry(self, error: MirrordError, delay: float) -> None:
        """The ``on_wait`` hook of :func:`retrying`: one retry, and a 429's (503's) wait."""
        self.retries += 1
        if condition(error) is Condition.SLOW_DOWN:
            self.rate_limit_waits += delay


@dataclass(frozen=True, slots=True)
class CopiedImage:
    """What a tag now points at in the mirror."""

    digest: str
    media_type: str
    size: int
    source_digest: str
    platform: str = ""  # the platform a Legacy import took out of the source index


#: get_manifest(digest) -> a manifest of the image's source repository (cached per run).
GetManifest = Callable[[str], Awaitable[Manifest]]


class TagGate(Protocol):
    """Called once the image's contents are in the mirror, right before its tag moves.

    ``manifest`` is what the tag will name (for an index, ``get_manifest`` reads its
    children). Raising a :class:`MirrordError` fails the tag and leaves it where it was
    (e.g. :class:`~mirrord.errors.SignatureRejectedError`).
    """

    async def before_tag(
        self, source: Source, plan: TagPlan, manifest: Manifest, get_manifest: GetManifest
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class PushedManifest:
    """A manifest :meth:`~mirrord.copy.CopyEngine.copy_manifest` ensured in the mirror:
    ``pushed`` False when the mirror held it already; ``indexed_subject`` the mirror's
    ``OCI-Subject`` answer to the push (its referrers API indexed it), else None."""

    manifest: Manifest
    pushed: bool
    indexed_subject: str | None = None
