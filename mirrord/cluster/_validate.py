"""Check mirror-set objects against the fields the OpenShift API requires. Pure.

What the API server would refuse (openshift/api config/v1 ImageDigestMirrorSet,
ImageTagMirrorSet; operator/v1alpha1 ImageContentSourcePolicy): a missing or wrong
``apiVersion``/``kind``, a ``metadata.name`` that is not DNS-1123, a ``source`` or
mirror that does not match the location pattern, a mirror listed twice
(``+listType=set``). What would be accepted but useless, refused here too: an entry
without mirrors, a source listed twice (clients would merge them in an unspecified
order).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mirrord.cluster._documents import KINDS
from mirrord.cluster._model import check_location, check_name
from mirrord.errors import ClusterResourcesError

_BY_KIND = {kind: (api_version, key) for kind, api_version, key in KINDS.values()}


def check_mirror_set(document: Mapping[str, Any]) -> None:
    """Raise ClusterResourcesError naming the first field the API would refuse."""
    kind = document.get("kind")
    if kind not in _BY_KIND:
        raise ClusterResourcesError(f"kind {kind!r} is not one of {', '.join(_BY_KIND)}")
    api_version, key = _BY_KIND[kind]
    if document.get("apiVersion") != api_version:
        raise ClusterResourcesError(f"{kind}: apiVersion must be {api_version}")
    metadata = document.get("metadata")
    if not isinstance(metadata, Mapping):
        raise ClusterResourcesError(f"{kind}: metadata is missing")
    check_name(str(metadata.get("name", "")))
    spec = document.get("spec")
    entries = spec.get(key) if isinstance(spec, Mapping) else None
    if not isinstance(entries, list):
        raise ClusterResourcesError(f"{kind}: spec.{key} must be a list")
    sources: set[str] = set()
    for index, entry in enumerate(entries):
        where = f"{kind} {metadata['name']}: spec.{key}[{index}]"
        _check_entry(entry, where, sources)


def _check_entry(entry: Any, where: str, sources: set[str]) -> None:
    if not isinstance(entry, Mapping):
        raise ClusterResourcesError(f"{where}: expected a mapping")
    source = entry.get("source")
    if not isinstance(source, str) or not source:
        raise ClusterResourcesError(f"{where}.source is required")
    check_location(source, f"{where}.source")
    if source in sources:
        raise ClusterResourcesError(f"{where}.source {source!r} is listed twice")
    sources.add(source)
    mirrors = entry.get("mirrors")
    if not isinstance(mirrors, list) or not mirrors:
        raise ClusterResourcesError(f"{where}.mirrors is empty")
    for mirror in mirrors:
        check_location(mirror, f"{where}.mirrors")
    if len(set(mirrors)) != len(mirrors):
        raise ClusterResourcesError(f"{where}.mirrors lists a mirror twice")
