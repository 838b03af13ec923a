"""What ``mirrord tag`` was asked, read and checked (pure): SOURCE, STREAM:TAG and how the
tag follows SOURCE (``--alias``, ``--scheduled``), with ``oc tag``'s rules."""

from __future__ import annotations

from dataclasses import dataclass

from mirrord.core.imagestream import TAG_ALIAS, TAG_ONCE, TAG_SCHEDULED
from mirrord.core.reference import is_repository, is_tag, parse
from mirrord.errors import InvalidReferenceError
from mirrord.sync._import_image import Refusal, _has_host


@dataclass(frozen=True)
class TagTarget:
    """What ``mirrord tag`` was asked, checked: ``kind`` is ``DockerImage`` (``source``
    a reference with host, tag or digest) or ``ImageStreamTag`` (``source`` STREAM:TAG)."""

    kind: str
    source: str
    stream: str
    tag: str
    policy: str = TAG_ONCE
    """How the tag follows ``source``: TAG_ONCE, TAG_ALIAS or TAG_SCHEDULED."""

    @property
    def tagged_from(self) -> str:
        """The ``Tagged`` condition's message."""
        return f"{self.kind} {self.source}"

    @classmethod
    def of(cls, stream: str, tag: str, tagged_from: str, policy: str) -> TagTarget:
        """The target a ``Tagged`` condition records (its message and reason)."""
        kind, _, source = tagged_from.partition(" ")
        return cls(kind, source, stream, tag, policy)



def _stream_tag(text: str, what: str) -> tuple[str, str] | Refusal:
    name, sep, tag = text.rpartition(":")
    if not sep or not name or "/" in tag:
        return Refusal(f"{what} {text!r}: expected STREAM:TAG", usage=True)
    if not is_repository(name) or not is_tag(tag):
        return Refusal(f"{what} {text!r}: not a valid stream name and tag", usage=True)
    return name, tag


def parse_tag_request(
    source: str, target: str, *, alias: bool = False, scheduled: bool = False
) -> TagTarget | Refusal:
    """SOURCE and STREAM:TAG read and checked, with ``oc tag``'s rules for ``--alias``
    and ``--scheduled`` (usage refusals for malformed or contradictory input)."""
    if alias and scheduled:
        return Refusal("--alias and --scheduled may not both be specified", usage=True)
    found = _parse(source, target)
    if isinstance(found, Refusal):
        return found
    if scheduled:
        if found.kind != "DockerImage" or "@" in found.source:
            return Refusal(
                "--scheduled re-imports an image by its tag (HOST/REPOSITORY:TAG); "
                "a stream tag is followed with --alias",
                usage=True,
            )
        return TagTarget(found.kind, found.source, found.stream, found.tag, TAG_SCHEDULED)
    if alias:
        if found.kind != "ImageStreamTag":
            return Refusal(
                "--alias follows another tag of the same stream (STREAM:TAG), not an image; "
                "use --scheduled to re-import an image",
                usage=True,
            )
        if found.source.rpartition(":")[0] != found.stream:
            return Refusal("cannot set an alias across different image streams", usage=True)
        return TagTarget(found.kind, found.source, found.stream, found.tag, TAG_ALIAS)
    return found


def _parse(source: str, target: str) -> TagTarget | Refusal:
    dest = _stream_tag(target, "the destination")
    if isinstance(dest, Refusal):
        return dest
    if _has_host(source):
        try:
            ref = parse(source)
        except InvalidReferenceError as error:
            return Refusal(f"the source: {error}", usage=True)
        if not (ref.tag or ref.digest):
            return Refusal(f"the source {source!r} names no tag or digest", usage=True)
        shown = f"{ref.name}@{ref.digest}" if ref.digest else f"{ref.name}:{ref.tag}"
        return TagTarget("DockerImage", shown, *dest)
    other = _stream_tag(source, "the source")
    if isinstance(other, Refusal):
        return Refusal(
            f"{other.message} (or an image reference with a registry host, "
            "e.g. quay.io/org/image:tag)",
            usage=True,
        )
    if other == dest:
        return Refusal(f"{target} cannot be tagged from itself", usage=True)
    return TagTarget("ImageStreamTag", source, *dest)
