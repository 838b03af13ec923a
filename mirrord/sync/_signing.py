"""The signatures of a sync: lookaside signatures carried to the mirror, the policy checked.

:class:`SignatureGate` is the copy engine's :class:`~mirrord.copy.TagGate`. Right before a
tag moves, for the manifest it will name and (for an index) each child:

1. the simple signatures are read from the source registry's lookaside (the
   ``registries.<host>.lookaside`` option, else the built-in one for Red Hat's registries),
   starting after those the mirror's lookaside already holds (a 404 ends the list; other
   failures are temporary and retried). A lookaside still failing after the retries fails
   the tag only when the policy's requirements for it read simple signatures (``signedBy``);
   otherwise the tag moves without them, a ``SignaturesNotCopied`` warning naming the image;
2. when a verification policy is configured, the manifest must satisfy it for the source
   reference ``registry/repository:tag`` (simple signatures from 1, cosign signatures from
   the source's ``sha256-<hex>.sig`` tag when the scope asks for ``sigstoreSigned``); a
   refusal raises :class:`SignatureRejectedError` and the tag does not move;
3. the new signatures are written under ``lookaside_dir`` at
   ``<mirror repository>@sha256=<hex>/signature-N``, only after the check passed.
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from types import TracebackType

from mirrord.config import Config
from mirrord.copy import CopyStats, GetManifest, TagPlan
from mirrord.core.oci import Manifest
from mirrord.errors import LookasideError, NotFoundError
from mirrord.registry import retrying
from mirrord.signatures import (
    COSIGN,
    SIMPLE_SIGNING,
    CosignSignature,
    ImageToVerify,
    LookasideClient,
    LookasideDir,
    Verifier,
    attachment_tag,
    builtin_lookaside,
    cosign_signatures,
    load_policy,
    parse_policy,
)
from mirrord.sync._attached import Warn
from mirrord.transports import Source

log = logging.getLogger("mirrord.sync")


class SignatureGate:
    """``async with SignatureGate(config, stats) as gate:`` then ``CopyEngine(gate=gate)``.

    Entering opens the lookaside client and, when ``config`` has a ``policy``, loads and
    checks it and imports its keys (a :class:`ConfigError` naming the policy otherwise).
    """

    def __init__(self, config: Config, stats: CopyStats, warn: Warn | None = None) -> None:
        self.config = config
        self.stats = stats
        self.warn = warn
        self.store = LookasideDir(config.signature_dir)
        self.verifier: Verifier | None = None
        self._client = LookasideClient()
        self._stack = AsyncExitStack()

    @property
    def needed(self) -> bool:
        """Whether a run needs the gate at all (a policy, or a lookaside to read)."""
        return self.config.policy is not None or any(
            r.lookaside for r in self.config.registries.values()
        ) or any(builtin_lookaside(s.source_registry) for s in self.config.streams)

    async def __aenter__(self) -> SignatureGate:
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(self._client)
            if self.config.policy is not None:
                text, where = self.config.policy_text, str(self.config.policy)
                policy = parse_policy(text, source=where) if text else load_policy(where)
                self.verifier = await stack.enter_async_context(Verifier(policy))
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    def lookaside(self, registry: str) -> str | None:
        """The source registry's lookaside base URL, if it has one."""
        return self.config.registry_config(registry).lookaside or builtin_lookaside(registry)

    async def before_tag(
        self, source: Source, plan: TagPlan, manifest: Manifest, get_manifest: GetManifest
    ) -> None:
        """Carry and check the signatures of ``manifest`` (and its children); see the module.

        A cosign attachment (a plan with a ``subject``) travels with its image, which was
        checked already: it is neither verified itself nor looked up in the lookaside."""
        if plan.subject is not None:
            return
        images = [manifest]
        if manifest.is_index:
            images += [await get_manifest(child.digest) for child in manifest.manifests]
        reference = f"{source.registry}/{plan.source_repository}:{plan.tag}"
        pending: list[tuple[Manifest, list[bytes]]] = []
        for image in images:
            held = await self.store.read(plan.mirror_repository, image.digest)
            new = await self._fetch_or_warn(source, plan, reference, image.digest, len(held))
            if self.verifier is not None:
                await self._verify(source, plan, reference, image, held + new)
            pending.append((image, new))
        for image, new in pending:
            if new:
                written = await self.store.add(plan.mirror_repository, image.digest, new)
                self.stats.signatures_copied += written

    async def _fetch_or_warn(self, source: Source, plan: TagPlan, reference: str, digest: str,
                             held: int) -> list[bytes]:
        """The new lookaside signatures; none (and a warning) when the lookaside fails and
        no requirement of the policy for ``reference`` reads them."""
        try:
            return await self._fetch(source, plan, digest, held)
        except LookasideError as error:
            if self.verifier is not None and (
                    SIMPLE_SIGNING in self.verifier.scope_for(reference).signature_kinds):
                raise
            message = f"signatures of {reference}@{digest} not copied: {error}"
            log.warning("%s", message, extra={"reason": "SignaturesNotCopied"})
            if self.warn is not None:
                self.warn(plan, "SignaturesNotCopied", message)
            return []

    async def _fetch(self, source: Source, plan: TagPlan, digest: str, held: int) -> list[bytes]:
        base = self.lookaside(source.registry)
        if base is None:
            return []
        return await retrying(
            lambda: self._client.fetch(base, plan.source_repository, digest, start=held + 1),
            f"signatures of {source.registry}/{plan.source_repository}@{digest}",
            on_wait=self.stats.count_retry,
        )

    async def _verify(self, source: Source, plan: TagPlan, reference: str, image: Manifest,
                      simple: list[bytes]) -> None:
        assert self.verifier is not None
        scope = self.verifier.scope_for(reference)
        cosign: list[CosignSignature] = []
        if COSIGN in scope.signature_kinds:
            cosign = await self._cosign(source, plan, image.digest)
        verdict = await self.verifier.check(ImageToVerify(
            reference, image.raw, image.digest, simple_signatures=simple,
            cosign_signatures=cosign))
        if not verdict.accepted:
            self.stats.signatures_rejected += 1
            log.error("%s@%s: %s", reference, image.digest, verdict.message,
                      extra={"reason": "SignatureRejected"})
        else:
            self.stats.signatures_verified += 1
        verdict.raise_if_rejected()

    async def _cosign(self, source: Source, plan: TagPlan, digest: str) -> list[CosignSignature]:
        """The cosign signatures the source holds for ``digest`` (none: an empty list)."""
        repo = plan.source_repository
        try:
            sig = await retrying(
                lambda: source.get_manifest(repo, attachment_tag(digest)),
                f"cosign signatures of {source.registry}/{repo}@{digest}",
                on_wait=self.stats.count_retry,
            )
        except NotFoundError:
            return []

        async def get_blob(blob: str, size: int) -> bytes:
            body = bytearray()
            async with source.get_blob(repo, blob) as chunks:
                async for chunk in chunks:
                    body += chunk
                    if len(body) > size:
                        break
            return bytes(body)

        return await cosign_signatures(sig.raw, get_blob)
