"""The copy engine: executes tag plans, children first and the tag last.

Per image: the manifest is fetched by digest (and checked), an index's children
are ensured before the index, every blob is ensured before the manifest that
references it, and the tag is pushed last, so a tag never names anything the
mirror lacks. Blobs go mount → HEAD → stream, once per (repository, digest) per
run however many images share them, each step only where it can answer (see
:class:`CopyEngine`). Failures are retried as the failing
registry's policy says (:func:`~mirrord.registry.retrying`); an image that still
fails does not stop the others. An upload session given up on is cancelled.
Where workers in other processes copy into the same mirror, a blob about to be
streamed is claimed first through the ``shared`` hook (:mod:`._shared`): one worker
streams it, the others wait and mount it. Across runs, the ``places`` hook
(:mod:`._places`) names the repository a blob landed in before: it is mounted from there.

A manifest ``PUT`` that fails is checked with a ``HEAD``: when the mirror already
holds the intended digest (another run wrote it), the push counts as done.
Distribution answers ``DIGEST_INVALID`` / ``MANIFEST_BLOB_UNKNOWN`` to a manifest
``PUT`` while another client is still linking a blob it references: those are
retried too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

import anyio

from mirrord.copy._limits import check_manifest, index_level
from mirrord.copy._once import Once
from mirrord.copy._places import (
    BlobPlaces,
    forget,
    mount_recorded,
    record_landed,
    recorded_place,
)
from mirrord.copy._plan import TagPlan
from mirrord.copy._shared import SharedBlobs, shared_transfer
from mirrord.copy._types import CopiedImage, CopyStats, PushedManifest, TagGate
from mirrord.copy._verify import verified_chunks
from mirrord.core.limits import Limits
from mirrord.core.modes import ImportMode
from mirrord.core.oci import Descriptor, Manifest, Platform
from mirrord.errors import ManifestError, MirrordError, RegistryError, ungrouped
from mirrord.registry import (
    DEFAULT_RETRY,
    RetryPolicies,
    RetryPolicy,
    retrying,
)
from mirrord.transports import Destination, Source

T = TypeVar("T")
log = logging.getLogger("mirrord.copy")

#: What distribution answers a manifest PUT racing another client's blob link.
RACY_MANIFEST_CODES = frozenset({"DIGEST_INVALID", "MANIFEST_BLOB_UNKNOWN", "BLOB_UNKNOWN"})


class CopyEngine:
    """Copies images into ``destination``, sharing work across every stream of a run.

    A blob is ``HEAD``ed in the repository it goes into only where that can save a pull.
    Not when a mount can answer: a digest this run placed, or one ``places`` records in
    another repository, is mounted from there first (201 whether or not the target held
    it; a 202 opens the session the blob is then uploaded through). Not in a ``fresh``
    repository (no tag when the run began), unless ``places`` records the digest there:
    a tag moves only once everything under it is in, so what a fresh repository holds
    came from a run that did not finish, and those runs record each blob as it lands.
    The one pull this can waste is of a blob put there out of band, untagged and
    unrecorded (or by a run killed between the blob's last request and its record).
    """

    def __init__(
        self,
        destination: Destination,
        stats: CopyStats,
        *,
        retry: RetryPolicy | RetryPolicies = DEFAULT_RETRY,
        limits: Limits | None = None,
        gate: TagGate | None = None,
        shared: SharedBlobs | None = None,
        places: BlobPlaces | None = None,
        fresh: Collection[str] = (),
    ) -> None:
        """``shared``: the blob claims of a fleet of workers (None: this process alone);
        ``places``: where blobs landed in earlier runs (None: only this run's count);
        ``fresh``: mirror repositories that held no tag when the run began (used only
        with ``places``: see the class docstring)."""
        self.destination = destination
        self.gate = gate
        self.shared = shared
        self.places = places
        self.fresh = frozenset(fresh) if places is not None else frozenset()
        self.stats = stats
        self.retry = retry
        self.limits = limits or Limits()
        self._blobs = Once()
        self._manifests = Once()
        # digest -> a mirror repository known to hold it this run (a mount source)
        self._located: dict[str, str] = {}
        # digest -> set when its one in-flight stream ends (others then mount it)
        self._streaming: dict[str, anyio.Event] = {}
        # Manifests fetched this run: tags sharing a digest cost one GET (a "pull").
        self._fetched: dict[tuple[int, str, str], Manifest] = {}
        self._fetching = Once()

    async def blobs_of(self, source: Source, plan: TagPlan) -> dict[str, int]:
        """Digest -> size of every blob copying ``plan`` needs (before copying it: the
        manifests read are kept for the copy, so this costs no request more)."""
        manifest, _, _ = await self.root_manifest(source, plan)
        return await self._blobs_under(source, plan.source_repository, manifest, ())

    async def _blobs_under(
        self, source: Source, repo: str, manifest: Manifest, parents: tuple[str, ...]
    ) -> dict[str, int]:
        index_level(manifest, parents, self.limits, f"{source.registry}/{repo}@{manifest.digest}")
        found = {blob.digest: blob.size for blob in manifest.blobs}
        for child in manifest.manifests:
            if child.digest in parents:
                raise ManifestError(f"{source.registry}/{repo}@{manifest.digest}: index cycle")
            fetched = await self._get_manifest(source, repo, child.digest)
            found.update(
                await self._blobs_under(source, repo, fetched, (*parents, manifest.digest))
            )
        return found

    async def root_manifest(self, source: Source, plan: TagPlan) -> tuple[Manifest, str, str]:
        """The manifest the tag will point at, the source digest, the platform picked."""
        assert plan.source is not None
        manifest = await self._get_manifest(source, plan.source_repository, plan.source.digest)
        source_digest, platform = manifest.digest, ""
        if manifest.is_index and plan.import_mode is ImportMode.LEGACY:
            platform = plan.platform
            child = select_platform(manifest, Platform.parse(plan.platform))
            manifest = await self._get_manifest(source, plan.source_repository, child.digest)
            if manifest.is_index:
                raise ManifestError(f"{plan.tag}: nested index for {plan.platform}")
        return manifest, source_digest, platform

    def get_manifest(self, source: Source, repository: str, digest: str) -> Awaitable[Manifest]:
        """A manifest of the source by digest, checked against the limits, read once a run."""
        return self._get_manifest(source, repository, digest)

    async def copy_tag(self, source: Source, plan: TagPlan) -> CopiedImage:
        """Copy what ``plan``'s source tag names and point the mirror tag at it last."""
        manifest, source_digest, platform = await self.root_manifest(source, plan)
        await self._ensure_contents(
            source, plan.source_repository, plan.mirror_repository, manifest, ()
        )
        if self.gate is not None:
            await self.gate.before_tag(
                source,
                plan,
                manifest,
                lambda digest: self._get_manifest(source, plan.source_repository, digest),
            )
        where = f"{plan.mirror_repository}:{plan.tag}"
        await self.push_manifest(plan.mirror_repository, plan.tag, manifest, f"push tag {where}")
        return CopiedImage(
            manifest.digest, manifest.media_type, manifest.size, source_digest, platform
        )

    async def _retrying(
        self,
        operation: Callable[[], Awaitable[T]],
        what: str,
        transient_codes: frozenset[str] = frozenset(),
    ) -> T:
        return await retrying(
            operation, what, self.retry, self.stats.count_retry, transient_codes=transient_codes
        )

    async def push_manifest(
        self, repository: str, reference: str, manifest: Manifest, what: str
    ) -> str | None:
        """PUT ``manifest`` under ``reference``; a failed PUT is done when the mirror
        holds ``manifest`` there all the same (see the module docstring). Returns the
        mirror's ``OCI-Subject`` answer (None without one, or for such a race)."""

        async def push() -> str | None:
            try:
                return await self.destination.put_manifest(repository, reference, manifest)
            except RegistryError as error:
                if not await self._holds(repository, reference, manifest.digest):
                    raise
                log.info("%s: %s; the mirror holds %s there already", what, error, manifest.digest)
                return None

        subject = await self._retrying(push, what, RACY_MANIFEST_CODES)
        self.stats.manifests_pushed += 1
        return subject

    async def copy_manifest(
        self, source: Source, src_repo: str, dst_repo: str, digest: str
    ) -> PushedManifest:
        """The manifest ``digest`` of ``src_repo`` (read and checked as any), copied into
        ``dst_repo`` by digest, everything it references first, unless the mirror holds it
        already: an attached artifact (an OCI referrer) travelling with its image."""
        manifest = await self._get_manifest(source, src_repo, digest)
        if await self._retrying(
            lambda: self.destination.head_manifest(dst_repo, digest), f"HEAD {dst_repo}@{digest}"
        ):
            return PushedManifest(manifest, pushed=False)
        await self._ensure_contents(source, src_repo, dst_repo, manifest, ())
        subject = await self.push_manifest(dst_repo, digest, manifest, f"push {dst_repo}@{digest}")
        return PushedManifest(manifest, pushed=True, indexed_subject=subject)

    async def _holds(self, repository: str, reference: str, digest: str) -> bool:
        """True when the mirror's ``reference`` names ``digest`` (False if it cannot tell)."""
        try:
            found = await self.destination.head_manifest(repository, reference)
        except MirrordError:
            return False
        return found is not None and found.digest == digest

    async def _ensure_contents(
        self,
        source: Source,
        src_repo: str,
        dst_repo: str,
        manifest: Manifest,
        parents: tuple[str, ...],
    ) -> None:
        """Everything ``manifest`` references is in ``dst_repo`` when this returns.

        ``parents``: the indexes above it (their nesting is capped, a cycle refused).
        The first failure cancels the rest and is raised as itself, not as a group.
        """
        where = f"{source.registry}/{src_repo}@{manifest.digest}"
        index_level(manifest, parents, self.limits, where)
        if manifest.is_index:
            parents = (*parents, manifest.digest)
        with ungrouped():
            async with anyio.create_task_group() as tg:
                for child in manifest.manifests:
                    tg.start_soon(
                        self._ensure_manifest, source, src_repo, dst_repo, child, parents
                    )
                for blob in manifest.blobs:
                    tg.start_soon(self._ensure_blob, source, src_repo, dst_repo, blob)

    async def _ensure_manifest(
        self,
        source: Source,
        src_repo: str,
        dst_repo: str,
        desc: Descriptor,
        parents: tuple[str, ...],
    ) -> None:
        if desc.digest in parents:  # before the once-per-digest gate: it would wait on itself
            where = f"{source.registry}/{src_repo}@{parents[-1]}"
            raise ManifestError(f"{where}: the index lists itself (or an index above it)")

        async def job() -> None:
            if await self._retrying(
                lambda: self.destination.head_manifest(dst_repo, desc.digest),
                f"HEAD {dst_repo}@{desc.digest}",
            ):
                return
            child = await self._get_manifest(source, src_repo, desc.digest)
            await self._ensure_contents(source, src_repo, dst_repo, child, parents)
            await self.push_manifest(
                dst_repo, child.digest, child, f"push {dst_repo}@{child.digest}"
            )

        await self._manifests.run((dst_repo, desc.digest), job)

    async def _ensure_blob(
        self, source: Source, src_repo: str, dst_repo: str, desc: Descriptor
    ) -> None:
        await self._blobs.run(
            (dst_repo, desc.digest),
            lambda: self._retrying(
                lambda: self._transfer_blob(source, src_repo, dst_repo, desc),
                f"blob {desc.digest} into {dst_repo}",
            ),
        )

    async def _transfer_blob(
        self, source: Source, src_repo: str, dst_repo: str, desc: Descriptor
    ) -> None:
        digest = desc.digest
        # A digest this run put (or is putting) in another repository is mounted from
        # there without a HEAD: the mount answers 201 whether or not dst_repo held it.
        known = digest in self._located or digest in self._streaming
        # One transfer of a digest at a time (its HEAD included): a later one waits, then
        # mounts it.
        while (streaming := self._streaming.get(digest)) is not None:
            await streaming.wait()
        done = self._streaming[digest] = anyio.Event()
        try:
            await self._put_blob(source, src_repo, dst_repo, desc, known)
        finally:
            del self._streaming[digest]
            done.set()
        self._located.setdefault(digest, dst_repo)
        if self.places is not None:
            # Shielded: a run cut once the blob landed still records it, which a later
            # run relies on to HEAD it in a repository the cut left untagged.
            with anyio.CancelScope(shield=True):
                await record_landed(self.places, digest, dst_repo)

    async def _put_blob(
        self, source: Source, src_repo: str, dst_repo: str, desc: Descriptor, known: bool
    ) -> None:
        """Mount or stream ``desc`` into ``dst_repo``; ``HEAD`` it there first only where
        that can save a pull (see the class docstring)."""
        digest = desc.digest
        upload: str | None = ""  # a mount's answer: None mounted, else a session or ""
        mount_from = self._located.get(digest)
        recorded = None  # where an earlier run (or another worker) put it
        if mount_from is None and self.places is not None:
            recorded = await recorded_place(self.places, digest)
        if mount_from and mount_from != dst_repo:
            upload = await self.destination.mount_blob(dst_repo, digest, mount_from)
        elif self.places is not None and recorded and recorded != dst_repo:
            upload = await mount_recorded(self.places, self.destination, dst_repo, digest, recorded)
        if upload is None:
            self.stats.blobs_mounted += 1
            self.stats.bytes_skipped += desc.size
            return
        if not known and (recorded == dst_repo or dst_repo not in self.fresh):
            if await self.destination.blob_exists(dst_repo, digest):
                if upload:  # the session a stale record's mount opened
                    await self.destination.cancel_upload(dst_repo, upload)
                self.stats.blobs_present += 1
                self.stats.bytes_skipped += desc.size
                return
            if self.places is not None and recorded == dst_repo:
                await forget(self.places, digest, dst_repo)
        await self._stream_or_share(source, src_repo, dst_repo, desc, upload or None)

    async def _stream_or_share(
        self, source: Source, src_repo: str, dst_repo: str, desc: Descriptor, upload: str | None
    ) -> None:
        """Stream ``desc`` (through the fleet's claims when shared)."""
        if self.shared is None:
            await self._stream(source, src_repo, dst_repo, desc, upload)
            return
        outcome = await shared_transfer(
            self.shared,
            self.destination,
            dst_repo,
            desc,
            lambda session: self._stream(source, src_repo, dst_repo, desc, session),
            upload,
        )
        if outcome != "streamed":  # another worker streamed it
            self.stats.blobs_mounted += outcome == "mounted"
            self.stats.blobs_present += outcome == "present"
            self.stats.bytes_skipped += desc.size

    async def _stream(
        self, source: Source, src_repo: str, dst_repo: str, desc: Descriptor, upload: str | None
    ) -> None:
        """Stream the blob from the source (into ``upload``, a session, when given)."""
        self.stats.streaming[desc.digest] = (dst_repo, desc.size)
        try:
            async with source.get_blob(src_repo, desc.digest) as chunks:
                stream = verified_chunks(chunks, desc, self.stats.bytes_streamed)
                owned, upload = upload, None  # write_blob cancels it if the write fails
                await self.destination.write_blob(dst_repo, desc, stream, owned or None)
        finally:
            self.stats.streaming.pop(desc.digest, None)
            if upload:  # the source failed before the write began
                await self.destination.cancel_upload(dst_repo, upload)
        self.stats.blobs_copied += 1
        self.stats.bytes_copied += desc.size

    async def _get_manifest(self, source: Source, repository: str, digest: str) -> Manifest:
        key = (id(source), repository, digest)

        async def fetch() -> None:
            manifest = await self._retrying(
                lambda: source.get_manifest(repository, digest, digest),
                f"GET manifest {repository}@{digest}",
            )
            check_manifest(manifest, self.limits, f"{source.registry}/{repository}@{digest}")
            self._fetched[key] = manifest

        await self._fetching.run((f"{id(source)}/{repository}", digest), fetch)
        return self._fetched[key]


def select_platform(index: Manifest, wanted: Platform) -> Descriptor:
    """The child of ``index`` for ``wanted`` (Legacy import); ManifestError when absent."""
    for child in index.manifests:
        if child.platform is not None and wanted.matches(child.platform):
            return child
    offered = ", ".join(str(c.platform) for c in index.manifests if c.platform)
    raise ManifestError(f"index {index.digest} has no {wanted} image (it has: {offered})")
