"""The copy plan: what each selected tag needs, decided before anything is written.

Planning is pure: it takes what the source and mirror ``HEAD``s said (and, for
``Legacy`` imports of an index, what the mirror's image was imported from) and
decides per tag. ``--dry-run`` prints a plan and stops.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from mirrord.core.modes import ImportMode
from mirrord.core.oci import Descriptor, is_index
from mirrord.errors import MirrordError


class Action(enum.Enum):
    COPY = "copy"
    UNCHANGED = "unchanged"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Imported:
    """What the state says the mirror's current image of a tag was imported from."""

    image: str  # the digest the mirror tag points at
    source_digest: str  # the upstream digest it was taken from
    platform: str  # the platform a Legacy import picked out of that index ("" for none)


@dataclass(frozen=True, slots=True)
class TagPlan:
    """One tag of one stream: where it comes from, where it goes, and what to do."""

    stream: str
    tag: str
    source_repository: str
    mirror_repository: str
    action: Action
    source: Descriptor | None = None
    mirror_digest: str | None = None
    import_mode: ImportMode = ImportMode.PRESERVE_ORIGINAL
    platform: str = "linux/amd64"
    error: MirrordError | None = field(default=None, compare=False)
    bytes_to_copy: int | None = None
    # A dry run's referrers the copy would bring along (listed upstream, not in the mirror).
    referrers_to_copy: int | None = None
    # A signature tag travelling with its image: the digest of that image in the mirror.
    subject: str | None = None
    # Where the image lands: the mirror's reference of the tag (shown by a dry run).
    mirror_reference: str = ""

    @property
    def mirrored_digest(self) -> str | None:
        """The digest the mirror holds (or will hold) for this tag, when planning knows it:
        not for a Legacy copy of an index, whose platform image is picked while copying."""
        if self.action is Action.FAILED or self.source is None:
            return None
        if self.picked_platform:
            return self.mirror_digest if self.action is Action.UNCHANGED else None
        return self.source.digest

    @property
    def source_digest(self) -> str:
        return self.source.digest if self.source else ""

    @property
    def picked_platform(self) -> str:
        """The platform a Legacy import takes out of an index source; "" when the
        source manifest is copied whole."""
        legacy = self.import_mode is ImportMode.LEGACY
        return self.platform if legacy and self.source and is_index(self.source.media_type) else ""

    def with_heads(self, action: Action, source: Descriptor, mirror: Descriptor | None) -> TagPlan:
        return replace(
            self, action=action, source=source, mirror_digest=mirror.digest if mirror else None
        )

    def failed(self, error: MirrordError) -> TagPlan:
        return replace(self, action=Action.FAILED, error=error)


@dataclass(frozen=True, slots=True)
class StreamPlan:
    """Every tag plan of one stream, plus the tags the selection left out."""

    stream: str
    tags: tuple[TagPlan, ...] = ()
    left_out: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    error: MirrordError | None = field(default=None, compare=False)
    # Every valid source tag, when the stream listed them (None when it did not need to).
    all_tags: list[str] | None = field(default=None, compare=False)
    # Upstream tags off the tag grammar that the stream would have selected: skipped,
    # never used in a URL, a file or the state; each fails the run (InvalidName).
    invalid: tuple[str, ...] = ()


def decide(
    source: Descriptor,
    mirror: Descriptor | None,
    import_mode: ImportMode,
    platform: str = "",
    imported: Imported | None = None,
) -> Action:
    """Copy unless the mirror already holds what the source tag names.

    PreserveOriginal copies the source manifest as is, so equal digests mean
    unchanged (so does Legacy for a source that is not an index). Legacy stores one
    platform of an index under the tag: unchanged only when the state says the
    mirror's image is ``platform`` taken from this very index (a new index upstream,
    another ``platform`` setting, or a switch from PreserveOriginal copies again).
    """
    if mirror is None:
        return Action.COPY
    if import_mode is ImportMode.LEGACY:
        # What the state recorded decides, whatever media type the HEAD reported.
        if imported == Imported(mirror.digest, source.digest, platform):
            return Action.UNCHANGED
        if is_index(source.media_type):
            return Action.COPY
    return Action.UNCHANGED if mirror.digest == source.digest else Action.COPY
