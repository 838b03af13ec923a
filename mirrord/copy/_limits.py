"""The caps on what one image may reference (``limits:``): layers, index children, and
how deep indexes nest. Pure; the engine checks every manifest it fetches against them
before it fetches or writes anything that manifest references."""

from __future__ import annotations

from mirrord.core.limits import KEYS, Limits
from mirrord.core.oci import Manifest
from mirrord.errors import LimitExceededError, ManifestError


def check_manifest(manifest: Manifest, limits: Limits, where: str) -> None:
    """LimitExceededError when ``manifest`` (fetched from ``where``) lists more layers or
    children than ``limits`` allow; the message names the cap and its key."""
    if len(manifest.layers) > limits.max_layers:
        raise LimitExceededError(
            f"{where}: the manifest lists {len(manifest.layers)} layers, over the limit of "
            f"{limits.max_layers} ({KEYS['max_layers']}); refused"
        )
    if len(manifest.manifests) > limits.max_index_children:
        raise LimitExceededError(
            f"{where}: the index lists {len(manifest.manifests)} manifests, over the limit "
            f"of {limits.max_index_children} ({KEYS['max_index_children']}); refused"
        )


def index_level(manifest: Manifest, parents: tuple[str, ...], limits: Limits, where: str) -> int:
    """How many indexes deep ``manifest`` is, counting itself (``parents``: the digests
    of the indexes above it, outermost first). LimitExceededError past
    ``max_index_depth``; ManifestError for an index that lists itself or an ancestor."""
    if manifest.digest in parents:
        raise ManifestError(f"{where}: the index lists itself (or an index above it); refused")
    level = len(parents) + (1 if manifest.is_index else 0)
    if level > limits.max_index_depth:
        raise LimitExceededError(
            f"{where}: indexes nested {level} deep, over the limit of "
            f"{limits.max_index_depth} ({KEYS['max_index_depth']}); refused"
        )
    return level
