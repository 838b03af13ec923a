"""Evaluate a policy for one image manifest: containers/image ``IsRunningImageAllowed``.

Every requirement of the scope must accept the image; a ``signedBy`` / ``sigstoreSigned``
accepts when at least one signature verifies cryptographically with one of its keys *and*
its payload names this manifest's digest *and* an identity its ``signedIdentity`` accepts.
The first requirement that refuses decides the :class:`Verdict` (named in its message).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import anyio
import anyio.to_thread

from mirrord.core.reference import Reference, parse
from mirrord.errors import DigestMismatchError, SignatureRejectedError

from ._cosign import (
    SIGNATURE_ANNOTATION,
    SIGNATURE_MEDIA_TYPE,
    CosignSignature,
    load_public_key,
    verify_signature,
)
from ._gpg import GPGKeyring
from ._identity import IdentityRule
from ._payload import COSIGN_TYPE, SIMPLE_SIGNING_TYPE, PayloadError, digest_matches, parse_payload
from ._policy import (
    InsecureAcceptAnything,
    Policy,
    Reject,
    Requirement,
    Scope,
    SignedBy,
    SigstoreSigned,
    identity_of,
)

MAX_SIGNATURES = 128  # containers/image maxLookasideSignatures


@dataclass(frozen=True)
class ImageToVerify:
    """One image manifest as pulled from the source.

    ``reference`` is what was asked for: ``registry/repo:tag`` (or ``@digest``), never both.
    ``manifest`` the exact manifest bytes (for an index child: the child's bytes, with the
    parent's tag as reference). ``digest``, when given, must be the manifest's digest.
    ``simple_signatures``: lookaside ``signature-N`` blobs; ``cosign_signatures``: layers of
    the ``sha256-<hex>.sig`` attachment (see :func:`cosign_signatures`).
    """

    reference: Reference | str
    manifest: bytes = field(repr=False)
    digest: str | None = None
    simple_signatures: Sequence[bytes] = field(default=(), repr=False)
    cosign_signatures: Sequence[CosignSignature] = field(default=(), repr=False)


@dataclass(frozen=True)
class Verdict:
    """The outcome. When refused, ``requirement`` describes the requirement that failed and
    ``reason`` why; ``message`` says it all in one line."""

    accepted: bool
    reference: str
    policy: str
    scope: str
    requirement: str = ""
    reason: str = ""

    @property
    def message(self) -> str:
        if self.accepted:
            return f"{self.reference}: accepted by policy {self.policy} ({self.scope})"
        return (f"{self.reference}: refused by policy {self.policy}, {self.scope}: "
                f"requirement {self.requirement}: {self.reason}")

    def raise_if_rejected(self) -> None:
        """Raise :class:`SignatureRejectedError` (reason ``SignatureRejected``) if refused."""
        if not self.accepted:
            raise SignatureRejectedError(self.message, scope=self.scope,
                                         requirement=self.requirement)


class Verifier:
    """A policy ready to evaluate: an async context manager owning the GnuPG keyrings.

    ``async with Verifier(policy) as verifier: verdict = await verifier.check(image)``.
    Entering imports every ``signedBy`` key (a :class:`ConfigError` if one yields no key,
    or gpg/gpgv are missing); leaving removes the temporary GnuPG homes. ``check`` may be
    called concurrently (gpgv runs are limited to ``concurrency`` at a time).
    """

    def __init__(self, policy: Policy, *, concurrency: int = 4) -> None:
        self.policy = policy
        self._concurrency = concurrency
        self._limiter: anyio.CapacityLimiter | None = None
        self._keyrings: dict[tuple[tuple[bytes, ...], tuple[str, ...]], GPGKeyring] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    async def __aenter__(self) -> Verifier:
        self._limiter = anyio.CapacityLimiter(self._concurrency)
        self._tmp = tempfile.TemporaryDirectory(prefix="mirrord-gpg-")
        try:
            for req in _all_requirements(self.policy):
                if isinstance(req, SignedBy) and (req.keys, req.sources) not in self._keyrings:
                    home = Path(self._tmp.name) / f"k{len(self._keyrings)}"
                    ring = await GPGKeyring.create(home, req.keys, req.sources)
                    self._keyrings[(req.keys, req.sources)] = ring
        except BaseException:
            self._tmp.cleanup()
            raise
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._tmp is not None:
            await anyio.to_thread.run_sync(self._tmp.cleanup)
            self._tmp = None
        self._keyrings.clear()

    def scope_for(self, reference: Reference | str) -> Scope:
        """The scope that applies to ``reference`` (see :meth:`Policy.scope_for`)."""
        return self.policy.scope_for(reference)

    async def check(self, image: ImageToVerify) -> Verdict:
        """Evaluate the policy for ``image``. Raises :class:`DigestMismatchError` when
        ``image.digest`` is given and is not the manifest's digest; never raises for a
        refusal (see :meth:`Verdict.raise_if_rejected`)."""
        ref = parse(image.reference) if isinstance(image.reference, str) else image.reference
        identity = identity_of(ref)
        if image.digest is not None and not digest_matches(image.manifest, image.digest):
            raise DigestMismatchError(f"{identity}: the manifest does not match {image.digest}")
        scope = self.policy.scope_for(ref)
        for req in scope.requirements:
            reason = await self._refusal(req, ref, image)
            if reason is not None:
                return Verdict(False, identity, self.policy.source, scope.label,
                               req.describe(), reason)
        return Verdict(True, identity, self.policy.source, scope.label)

    async def require(self, image: ImageToVerify) -> None:
        """:meth:`check`, raising :class:`SignatureRejectedError` when refused."""
        (await self.check(image)).raise_if_rejected()

    async def _refusal(self, req: Requirement, ref: Reference, image: ImageToVerify) -> str | None:
        """None when ``req`` accepts the image, else the reason it does not."""
        if isinstance(req, InsecureAcceptAnything):
            return None
        if isinstance(req, Reject):
            return f"Running image {identity_of(ref)} is rejected by policy."
        if isinstance(req, SignedBy):
            ring = self._keyrings.get((req.keys, req.sources))
            if ring is None or self._limiter is None:
                raise RuntimeError("Verifier used outside 'async with'")
            return await self._signed_by(ring, self._limiter, req.signed_identity, ref, image)
        assert isinstance(req, SigstoreSigned)
        return _sigstore_signed(req, ref, image)

    @staticmethod
    async def _signed_by(ring: GPGKeyring, limiter: anyio.CapacityLimiter, rule: IdentityRule,
                         ref: Reference, image: ImageToVerify) -> str | None:
        sigs = image.simple_signatures
        if not sigs:
            return "A signature was required, but no signature exists"
        if len(sigs) > MAX_SIGNATURES:
            return f"{len(sigs)} signatures, more than the {MAX_SIGNATURES} mirrord examines"
        reasons: list[str] = []
        for blob in sigs:
            try:
                async with limiter:
                    content, _ = await ring.verify(blob)
                payload = parse_payload(content, SIMPLE_SIGNING_TYPE)
            except ValueError as exc:  # PayloadError included
                reasons.append(str(exc))
                continue
            reason = _payload_refusal(payload.manifest_digest, payload.docker_reference,
                                      rule, ref, image.manifest)
            if reason is None:
                return None
            reasons.append(reason)
        return _summary(reasons)


def _sigstore_signed(req: SigstoreSigned, ref: Reference, image: ImageToVerify) -> str | None:
    keys = [load_public_key(pem) for pem in req.keys]  # validated at load: cannot fail
    sigs = [s for s in image.cosign_signatures if s.media_type == SIGNATURE_MEDIA_TYPE]
    if not sigs:
        other = len(image.cosign_signatures)
        return ("A signature was required, but no signature exists"
                + (f" ({other} sigstore non-signature attachments)" if other else ""))
    if len(sigs) > MAX_SIGNATURES:
        return f"{len(sigs)} signatures, more than the {MAX_SIGNATURES} mirrord examines"
    reasons: list[str] = []
    for sig in sigs:
        if not sig.signature:
            reasons.append(f"missing {SIGNATURE_ANNOTATION} annotation")
            continue
        try:
            verify_signature(keys, sig.payload, sig.signature)
            payload = parse_payload(sig.payload, COSIGN_TYPE)
        except (ValueError, PayloadError) as exc:
            reasons.append(str(exc))
            continue
        reason = _payload_refusal(payload.manifest_digest, payload.docker_reference,
                                  req.signed_identity, ref, image.manifest)
        if reason is None:
            return None
        reasons.append(reason)
    return _summary(reasons)


def _payload_refusal(digest: str, signed_ref: str, rule: IdentityRule, ref: Reference,
                     manifest: bytes) -> str | None:
    # Order as containers/image: the digest first, then the identity.
    if not digest_matches(manifest, digest):
        return f"Signature for digest {digest} does not match"
    if not rule.matches(ref, signed_ref):
        return f"Signature for identity {signed_ref!r} is not accepted ({rule.describe()})"
    return None


def _summary(reasons: list[str]) -> str:
    if len(reasons) == 1:
        return reasons[0]
    shown = "; ".join(dict.fromkeys(reasons[:5]))  # a hostile source may send 128 of them
    more = f"; and {len(reasons) - 5} more" if len(reasons) > 5 else ""
    return f"None of the {len(reasons)} signatures were accepted, reasons: {shown}{more}"


def _all_requirements(policy: Policy) -> list[Requirement]:
    out = list(policy.default)
    for reqs in policy.docker.values():
        out.extend(reqs)
    return out
