"""Registry URLs built from checked names, and the rules for URLs a registry sends.

Every request path is built here from a repository and a reference that passed the
distribution grammar (:func:`mirrord.core.reference.check_repository`,
:func:`~mirrord.core.reference.check_reference`) and is quoted; no upstream text is
ever resolved against a base URL. What a registry may send back:

- a pagination ``Link`` gives only its path and query (as containers/image takes
  them), and the path must be this repository's tag list: the next page is always
  asked of the same scheme, host and port, so the credential never goes elsewhere;
- an upload ``Location`` must name this registry's scheme, host and port (or be a
  path on it) and this repository's upload path; anything else is refused;
- redirects of GETs (a blob on a CDN) are followed by httpx, which drops our
  ``Authorization`` when the origin changes; a 401 from another origin is never
  taken as this registry's challenge (:func:`same_origin`).
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx

from mirrord.core.reference import check_reference, check_repository
from mirrord.errors import InvalidReferenceError, RegistryError

_KINDS = ("tags/list", "manifests", "blobs", "blobs/uploads/")


def api_path(repository: str, kind: str, reference: str = "") -> str:
    """``/v2/<repository>/<kind>[/<reference>]`` from checked, quoted components (the
    reference of ``manifests`` and ``blobs``, required).

    Raises :class:`~mirrord.errors.InvalidNameError` for a name off the grammar."""
    assert kind in _KINDS, kind
    path = f"/v2/{quote(check_repository(repository), safe='/')}/{kind}"
    if kind in ("manifests", "blobs"):  # a reference is required: "" is no tag either
        path += "/" + quote(check_reference(reference), safe=":")
    return path


_API_GET = re.compile(
    r"/v2/(?P<name>[a-z0-9][a-z0-9._/-]*)/(?:referrers/(?P<digest>[a-z0-9]+:[a-zA-Z0-9=_-]+)"
    r"(?:\?[A-Za-z0-9=&%._+-]*)?|manifests/(?P<ref>[A-Za-z0-9_.:-]+))"
)


def referrers_or_manifest_path(path: str) -> bool:
    """True for ``/v2/<name>/referrers/<digest>[?query]`` or ``/v2/<name>/manifests/<ref>``
    with a name and reference on the distribution grammar (nothing else is asked for by
    path: a referrers ``Link`` is followed only when it passes this)."""
    match = _API_GET.fullmatch(path)
    if match is None:
        return False
    try:
        check_repository(match["name"])
        check_reference(match["digest"] or match["ref"])
    except InvalidReferenceError:
        return False
    return True


def origin(url: httpx.URL) -> tuple[str, str, int]:
    """``(scheme, host, port)`` with the scheme's default port filled in."""
    port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
    return url.scheme, url.host.lower(), port


def same_origin(a: httpx.URL, b: httpx.URL) -> bool:
    return origin(a) == origin(b)


def host_port(url: httpx.URL) -> str:
    """``host[:port]`` as the configuration names a registry (IPv6 in brackets)."""
    host = f"[{url.host}]" if ":" in url.host else url.host.lower()
    return f"{host}:{url.port}" if url.port is not None else host


def next_page(response: httpx.Response, tags_path: str, registry: str) -> str | None:
    """The path and query of the ``Link: <…>; rel="next"`` page, or None.

    Only the path and query of the link are used; the path must be ``tags_path``
    (anything else is refused with a RegistryError), and the query is re-encoded."""
    target = _next_target(response.headers.get("link", ""))
    if target is None:
        return None
    try:
        parts = urlsplit(target)
    except ValueError:
        parts = None
    if parts is None or parts.path != tags_path:
        shown = repr(target[:200])
        raise RegistryError(
            f"list tags: the pagination Link {shown} does not name this repository's tag "
            f"list ({tags_path}); refused",
            registry=registry,
        )
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True))
    return f"{tags_path}?{query}" if query else tags_path


def _next_target(link: str) -> str | None:
    for part in link.split(","):
        if 'rel="next"' in part or "rel=next" in part:
            start, end = part.find("<"), part.find(">")
            if 0 <= start < end:
                return part[start + 1 : end]
    return None


def upload_location(
    response: httpx.Response, base: httpx.URL, repository: str, registry: str
) -> str:
    """The upload URL of a 202 answer, checked: this registry's origin, this
    repository's ``/v2/<repository>/blobs/uploads/…`` path; RegistryError otherwise."""
    location = response.headers.get("location", "")
    if not location:
        raise RegistryError("upload answer without Location", registry=registry)
    shown = repr(location[:200])
    try:
        # A path is on the registry itself; anything else must be an absolute URL.
        on_base = location.startswith("/") and not location.startswith("//")
        url = httpx.URL(str(base).rstrip("/") + location) if on_base else httpx.URL(location)
    except (httpx.InvalidURL, ValueError):
        raise RegistryError(f"upload Location {shown} is not a URL", registry=registry) from None
    if not url.is_absolute_url or not same_origin(url, base):
        raise RegistryError(
            f"upload Location {shown} points at another scheme, host or port than "
            f"{host_port(base)}; refused (mirrord sends blobs and credentials only to "
            "the registry itself)",
            registry=registry,
        )
    uploads = api_path(repository, "blobs/uploads/")
    if not url.path.startswith(uploads) or "/../" in url.path or url.fragment:
        raise RegistryError(
            f"upload Location {shown} is not under {uploads}; refused", registry=registry
        )
    return str(url)
