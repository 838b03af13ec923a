"""Image streams: the records and the `oc import-image` rules over them.

Pure: frozen dataclasses and functions, no I/O. The state store applies these
rules inside one transaction; sync and import-image call the store.

Rules (OpenShift's image stream semantics):

- A tag's history is a list of :class:`TagEvent`, newest first; ``items[0]`` is
  the tag's current image. An import adds an event only when the digest or the
  recorded reference differs from ``items[0]``; the same digest updates nothing.
  An event also records the upstream digest the import was taken from
  (``source_digest``): in ``Legacy`` mode a multi-arch index is mirrored as one
  platform's manifest, so the next run compares the source with that, not
  ``image``. It never decides whether an event is added.
- A failed import sets one ``ImportSuccess=False`` condition with a reason and a
  message. Repeating the same failure keeps the condition (and its
  ``lastTransitionTime``); a different reason or message replaces it; the next
  successful import clears it.
- A tag that disappeared upstream is never deleted (``oc`` never deletes),
  unless the stream asks for ``delete_removed_tags``: then it is marked removed
  and leaves the OpenShift view, its history kept for the pruner.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import NamedTuple

from mirrord.core.modes import ImportMode, ReferencePolicy
from mirrord.errors import ConfigError

IMPORT_SUCCESS = "ImportSuccess"
# Set by `mirrord tag` (message: "DockerImage REF" or "ImageStreamTag STREAM:TAG", what
# the tag was pointed at): the tag follows
# that, not the stream's source; cleared by an import from the stream's source. It is
# mirrord's record of the tag's ``spec.tags[].from``, not an OpenShift status condition.
TAGGED = "Tagged"
# The Tagged condition's reason: how the tag follows what it was pointed at (``oc tag``).
TAG_ONCE = "Tagged"  # pointed once; the source moving later does not move it
TAG_ALIAS = "Alias"  # --alias: follows another tag of the same stream on every run
TAG_SCHEDULED = "Scheduled"  # --scheduled: the image is re-imported on the stream's runs
TAG_POLICIES = (TAG_ONCE, TAG_ALIAS, TAG_SCHEDULED)
REPOSITORY_CHECK = "openshift.io/image.dockerRepositoryCheck"  # annotation: last full sync
IMPORT_FAILURE = "mirrord.io/import-failure"  # annotation: the stream as a whole failed
CREATED_BY = ("config", "import-image")


def utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is a programming error."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: mirrord records UTC times")
    return moment.astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, to the second (the Kubernetes ``Time`` shape)."""
    return utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def normalize_import_mode(value: str) -> ImportMode:
    """``legacy`` → ``Legacy``, ``preserveoriginal`` → ``PreserveOriginal``."""
    try:
        return ImportMode.parse(value)
    except ValueError as error:
        raise ConfigError(str(error), key="import_mode") from None


def normalize_reference_policy(value: str) -> ReferencePolicy:
    """``source`` → ``Source``, ``local`` → ``Local``."""
    try:
        return ReferencePolicy.parse(value)
    except ValueError as error:
        raise ConfigError(str(error), key="reference_policy") from None


@dataclass(frozen=True)
class TagEvent:
    """One entry of a tag's history: the tag pointed at ``image`` from ``created``.

    ``source_digest`` is the upstream digest the import was taken from: equal to
    ``image`` when the whole manifest was copied, the index's digest when
    ``Legacy`` mode copied one platform of it, ``""`` when not known (events
    recorded before mirrord kept it). ``platform`` is the platform Legacy picked
    (``""`` when the whole source manifest was copied). OpenShift has neither field.
    """

    created: datetime
    docker_image_reference: str
    image: str
    generation: int
    source_digest: str = ""
    platform: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "created", utc(self.created))


@dataclass(frozen=True)
class Condition:
    """A tag condition; mirrord records only ``ImportSuccess=False``."""

    type: str
    status: str
    reason: str
    message: str
    generation: int
    last_transition_time: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "last_transition_time", utc(self.last_transition_time))


@dataclass(frozen=True)
class TagStatus:
    """A tag's history (newest first), its conditions, and whether it was removed."""

    tag: str
    items: tuple[TagEvent, ...] = ()
    conditions: tuple[Condition, ...] = ()
    removed_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.removed_at is not None:
            object.__setattr__(self, "removed_at", utc(self.removed_at))

    @property
    def removed(self) -> bool:
        return self.removed_at is not None

    @property
    def current(self) -> TagEvent | None:
        """``items[0]``: the image the tag points at now (None before the first import)."""
        return self.items[0] if self.items else None

    def condition(self, type_: str = IMPORT_SUCCESS) -> Condition | None:
        return next((c for c in self.conditions if c.type == type_), None)


@dataclass(frozen=True)
class StreamSpec:
    """What a stream should be: from the configuration or from ``import-image``."""

    name: str
    source: str
    docker_image_repository: str
    scheduled: bool = True
    import_mode: ImportMode = ImportMode.PRESERVE_ORIGINAL
    reference_policy: ReferencePolicy = ReferencePolicy.SOURCE
    created_by: str = "config"
    import_all: bool = False  # an import-image --all stream: every tag of the repository

    def __post_init__(self) -> None:
        object.__setattr__(self, "import_mode", normalize_import_mode(self.import_mode))
        object.__setattr__(
            self, "reference_policy", normalize_reference_policy(self.reference_policy)
        )
        if self.created_by not in CREATED_BY:
            raise ValueError(f"created_by must be one of {CREATED_BY}, not {self.created_by!r}")

    def same_spec(self, other: StreamSpec) -> bool:
        """Equal in everything that bumps the generation (``created_by`` does not)."""
        return replace(self, created_by=other.created_by) == other


@dataclass(frozen=True)
class ImageStream:
    """A stream as recorded: the spec, its generation, and every tag's status."""

    name: str
    docker_image_repository: str
    source: str
    generation: int
    tags: tuple[TagStatus, ...]
    scheduled: bool
    import_mode: ImportMode
    reference_policy: ReferencePolicy
    created: datetime
    created_by: str = "config"
    import_all: bool = False
    last_synced: datetime | None = None  # the last run that brought every selected tag
    # ImportSuccess=False for the stream as a whole (its tags could not even be listed);
    # kept until a run lists them again. OpenShift reports this only on the command line.
    failure: Condition | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "import_mode", normalize_import_mode(self.import_mode))
        object.__setattr__(
            self, "reference_policy", normalize_reference_policy(self.reference_policy)
        )
        object.__setattr__(self, "created", utc(self.created))
        if self.last_synced is not None:
            object.__setattr__(self, "last_synced", utc(self.last_synced))

    @property
    def spec(self) -> StreamSpec:
        return StreamSpec(
            name=self.name,
            source=self.source,
            docker_image_repository=self.docker_image_repository,
            scheduled=self.scheduled,
            import_mode=self.import_mode,
            reference_policy=self.reference_policy,
            created_by=self.created_by,
            import_all=self.import_all,
        )

    def tag(self, name: str) -> TagStatus | None:
        return next((t for t in self.tags if t.tag == name), None)


class ImportResult(NamedTuple):
    """What recording a successful import did."""

    status: TagStatus
    changed: bool
    """True when ``items[0]`` changed: a new event was added (notify subscribers)."""
    previous_digest: str | None
    """The digest of ``items[0]`` before the import (None when the tag had no history)."""


def docker_image_reference(
    reference_policy: str, source: str, docker_image_repository: str, digest: str
) -> str:
    """The reference a tag event records: upstream for ``Source``, the mirror for ``Local``."""
    policy = normalize_reference_policy(reference_policy)
    repository = source if policy is ReferencePolicy.SOURCE else docker_image_repository
    return f"{repository}@{digest}"


def record_import(
    status: TagStatus | None,
    digest: str,
    reference: str,
    generation: int,
    now: datetime,
    *,
    tag: str = "",
    source_digest: str = "",
    platform: str = "",
    tagged_from: str = "",
    tag_policy: str = TAG_ONCE,
) -> ImportResult:
    """Apply a successful import of ``digest`` to a tag (``tag`` names it when ``status`` is None).

    A new event, recording ``source_digest`` and ``platform`` (see :class:`TagEvent`),
    is prepended only when the digest or the reference differs from ``items[0]``; a
    different source alone adds no event; it updates ``items[0]``'s source_digest and
    platform.
    Success always clears the ``ImportSuccess`` condition and a removal mark.
    ``tagged_from``: the import is a ``mirrord tag`` of that reference (recorded as the
    ``Tagged`` condition, its reason ``tag_policy``, one of :data:`TAG_POLICIES`);
    without it the tag follows the stream's source again.
    """
    if status is None:
        if not tag:
            raise ValueError("record_import needs the tag name when there is no status yet")
        status = TagStatus(tag=tag)
    current = status.current
    previous = current.image if current else None
    changed = current is None or (current.image, current.docker_image_reference) != (
        digest,
        reference,
    )
    items = status.items
    if current is not None and not changed:
        # Same image: no new event, but items[0] follows the stream's generation (as
        # OpenShift's AddTagEventToImageStream does) and remembers a moved source (a
        # Legacy index that gained a platform) so the next run can skip the copy.
        updated = replace(
            current,
            generation=max(generation, current.generation),
            source_digest=source_digest or current.source_digest,
            platform=platform if source_digest else current.platform,
        )
        if updated != current:
            items = (updated, *items[1:])
    if changed:
        event = TagEvent(
            created=now,
            docker_image_reference=reference,
            image=digest,
            generation=generation,
            source_digest=source_digest,
            platform=platform,
        )
        items = (event, *items)
    conditions = _after_import(status, tagged_from, tag_policy, generation, now)
    new = replace(status, items=items, conditions=conditions, removed_at=None)
    return ImportResult(new, changed, previous)


def _after_import(
    status: TagStatus, tagged_from: str, policy: str, generation: int, now: datetime
) -> tuple[Condition, ...]:
    """The conditions after a successful import: no ``ImportSuccess``; ``Tagged`` only
    for a ``mirrord tag`` (kept since its first time for the same target and policy)."""
    if policy not in TAG_POLICIES:
        raise ValueError(f"unknown tag policy {policy!r}")
    conditions = tuple(c for c in status.conditions if c.type not in (IMPORT_SUCCESS, TAGGED))
    if not tagged_from:
        return conditions
    old = status.condition(TAGGED)
    same = old is not None and (old.message, old.reason) == (tagged_from, policy)
    since = old.last_transition_time if old is not None and same else now
    return (Condition(TAGGED, "True", policy, tagged_from, generation, since), *conditions)


def record_failure(
    status: TagStatus | None,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
    *,
    tag: str = "",
) -> TagStatus:
    """Set ``ImportSuccess=False`` on a tag; the history is untouched.

    The same reason and message keep the existing condition's
    ``lastTransitionTime`` (only its generation follows); anything else replaces it.
    """
    if status is None:
        if not tag:
            raise ValueError("record_failure needs the tag name when there is no status yet")
        status = TagStatus(tag=tag)
    old = status.condition(IMPORT_SUCCESS)
    since = now
    if (
        old is not None
        and old.status == "False"
        and (old.reason, old.message)
        == (
            reason,
            message,
        )
    ):
        since = old.last_transition_time
    condition = Condition(
        type=IMPORT_SUCCESS,
        status="False",
        reason=reason,
        message=message,
        generation=generation,
        last_transition_time=since,
    )
    others = tuple(c for c in status.conditions if c.type != IMPORT_SUCCESS)
    return replace(status, conditions=(condition, *others))


def record_removed(status: TagStatus, now: datetime, *, delete_removed_tags: bool) -> TagStatus:
    """A tag deleted upstream: unchanged unless ``delete_removed_tags`` (oc never deletes).

    With ``delete_removed_tags`` the tag is marked removed (first removal time
    kept); its history stays for the pruner and it leaves the OpenShift view.
    """
    if not delete_removed_tags or status.removed:
        return status
    return replace(status, removed_at=now)


def tag_policy(status: TagStatus) -> str | None:
    """How a tag ``mirrord tag`` pointed follows its source (:data:`TAG_POLICIES`); None
    for a tag the stream imports from its own source."""
    condition = status.condition(TAGGED)
    return condition.reason if condition is not None else None


def tag_origin(status: TagStatus) -> str | None:
    """Where ``mirrord tag`` pointed the tag (its ``Tagged`` condition), None for a tag
    the stream imports from its own source."""
    condition = status.condition(TAGGED)
    return condition.message if condition is not None else None
