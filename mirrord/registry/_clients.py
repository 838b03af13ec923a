"""The HTTP clients of one registry session: small exchanges over HTTP/2 where offered.

Tag-list pages, manifests and ``GET /v2/`` share one TLS connection over HTTP/2 (no
handshake per connection, and h2 costs the client less CPU per exchange than HTTP/1.1
through httpcore). Blob bodies and uploads stay on HTTP/1.1 connections of their own:
one stream per TCP connection, so a large blob never shares a flow-control window (or a
lost packet) with the others. HTTP/2 needs TLS and ALPN (the registry offers ``h2``;
else the same client speaks HTTP/1.1); plain HTTP, ``http2: false``, or an injected
transport use one client. ``HEAD``s, a no-op's hundreds of requests, go by
:class:`~._headpool.HeadPool` instead, unless the environment names a proxy or a
transport is injected.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import httpx

from mirrord import __version__
from mirrord.registry._headpool import HeadPool
from mirrord.registry._options import RegistryOptions
from mirrord.registry._transport import AsyncioTransport

__all__ = ["HttpClients"]


class HttpClients:
    """``bulk`` (HTTP/1.1: blobs and uploads) and ``small`` (HTTP/2 when it applies: every
    other ``GET`` and ``HEAD``: tag lists, manifests, ``GET /v2/``, token requests), with
    the same auth, TLS, timeouts and connection bound."""

    def __init__(
        self,
        options: RegistryOptions,
        base_url: httpx.URL,
        *,
        auth: httpx.Auth,
        verify: ssl.SSLContext | bool,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        common: dict[str, Any] = {
            "auth": auth,
            "verify": verify,
            "follow_redirects": True,
            # Each read and write: no single wait for the network lasts past the stall
            # window (the whole request has its deadline, a body its minimum rate).
            "timeout": httpx.Timeout(options.stall_timeout, connect=15.0),
            "headers": {"User-Agent": f"mirrord/{__version__}"},
        }
        limits = httpx.Limits(max_connections=max(4, options.max_concurrency * 2))
        injected = transport is not None
        self.bulk = httpx.AsyncClient(
            transport=transport or AsyncioTransport(verify, limits=limits), **common
        )
        self.small = self.bulk
        # HEADs go by a pool of our own (see ._headpool), except through a proxy, which
        # httpx finds in the environment, and over an injected transport.
        self.heads: HeadPool | None = None
        if not injected and not _proxied():
            self.heads = HeadPool(base_url, verify, stall_timeout=options.stall_timeout,
                                  keep=limits.max_connections or 12)
        if options.http2 and not options.insecure and not injected:
            # bounded as bulk is, for a registry whose ALPN settles on HTTP/1.1
            small = AsyncioTransport(verify, limits=limits, http2=True)
            self.small = httpx.AsyncClient(transport=small, **common)

    def for_request(self, request: httpx.Request) -> httpx.AsyncClient:
        """The client ``request`` goes by: a blob or an upload takes ``bulk``."""
        if self.small is self.bulk:
            return self.bulk
        small = request.method == "HEAD" or (
            request.method == "GET" and "/blobs/" not in request.url.path
        )
        return self.small if small else self.bulk

    async def aclose(self) -> None:
        if self.heads is not None:
            await self.heads.aclose()
        await self.bulk.aclose()
        if self.small is not self.bulk:
            await self.small.aclose()


def _proxied() -> bool:
    """Whether the environment names a proxy (httpx's ``trust_env`` reads the same)."""
    names = ("http_proxy", "https_proxy", "all_proxy")
    return any(os.environ.get(n) or os.environ.get(n.upper()) for n in names)
