"""OCI 1.1 referrers: the API, the referrers tag schema fallback, and merging fallback indexes.

A *referrer* is a manifest whose ``subject`` names another manifest (a signature, an SBOM…).
A registry with the referrers API answers ``GET /v2/<name>/referrers/<digest>`` with an
image index of referrer descriptors; on one without it (distribution 2.8), clients keep that
index themselves under the tag ``sha256-<hex>`` (the referrers tag schema), read-modify-write.

Everything read here is untrusted: descriptors are validated, lists bounded, and an index that
is not an index is an error rather than something to overwrite.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from mirrord.errors import ManifestError, RegistryError

from ._layout import check_repository

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MAX_REFERRERS = 1000
MAX_INDEX_SIZE = 4 * 1024 * 1024
_MAX_PAGES = 20
_DIGEST = re.compile(r"sha256:([a-f0-9]{64})")
_ANY_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag for ``digest``: ``sha256-<hex>``."""
    m = _DIGEST.fullmatch(digest)
    if m is None:
        raise ManifestError(f"the referrers tag schema needs a sha256 digest, not {digest!r}")
    return f"sha256-{m.group(1)}"


def check_descriptor(desc: Any, where: str = "descriptor") -> dict[str, Any]:
    """A referrer descriptor, validated: ``mediaType``, ``digest``, ``size`` required;
    ``artifactType`` a string and ``annotations`` a string map when present."""
    if not isinstance(desc, dict):
        raise ManifestError(f"{where} is not an object")
    media_type, digest, size = desc.get("mediaType"), desc.get("digest"), desc.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise ManifestError(f"{where} has no mediaType")
    if not isinstance(digest, str) or not _ANY_DIGEST.fullmatch(digest):
        raise ManifestError(f"{where} has an invalid digest {digest!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ManifestError(f"{where} has an invalid size {size!r}")
    if "artifactType" in desc and not isinstance(desc["artifactType"], str):
        raise ManifestError(f"{where}: artifactType is not a string")
    annotations = desc.get("annotations")
    if annotations is not None and not (
            isinstance(annotations, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in annotations.items())):
        raise ManifestError(f"{where}: annotations are not a string map")
    return desc


def referrer_descriptor(manifest: bytes, digest: str) -> dict[str, Any]:
    """The descriptor a referrers index lists for the referrer ``manifest`` (whose digest
    the caller computed): its media type, ``artifactType`` (else the config media type, as
    the distribution spec says) and annotations."""
    doc = _json_object(manifest, "referrer manifest")
    desc: dict[str, Any] = {"mediaType": doc.get("mediaType") or OCI_MANIFEST,
                            "digest": digest, "size": len(manifest)}
    artifact_type = doc.get("artifactType")
    config = doc.get("config")
    if artifact_type is None and isinstance(config, dict):
        artifact_type = config.get("mediaType")
    if artifact_type is not None:
        desc["artifactType"] = artifact_type
    if doc.get("annotations"):
        desc["annotations"] = doc["annotations"]
    return check_descriptor(desc, "referrer manifest")


def subject_of(manifest: bytes) -> str | None:
    """The digest a manifest's ``subject`` names, or None when it has none."""
    subject = _json_object(manifest, "manifest").get("subject")
    if subject is None:
        return None
    return str(check_descriptor(subject, "subject")["digest"])


def filter_referrers(descriptors: Iterable[Mapping[str, Any]],
                     artifact_type: str | None) -> list[dict[str, Any]]:
    """The descriptors whose ``artifactType`` is ``artifact_type`` (all when None)."""
    return [dict(d) for d in descriptors
            if artifact_type is None or d.get("artifactType") == artifact_type]


def parse_referrers_index(raw: bytes, where: str = "referrers index") -> list[dict[str, Any]]:
    """The validated descriptors of a referrers index (API answer or fallback tag)."""
    if len(raw) > MAX_INDEX_SIZE:
        raise ManifestError(f"{where} is larger than {MAX_INDEX_SIZE} bytes")
    doc = _json_object(raw, where)
    if doc.get("mediaType", OCI_INDEX) != OCI_INDEX or doc.get("schemaVersion") != 2:
        raise ManifestError(f"{where} is not an OCI image index")
    manifests = doc.get("manifests", [])
    if not isinstance(manifests, list):
        raise ManifestError(f"{where}: manifests is not a list")
    if len(manifests) > MAX_REFERRERS:
        raise ManifestError(f"{where} lists {len(manifests)} referrers, more than "
                            f"{MAX_REFERRERS}")
    return [check_descriptor(d, f"{where} entry {i}") for i, d in enumerate(manifests)]


def merge_referrers_index(existing: bytes | None,
                          new: Sequence[Mapping[str, Any]]) -> tuple[bytes, bool]:
    """The fallback index with ``new`` descriptors added: (bytes, changed).

    Entries already there are kept as they are and where they are (never dropped); new
    digests are appended in the order given, duplicates ignored. When nothing is added and
    an index exists, its bytes come back unchanged (``changed`` False: no push needed).
    Otherwise the index is written compactly with sorted keys, so equal content gives equal
    bytes. Raises :class:`ManifestError` when ``existing`` is not a valid OCI index.
    """
    current = parse_referrers_index(existing, "existing referrers tag") if existing else []
    seen = {d["digest"] for d in current}
    added = []
    for i, desc in enumerate(new):
        checked = check_descriptor(dict(desc), f"new referrer {i}")
        if checked["digest"] not in seen:
            seen.add(checked["digest"])
            added.append(checked)
    if existing is not None and not added:
        return existing, False
    if len(current) + len(added) > MAX_REFERRERS:
        raise ManifestError(f"a referrers index of more than {MAX_REFERRERS} entries")
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": current + added}
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return raw, True


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...


#: get(path, headers) -> response; ``path`` is relative to the registry (``/v2/...``).
Get = Callable[[str, Mapping[str, str]], Awaitable[_Response]]


@dataclass(frozen=True)
class Referrers:
    """The referrers of one manifest; ``via`` is ``"api"`` or ``"tag"`` (fallback)."""

    descriptors: tuple[dict[str, Any], ...]
    via: str


async def list_referrers(get: Get, repository: str, digest: str, *,
                         artifact_type: str | None = None, api: bool = True) -> Referrers:
    """List the referrers of ``repository@digest``: the referrers API when the registry
    answers it (following ``Link`` pages), else the ``sha256-<hex>`` fallback tag (none if
    absent); ``api=False`` goes to the tag straight away (a registry known to lack the API).
    Filtered by ``artifact_type`` here whatever the server did. Raises
    :class:`ManifestError` for malformed answers and :class:`RegistryError` for statuses
    other than 200/404."""
    check_repository(repository)
    referrers_tag(digest)
    if not api:
        return await _from_tag(get, repository, digest, artifact_type)
    query = f"?artifactType={quote(artifact_type, safe='')}" if artifact_type else ""
    path: str | None = f"/v2/{repository}/referrers/{digest}{query}"
    found: list[dict[str, Any]] = []
    for _ in range(_MAX_PAGES):
        if path is None:
            return Referrers(tuple(filter_referrers(found, artifact_type)), "api")
        resp = await get(path, {"Accept": OCI_INDEX})
        if resp.status_code == 404 and not found:
            return await _from_tag(get, repository, digest, artifact_type)
        _expect_ok(resp, path)
        found += parse_referrers_index(resp.content, f"referrers of {digest}")
        if len(found) > MAX_REFERRERS:
            raise ManifestError(f"more than {MAX_REFERRERS} referrers of {digest}")
        path = _next_page(resp.headers.get("link"), repository)
    raise ManifestError(f"referrers of {digest}: more than {_MAX_PAGES} pages")


async def _from_tag(get: Get, repository: str, digest: str,
                    artifact_type: str | None) -> Referrers:
    path = f"/v2/{repository}/manifests/{referrers_tag(digest)}"
    resp = await get(path, {"Accept": OCI_INDEX})
    if resp.status_code == 404:
        return Referrers((), "tag")
    _expect_ok(resp, path)
    found = parse_referrers_index(resp.content, f"referrers tag of {digest}")
    return Referrers(tuple(filter_referrers(found, artifact_type)), "tag")


def _expect_ok(resp: _Response, path: str) -> None:
    if resp.status_code != 200:
        raise RegistryError(f"GET {path}: HTTP {resp.status_code}", status=resp.status_code)


def _next_page(link: str | None, repository: str) -> str | None:
    """The ``rel="next"`` target of a Link header, if it stays in this repository."""
    if not link:
        return None
    for part in link.split(","):
        target, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", ""):
            url = target.strip().strip("<>")
            if not url.startswith(f"/v2/{repository}/referrers/"):
                raise ManifestError(f"referrers Link {url!r} leaves the repository")
            return url
    return None


def _json_object(raw: bytes, where: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ManifestError(f"{where} is not JSON") from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{where} is not a JSON object")
    return doc
