"""Small HTTP helpers of the registry client: blob chunks, JSON bodies, queries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx

from mirrord.errors import RegistryError
from mirrord.registry._body import paced
from mirrord.registry._options import RegistryOptions

BLOB_CHUNK = 1 << 20  # hash and forward blobs a MiB at a time


async def raw_chunks(
    response: httpx.Response, options: RegistryOptions, registry: str, what: str
) -> AsyncIterator[bytes]:
    """A blob's raw bytes in chunks of about :data:`BLOB_CHUNK`, at the minimum rate.

    The network's chunks are read as they arrive (so the rate is measured on them, not
    on a MiB that a slow link takes long to fill) and handed on a MiB at a time."""
    pending = bytearray()
    async for chunk in paced(response.aiter_raw(), options, registry, what):
        pending += chunk
        if len(pending) >= BLOB_CHUNK:
            yield bytes(pending)
            pending.clear()
    if pending:
        yield bytes(pending)


def json_object(response: httpx.Response, registry: str, what: str) -> dict[str, Any]:
    """The response's JSON object, or a RegistryError that says the answer was malformed."""
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError) as exc:  # RecursionError: [[[[… nested too deep
        raise RegistryError(f"{what}: the answer is not JSON", registry=registry) from exc
    if not isinstance(body, dict):
        raise RegistryError(f"{what}: the answer is not a JSON object", registry=registry)
    return body


def with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
    return urlunsplit(parts._replace(query=query))
