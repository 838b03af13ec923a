"""Small HTTP helpers of the registry client: raw blob chunks, JSON bodies, links, queries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx

from mirrord.errors import RegistryError
from mirrord.registry._errors import error_from_exception

BLOB_CHUNK = 1 << 20  # hash and forward blobs a MiB at a time


async def raw_chunks(response: httpx.Response, registry: str, what: str) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw(BLOB_CHUNK):
            yield chunk
    except httpx.HTTPError as exc:
        raise error_from_exception(exc, registry, what) from exc


def json_object(response: httpx.Response, registry: str, what: str) -> dict[str, Any]:
    """The response's JSON object, or a RegistryError that says the answer was malformed."""
    try:
        body = response.json()
    except ValueError as exc:
        raise RegistryError(f"{what}: the answer is not JSON", registry=registry) from exc
    if not isinstance(body, dict):
        raise RegistryError(f"{what}: the answer is not a JSON object", registry=registry)
    return body


def next_link(response: httpx.Response) -> str | None:
    link = response.headers.get("link", "")
    for part in link.split(","):
        if 'rel="next"' in part or "rel=next" in part:
            start, end = part.find("<"), part.find(">")
            if 0 <= start < end:
                return urljoin(str(response.url), part[start + 1 : end])
    return None


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit(parts._replace(query=query))
