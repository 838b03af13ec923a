"""Manifests as raw bytes plus a parsed view (image-spec ``manifest.md``, ``image-index.md``).

A :class:`Manifest` owns the exact bytes a registry served and their digest.
The parsed fields only tell which blobs and child manifests it references;
nothing here ever serialises a manifest again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mirrord.core.oci._digest import compute_digest, parse_digest
from mirrord.core.oci._mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    IMAGE_MANIFESTS,
    INDEXES,
    OCI_INDEX,
    OCI_MANIFEST,
    SCHEMA1,
)
from mirrord.core.oci._platform import Platform
from mirrord.errors import DigestMismatchError, ManifestError, UnsupportedManifestError

_NON_DISTRIBUTABLE_MARKERS = ("foreign", "nondistributable")
MAX_SIZE = 1 << 50  # a PiB: larger than any blob; keeps sizes sane for arithmetic


@dataclass(frozen=True, slots=True)
class Descriptor:
    """What a manifest says about content it references (image-spec ``descriptor.md``)."""

    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    artifact_type: str = ""
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def distributable(self) -> bool:
        """False for foreign/non-distributable layers, which registries never hold."""
        return not any(m in self.media_type for m in _NON_DISTRIBUTABLE_MARKERS)

    @classmethod
    def from_json(cls, data: Any, where: str) -> Descriptor:
        if not isinstance(data, dict):
            raise ManifestError(f"{where}: descriptor is not an object")
        if "digest" not in data:
            raise ManifestError(f"{where}: descriptor has no digest")
        digest = parse_digest(str(data["digest"]), where)
        raw_size = data.get("size")
        # JSON integers only: not true, 1.5, "12" nor a number past what a blob can be.
        if type(raw_size) is not int or not 0 <= raw_size <= MAX_SIZE:
            raise ManifestError(f"{where}: descriptor size {str(raw_size)[:40]!r} is invalid")
        size = raw_size
        annotations = data.get("annotations") or {}
        return cls(
            media_type=str(data.get("mediaType", "")),
            digest=digest,
            size=size,
            platform=Platform.from_json(data.get("platform")),
            artifact_type=str(data.get("artifactType", "")),
            annotations=dict(annotations) if isinstance(annotations, dict) else {},
        )


@dataclass(frozen=True, slots=True)
class Manifest:
    """A manifest: its exact bytes, their digest, its media type, and what it references.

    For an image manifest (OCI or Docker schema2, artifacts included) ``config``
    and ``layers`` are set; for an index or manifest list, ``manifests``.
    """

    raw: bytes = field(repr=False)
    digest: str
    media_type: str
    config: Descriptor | None = None
    layers: tuple[Descriptor, ...] = ()
    manifests: tuple[Descriptor, ...] = ()
    subject: Descriptor | None = None
    artifact_type: str = ""

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def blobs(self) -> tuple[Descriptor, ...]:
        """Config first, then layers: the blobs an image manifest needs in the mirror."""
        found = (self.config, *self.layers) if self.config else self.layers
        return tuple(d for d in found if d.distributable)

    def descriptor(self) -> Descriptor:
        return Descriptor(self.media_type, self.digest, self.size, artifact_type=self.artifact_type)


def parse_manifest(raw: bytes, content_type: str = "", expected_digest: str = "") -> Manifest:
    """Parse ``raw`` (as served with ``content_type``) without ever re-encoding it.

    Raises :class:`UnsupportedManifestError` for Docker schema1 and unknown types,
    :class:`DigestMismatchError` when ``expected_digest`` is given and differs,
    and :class:`ManifestError` when the JSON is malformed.
    """
    if expected_digest:
        parse_digest(expected_digest, "expected manifest digest")
    algorithm = expected_digest.partition(":")[0] if expected_digest else "sha256"
    digest = compute_digest(raw, algorithm)
    if expected_digest and digest != expected_digest:
        raise DigestMismatchError(f"manifest digest {digest} does not match {expected_digest}")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"manifest {digest} is not valid JSON: {exc}") from exc
    except RecursionError:
        raise ManifestError(f"manifest {digest} is nested too deeply to be a manifest") from None
    if not isinstance(data, dict):
        raise ManifestError(f"manifest {digest} is not a JSON object")
    media_type = _media_type(data, content_type.split(";")[0].strip(), digest)
    where = f"manifest {digest}"
    subject = data.get("subject")
    common: dict[str, Any] = {
        "raw": raw,
        "digest": digest,
        "media_type": media_type,
        "subject": Descriptor.from_json(subject, f"{where} subject") if subject else None,
        "artifact_type": str(data.get("artifactType", "")),
    }
    if media_type in INDEXES:
        children = _descriptors(data, "manifests", where)
        return Manifest(manifests=children, **common)
    config = Descriptor.from_json(data.get("config"), f"{where} config")
    layers = _descriptors(data, "layers", where)
    if not common["artifact_type"]:
        common["artifact_type"] = config.media_type
    return Manifest(config=config, layers=layers, **common)


def _media_type(data: dict[str, Any], content_type: str, digest: str) -> str:
    declared = str(data.get("mediaType", ""))
    if data.get("schemaVersion") == 1 or declared in SCHEMA1 or content_type in SCHEMA1:
        raise UnsupportedManifestError(
            f"manifest {digest} is Docker schema1, which mirrord does not copy "
            "(deprecated and unsigned by modern registries; re-push the image as schema2 or OCI)"
        )
    for candidate in (declared, content_type):
        if candidate in IMAGE_MANIFESTS or candidate in INDEXES:
            return candidate
    if not declared and content_type in ("", "application/json", "application/octet-stream"):
        # image-spec: mediaType is optional in OCI manifests; infer from the shape.
        if "manifests" in data:
            return OCI_INDEX
        if "config" in data:
            return OCI_MANIFEST
    raise UnsupportedManifestError(
        f"manifest {digest} has unsupported media type {declared or content_type!r}"
    )


def _descriptors(data: dict[str, Any], key: str, where: str) -> tuple[Descriptor, ...]:
    items = data.get(key) or []
    if not isinstance(items, list):
        raise ManifestError(f"{where}: {key} is not a list")
    return tuple(Descriptor.from_json(item, f"{where} {key}[{i}]") for i, item in enumerate(items))


__all__ = ["DOCKER_MANIFEST", "DOCKER_MANIFEST_LIST", "Descriptor", "Manifest", "parse_manifest"]
