"""Cosign attachments: the ``sha256-<hex>.sig`` tag and the signatures its manifest carries.

The attachment manifest (OCI image manifest, or Docker schema 2 as older cosign wrote) has
one layer per signature: the layer blob is the payload, the
``dev.cosignproject.cosign/signature`` annotation its base64 signature. Everything here is
untrusted input: the layer count and sizes are bounded, and every payload is checked against
its descriptor's digest and size before it is used.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from mirrord.errors import DigestMismatchError, ManifestError

from ._cosign import SIGNATURE_ANNOTATION, CosignSignature

MAX_LAYERS = 128
MAX_PAYLOAD = 4 * 1024 * 1024
_SHA256 = re.compile(r"sha256:([a-f0-9]{64})")
_MANIFEST_TYPES = ("application/vnd.oci.image.manifest.v1+json",
                   "application/vnd.docker.distribution.manifest.v2+json")

#: get_blob(digest, size) -> the blob's bytes (the caller's registry client; may raise).
GetBlob = Callable[[str, int], Awaitable[bytes]]


def attachment_tag(digest: str, suffix: str = "sig") -> str:
    """``sha256-<hex>.<suffix>``: where cosign keeps a manifest's signatures (``sig``),
    attestations (``att``) or SBOMs (``sbom``)."""
    m = _SHA256.fullmatch(digest)
    if m is None:
        raise ManifestError(f"cosign attachments need a sha256 digest, not {digest!r}")
    return f"sha256-{m.group(1)}.{suffix}"


async def cosign_signatures(manifest: bytes, get_blob: GetBlob) -> list[CosignSignature]:
    """The signatures of a ``.sig`` attachment manifest, payloads fetched with ``get_blob``.

    Raises :class:`ManifestError` for a malformed manifest or layer descriptor (or more than
    128 layers, or a payload over 4 MiB) and :class:`DigestMismatchError` when a blob is not
    what its descriptor says. Layers of other media types are returned too (the evaluation
    counts them as "non-signature attachments") but their blobs are not fetched.
    """
    layers = _layers(manifest)
    out: list[CosignSignature] = []
    for index, layer in enumerate(layers):
        media_type, digest, size, signature = _descriptor(layer, index)
        if media_type != "application/vnd.dev.cosign.simplesigning.v1+json":
            out.append(CosignSignature(b"", signature, media_type))
            continue
        payload = await get_blob(digest, size)
        actual = "sha256:" + hashlib.sha256(payload).hexdigest()
        if len(payload) != size or not hmac.compare_digest(actual, digest):
            raise DigestMismatchError(f"cosign signature layer {index}: got {len(payload)} "
                                      f"bytes {actual}, the manifest says {size} bytes {digest}")
        out.append(CosignSignature(payload, signature, media_type))
    return out


def _layers(manifest: bytes) -> list[Any]:
    try:
        doc = json.loads(manifest)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ManifestError("cosign signature manifest is not JSON") from None
    if not isinstance(doc, dict) or doc.get("schemaVersion") != 2:
        raise ManifestError("cosign signature manifest is not a schema 2 manifest")
    media_type = doc.get("mediaType", _MANIFEST_TYPES[0])
    if media_type not in _MANIFEST_TYPES:
        raise ManifestError(f"cosign signature manifest has media type {media_type!r}")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise ManifestError("cosign signature manifest has no layers list")
    if len(layers) > MAX_LAYERS:
        raise ManifestError(f"cosign signature manifest has {len(layers)} layers, "
                            f"more than {MAX_LAYERS}")
    return layers


def _descriptor(layer: Any, index: int) -> tuple[str, str, int, str]:
    where = f"cosign signature layer {index}"
    if not isinstance(layer, dict):
        raise ManifestError(f"{where} is not an object")
    media_type, digest, size = layer.get("mediaType"), layer.get("digest"), layer.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestError(f"{where} has no mediaType")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise ManifestError(f"{where} has digest {digest!r}, not a sha256 digest")
    if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_PAYLOAD:
        raise ManifestError(f"{where} has size {size!r} (at most {MAX_PAYLOAD} bytes)")
    annotations = layer.get("annotations") or {}
    if not isinstance(annotations, dict):
        raise ManifestError(f"{where} has annotations that are not an object")
    signature = annotations.get(SIGNATURE_ANNOTATION, "")
    if not isinstance(signature, str):
        raise ManifestError(f"{where}: {SIGNATURE_ANNOTATION} is not a string")
    return media_type, digest, size, signature
