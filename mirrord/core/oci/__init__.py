"""Pure OCI/Docker data: media types, digests, descriptors, manifests, platforms.

Nothing here performs I/O. A :class:`Manifest` is its raw bytes plus their
digest; the parsed view exists only to read references out of it. Manifests
are never re-serialised: what is pushed is exactly what was pulled.
"""

from __future__ import annotations

from mirrord.core.oci._digest import (
    DIGEST_HELP,
    DIGEST_RE,
    Digester,
    compute_digest,
    is_digest,
    parse_digest,
)
from mirrord.core.oci._manifest import Descriptor, Manifest, parse_manifest
from mirrord.core.oci._mediatypes import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    MANIFEST_ACCEPT,
    OCI_INDEX,
    OCI_MANIFEST,
    is_index,
)
from mirrord.core.oci._platform import Platform

__all__ = [
    "DIGEST_HELP",
    "DIGEST_RE",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "MANIFEST_ACCEPT",
    "OCI_INDEX",
    "OCI_MANIFEST",
    "Descriptor",
    "Digester",
    "Manifest",
    "Platform",
    "compute_digest",
    "is_digest",
    "is_index",
    "parse_digest",
    "parse_manifest",
]
