"""Attached artifacts: what travels with an image without being one of its stream's tags.

One path for both kinds an image can carry:

- **cosign tags** (``sha256-<hex>.sig|.att|.sbom``), found in the source's tag listing and
  planned as tags of their own once their image is planned (:func:`plan_cosign_tags`);
  the run copies them after the images, so one whose image failed is not copied;
- **OCI 1.1 referrers** (``referrers:`` of a stream), listed at the source for every image
  manifest the tag names (each child of an index too) through ``GET /v2/<name>/referrers/
  <digest>`` when the source answers it, else its ``sha256-<hex>`` referrers tag schema
  index, and copied by :class:`ReferrerGate` right before the image's tag moves: each
  referrer like any image (what it references first, the manifest byte for byte by digest),
  then made findable on the mirror. A mirror with the referrers API says so by answering the
  push with ``OCI-Subject`` (distribution spec 1.1); otherwise (distribution 2.8, an OCI
  layout) the mirror's own ``sha256-<hex>`` index is read, the new referrers merged in (never
  dropping an entry) and pushed when it changed. A tag left unchanged is not looked at
  again, except by a verifying run (``--verify``, the daemon's ``verify_every``), which
  copies new referrers of the image the mirror holds (not of an index's children).

Everything upstream sends is checked: listings are bounded (``MAX_REFERRERS``) and every
descriptor validated (:mod:`mirrord.signatures`); a listed referrer must be an OCI manifest
or index whose ``subject`` is the image, else it is skipped with a warning. A referrer that
cannot be copied fails the tag, which stays where it was and is tried again next run.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import anyio

from mirrord.config import Config, StreamConfig
from mirrord.copy import CopyEngine, CopyStats, GetManifest, PushedManifest, TagGate, TagPlan
from mirrord.core.oci import OCI_INDEX, OCI_MANIFEST, Manifest, is_digest, parse_manifest
from mirrord.core.reference import escaped
from mirrord.core.selection import cosign_tags
from mirrord.errors import MirrordError
from mirrord.registry import retrying
from mirrord.transports import Destination, Source, read_manifest

T = TypeVar("T")
log = logging.getLogger("mirrord.sync")

#: warn(plan, reason, message): a warning of the run, named in its summary.
Warn = Callable[[TagPlan, str, str], None]
PlanTags = Callable[[list[str]], Awaitable[list[TagPlan]]]
_REFERRER_TYPES = (OCI_MANIFEST, OCI_INDEX)


async def plan_cosign_tags(
    plans: Sequence[TagPlan], all_tags: Sequence[str], plan_tags: PlanTags
) -> list[TagPlan]:
    """The cosign tags of the images the mirror holds for ``plans``, each once, planned by
    ``plan_tags`` and marked with the image they belong to (``subject``).

    They name the image by the digest the mirror holds: a Legacy image's are those of its
    platform image, found once it is in the mirror (the next run)."""
    planned = {p.tag for p in plans}
    subjects = dict.fromkeys(d for p in plans if (d := p.mirrored_digest) is not None)
    signatures = {
        sig: digest
        for digest in subjects
        for sig in cosign_tags(digest, all_tags)
        if sig not in planned
    }
    found = await plan_tags(list(signatures))
    return [replace(p, subject=signatures[p.tag]) for p in found]


class Gates:
    """Several :class:`~mirrord.copy.TagGate`s, passed in order (the first refusal wins)."""

    def __init__(self, *gates: TagGate) -> None:
        self.gates = gates

    async def before_tag(
        self, source: Source, plan: TagPlan, manifest: Manifest, get_manifest: GetManifest
    ) -> None:
        for gate in self.gates:
            await gate.before_tag(source, plan, manifest, get_manifest)


class ReferrerGate:
    """Copies the referrers of an image before its tag moves (see the module docstring).

    ``engine`` is set once the run's engine exists (it copies the referrers, as it copies
    images). ``warn`` records what was skipped."""

    def __init__(self, config: Config, stats: CopyStats, destination: Destination,
                 warn: Warn) -> None:
        self.config = config
        self.stats = stats
        self.destination = destination
        self.warn = warn
        self.engine: CopyEngine | None = None
        self._without_api: set[str] = set()  # source registries that lack the referrers API
        self._mirror_api: bool | None = None  # learnt from the first push (OCI-Subject)
        self._locks: dict[tuple[str, str], anyio.Lock] = {}
        self._done: set[tuple[str, str]] = set()

    @property
    def needed(self) -> bool:
        return any(s.referrers is not None for s in self.config.streams)

    async def before_tag(
        self, source: Source, plan: TagPlan, manifest: Manifest, get_manifest: GetManifest
    ) -> None:
        """Copy the referrers of ``manifest`` (and of each child of an index) into the
        mirror and make them findable there; a cosign tag (``plan.subject``) has none."""
        stream = self.config.stream(plan.stream)
        if plan.subject is not None or stream.referrers is None:
            return
        images = [manifest.digest, *(child.digest for child in manifest.manifests)]
        for digest in images:
            await self.attach(source, stream, plan, digest)

    async def would_copy(self, source: Source, stream: StreamConfig, plan: TagPlan) -> int:
        """A dry run: the referrers copying ``plan`` would bring along (those listed upstream
        for its image and each child that the mirror lacks; their subjects are not read)."""
        if stream.referrers is None or plan.subject is not None:
            return 0
        assert self.engine is not None
        manifest, _, _ = await self.engine.root_manifest(source, plan)
        count = 0
        for digest in (manifest.digest, *(child.digest for child in manifest.manifests)):
            if not digest.startswith("sha256:"):
                continue
            for desc in await self._list(source, stream, plan, digest):
                count += not await self._in_mirror(plan.mirror_repository, str(desc["digest"]))
        return count

    async def _in_mirror(self, repo: str, digest: str) -> bool:
        found = await self._retrying(lambda: self.destination.head_manifest(repo, digest),
                                     f"HEAD mirror {repo}@{digest}")
        return found is not None

    async def refresh(self, source: Source, stream: StreamConfig, plan: TagPlan) -> None:
        """A verifying run, for a tag it leaves unchanged: copy the referrers of the image
        the mirror holds that it lacks (the image's own, not those of an index's children).
        A failure is a ``ReferrersNotCopied`` warning: the tag is where it should be."""
        digest = plan.mirrored_digest
        if stream.referrers is None or plan.subject is not None or digest is None:
            return
        try:
            await self.attach(source, stream, plan, digest)
        except MirrordError as error:
            message = f"referrers of {digest} not copied: {error}"
            log.warning("%s:%s: %s", plan.stream, plan.tag, message)
            self.warn(plan, "ReferrersNotCopied", message)

    async def attach(self, source: Source, stream: StreamConfig, plan: TagPlan,
                     subject: str) -> None:
        """The referrers of ``subject``, once per mirror repository and run."""
        if not subject.startswith("sha256:"):  # the tag schema names sha256 digests only
            self.warn(plan, "ReferrerSkipped", f"referrers of {subject} are not looked up: "
                      "only sha256 images have a referrers tag")
            return
        key = (plan.mirror_repository, subject)
        async with self._locks.setdefault(key, anyio.Lock()):  # one read-modify-write
            if key in self._done:
                return
            listed = await self._list(source, stream, plan, subject)
            copied = [await self._copy(source, plan, subject, desc) for desc in listed]
            found = [c for c in copied if c is not None]
            if found:
                await self._make_findable(plan.mirror_repository, subject, found)
            self._done.add(key)

    async def _list(self, source: Source, stream: StreamConfig, plan: TagPlan,
                    subject: str) -> list[dict[str, Any]]:
        from mirrord.signatures import list_referrers  # the signature stack: copies only

        kinds = stream.referrers or ()
        only = kinds[0] if len(kinds) == 1 else None  # the API filters on one type
        repo = plan.source_repository
        listed = await self._retrying(
            lambda: list_referrers(source.get_path, repo, subject, artifact_type=only,
                                   api=source.registry not in self._without_api),
            f"referrers of {source.registry}/{repo}@{subject}",
        )
        if listed.via == "tag":
            self._without_api.add(source.registry)
        wanted = []
        for desc in listed.descriptors:
            if kinds and desc.get("artifactType") not in kinds:
                continue
            if not is_digest(str(desc["digest"])):  # only sha256/sha512 hex is ever asked for
                self._skip(plan, subject, escaped(str(desc["digest"]), 80), "invalid digest")
                continue
            if desc["mediaType"] not in _REFERRER_TYPES:
                self._skip(plan, subject, desc["digest"],
                           f"media type {str(desc['mediaType'])[:100]!r} is no OCI manifest")
                continue
            wanted.append(desc)
        return wanted

    async def _copy(self, source: Source, plan: TagPlan, subject: str,
                    desc: dict[str, Any]) -> PushedManifest | None:
        assert self.engine is not None, "ReferrerGate.engine is set before the copies"
        digest = str(desc["digest"])
        repo = plan.source_repository
        referrer = await self.engine.get_manifest(source, repo, digest)
        if referrer.subject is None or referrer.subject.digest != subject:
            self._skip(plan, subject, digest, "its subject is not this image")
            return None
        pushed = await self.engine.copy_manifest(source, repo, plan.mirror_repository, digest)
        if pushed.pushed:
            self.stats.referrers_copied += 1
            log.info("copied referrer %s of %s into %s", digest, subject,
                     plan.mirror_repository, extra={"digest": digest})
        return pushed

    def _skip(self, plan: TagPlan, subject: str, digest: str, why: str) -> None:
        message = f"referrer {digest} of {subject} listed upstream is not copied: {why}"
        log.warning("%s:%s: %s", plan.stream, plan.tag, message)
        self.warn(plan, "ReferrerSkipped", message)

    async def _make_findable(self, repo: str, subject: str,
                             found: list[PushedManifest]) -> None:
        """Through the mirror's referrers API when it has one, else its fallback tag."""
        pushed = [p for p in found if p.pushed]
        if pushed:
            self._mirror_api = all(p.indexed_subject == subject for p in pushed)
        elif self._mirror_api is None:
            self._mirror_api = await self._retrying(
                lambda: self.destination.referrers_api(repo, subject),
                f"referrers API of the mirror {self.destination.description}",
            )
        if self._mirror_api:
            return
        await self._merge_fallback(repo, subject, found)

    async def _merge_fallback(self, repo: str, subject: str,
                              found: list[PushedManifest]) -> None:
        from mirrord.signatures import merge_referrers_index, referrer_descriptor, referrers_tag

        assert self.engine is not None
        tag = referrers_tag(subject)
        where = f"{repo}:{tag}"
        existing = await self._retrying(
            lambda: self.destination.head_manifest(repo, tag), f"HEAD mirror {where}")
        current = None
        if existing is not None:
            current = await self._retrying(
                lambda: read_manifest(self.destination, repo, existing.digest),
                f"read mirror {where}")
        descriptors = [referrer_descriptor(p.manifest.raw, p.manifest.digest) for p in found]
        raw, changed = merge_referrers_index(current.raw if current else None, descriptors)
        if changed:
            index = parse_manifest(raw, OCI_INDEX)
            await self.engine.push_manifest(repo, tag, index, f"update referrers tag {where}")
            log.info("referrers tag %s lists %d referrers", where, len(index.manifests))

    async def _retrying(self, operation: Callable[[], Awaitable[T]], what: str) -> T:
        assert self.engine is not None
        return await retrying(operation, what, self.engine.retry, self.stats.count_retry)
