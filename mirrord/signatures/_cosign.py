"""Cosign key-based signatures: public keys and the signature over the payload bytes.

Cosign (and containers/image ``sigstore``) signs the payload bytes themselves with SHA-256:
ECDSA (any NIST curve) as an ASN.1 DER signature, RSA as PKCS#1 v1.5, Ed25519 as pure
Ed25519. The signature travels base64-encoded in the ``dev.cosignproject.cosign/signature``
annotation of the payload's layer in the ``sha256-<hex>.sig`` attachment manifest.

Verification uses ``cryptography`` (OpenSSL), imported by the functions that parse keys and
check signatures: it costs ~30 ms to import, and most runs have no cosign policy (a run
that copies images imports this module for its gate all the same). Only the signature is
checked here; the payload's contents are :mod:`._payload`'s business.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    PublicKey: TypeAlias = (
        ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey
    )

SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"


@dataclass(frozen=True)
class CosignSignature:
    """One layer of a cosign ``.sig`` manifest: ``payload`` is the layer blob (already checked
    against its descriptor digest), ``signature`` the base64 annotation value, ``media_type``
    the layer's media type (only ``SIGNATURE_MEDIA_TYPE`` layers are signatures)."""

    payload: bytes = field(repr=False)
    signature: str = field(repr=False)
    media_type: str = SIGNATURE_MEDIA_TYPE


def load_public_key(pem: bytes) -> PublicKey:
    """Parse a PEM public key (``-----BEGIN PUBLIC KEY-----``, SubjectPublicKeyInfo);
    raises ``ValueError`` for anything else or a key type cosign does not sign with."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a PEM public key ({exc})") from None
    if isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        return key
    raise ValueError(f"unsupported public key type {type(key).__name__}")


def verify_signature(keys: Sequence[PublicKey], payload: bytes, signature_b64: str) -> None:
    """Succeed when any of ``keys`` signed ``payload``; else raise ``ValueError`` saying why."""
    from cryptography.exceptions import InvalidSignature

    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the signature annotation is not base64") from None
    for key in keys:
        try:
            _verify_one(key, signature, payload)
            return
        except InvalidSignature:
            continue
    raise ValueError("cryptographic signature verification failed with every key")


def _verify_one(key: PublicKey, signature: bytes, payload: bytes) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPublicKey):
        key.verify(signature, payload, padding.PKCS1v15(), hashes.SHA256())
    else:
        key.verify(signature, payload)
