"""The copy plan: what each selected tag needs, decided before anything is written.

Planning is pure: it takes what the source and mirror ``HEAD``s said (and, for
``Legacy`` imports, which source digest the mirror's image was taken from) and
decides per tag. ``--dry-run`` prints a plan and stops.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from mirrord._errors import MirrordError
from mirrord.oci import Descriptor


class Action(enum.Enum):
    COPY = "copy"
    UNCHANGED = "unchanged"
    FAILED = "failed"


class ImportMode(enum.Enum):
    PRESERVE_ORIGINAL = "PreserveOriginal"
    LEGACY = "Legacy"


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

    @property
    def source_digest(self) -> str:
        return self.source.digest if self.source else ""

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
    # Every source tag, when the stream listed them (None when it did not need to).
    all_tags: list[str] | None = field(default=None, compare=False)


def decide(
    source: Descriptor,
    mirror: Descriptor | None,
    import_mode: ImportMode,
    imported_from: str | None = None,
) -> Action:
    """Copy unless the mirror already holds what the source tag names.

    PreserveOriginal copies the source manifest as is, so equal digests mean
    unchanged. Legacy may store one platform of an index under the tag; then
    the mirror's digest differs from the source's and ``imported_from`` (the
    source digest the mirror's current image was taken from) decides.
    """
    if mirror is None:
        return Action.COPY
    if mirror.digest == source.digest:
        return Action.UNCHANGED
    if import_mode is ImportMode.LEGACY and imported_from == source.digest:
        return Action.UNCHANGED
    return Action.COPY
