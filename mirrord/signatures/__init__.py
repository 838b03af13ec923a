"""Image signatures: carry them to the mirror, and check them before a tag moves.

Verification policy (containers-policy.json(5), the file podman uses)::

    policy = load_policy("/etc/mirrord/policy.json")          # ConfigError if invalid
    async with Verifier(policy) as verifier:                  # imports the GPG keys
        scope = verifier.scope_for("quay.io/org/app:1.0")     # what signatures it needs
        verdict = await verifier.check(ImageToVerify(
            "quay.io/org/app:1.0", manifest_bytes,
            simple_signatures=[...],                          # lookaside blobs
            cosign_signatures=await cosign_signatures(sig_manifest, get_blob)))
        verdict.raise_if_rejected()                           # SignatureRejectedError

Simple-signing lookasides (``<base>/<repo>@sha256=<hex>/signature-N``)::

    async with LookasideClient() as client:
        blobs = await client.fetch(base_url, "org/app", digest)   # LookasideError
    await LookasideDir(lookaside_dir).add("prefix/org/app", digest, blobs)

Clients' configuration: :func:`registries_d_document`. OCI 1.1 referrers:
:func:`list_referrers` (API, else the ``sha256-<hex>`` tag), :func:`merge_referrers_index`.

What is verified: OpenPGP simple signing (``signedBy``, ``keyType: GPGKeys``) through gpgv,
cosign key-based signatures (``sigstoreSigned`` with ``keyPath``/``keyPaths``/``keyData``/
``keyDatas``; ECDSA, RSA, Ed25519) through ``cryptography``; the payload's manifest digest
and identity (every ``signedIdentity`` rule). Not verified (refused when the policy asks
for them): Fulcio certificates, Rekor, PKI, X.509 keyTypes, ``signedBaseLayer``.
"""

from __future__ import annotations

from ._attachments import attachment_tag, cosign_signatures
from ._cosign import SIGNATURE_ANNOTATION, SIGNATURE_MEDIA_TYPE, CosignSignature
from ._evaluate import ImageToVerify, Verdict, Verifier
from ._identity import (
    ExactReference,
    ExactRepository,
    IdentityRule,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    RemapIdentity,
)
from ._layout import BUILTIN_LOOKASIDES, builtin_lookaside, check_lookaside_url, signature_url
from ._lookaside import LookasideClient
from ._policy import (
    COSIGN,
    SIMPLE_SIGNING,
    InsecureAcceptAnything,
    Policy,
    Reject,
    Requirement,
    Scope,
    SignedBy,
    SigstoreSigned,
)
from ._policy_parse import load_policy, parse_policy
from ._referrers import (
    Referrers,
    filter_referrers,
    list_referrers,
    merge_referrers_index,
    parse_referrers_index,
    referrer_descriptor,
    referrers_tag,
    subject_of,
)
from ._registries_d import RegistriesDEntry, registries_d_document
from ._store import LookasideDir

__all__ = [
    "BUILTIN_LOOKASIDES",
    "COSIGN",
    "SIGNATURE_ANNOTATION",
    "SIGNATURE_MEDIA_TYPE",
    "SIMPLE_SIGNING",
    "CosignSignature",
    "ExactReference",
    "ExactRepository",
    "IdentityRule",
    "ImageToVerify",
    "InsecureAcceptAnything",
    "LookasideClient",
    "LookasideDir",
    "MatchExact",
    "MatchRepoDigestOrExact",
    "MatchRepository",
    "Policy",
    "Referrers",
    "RegistriesDEntry",
    "Reject",
    "RemapIdentity",
    "Requirement",
    "Scope",
    "SignedBy",
    "SigstoreSigned",
    "Verdict",
    "Verifier",
    "attachment_tag",
    "builtin_lookaside",
    "check_lookaside_url",
    "cosign_signatures",
    "filter_referrers",
    "list_referrers",
    "load_policy",
    "merge_referrers_index",
    "parse_policy",
    "parse_referrers_index",
    "referrer_descriptor",
    "referrers_tag",
    "registries_d_document",
    "signature_url",
    "subject_of",
]
