"""Read simple-signing signatures from a lookaside (``file://``, ``http://``, ``https://``).

For one manifest, ``signature-1``, ``signature-2``… are read until one is missing (404, or no
such file): that is "no more signatures". Anything else (connection failures, 5xx, 403, a
redirect) is a temporary :class:`LookasideError`, retried by the caller; a server that breaks
the rules (more than ``max_signatures``, a blob over ``max_size``, something that is not an
OpenPGP signature) is a permanent one.

The HTTP client is the lookaside client's own, with no credentials and no cookies: registry
credentials are never sent to a lookaside (containers/image behaves the same way).
"""

from __future__ import annotations

import ssl
import urllib.parse
from types import TracebackType

import anyio
import anyio.to_thread
import httpx

from mirrord.errors import LookasideError

from ._files import FileProblem, MiB, read_bounded
from ._gpg import openpgp_message
from ._layout import check_lookaside_url, signature_url

MAX_SIGNATURES = 128
MAX_SIGNATURE_SIZE = 4 * MiB


class LookasideClient:
    """``async with LookasideClient() as client: sigs = await client.fetch(base, repo, dig)``.

    ``verify``: True (system CAs), False, a CA bundle path or an ``ssl.SSLContext``, for
    https lookasides. ``proxy``: an explicit HTTP(S) proxy URL; the environment is not read
    (``trust_env`` would also read ``~/.netrc`` and send its credentials).
    ``transport`` is for tests (an ``httpx.AsyncBaseTransport``).
    """

    def __init__(self, *, verify: bool | str | ssl.SSLContext = True, timeout: float = 30.0,
                 max_signatures: int = MAX_SIGNATURES, max_size: int = MAX_SIGNATURE_SIZE,
                 proxy: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self.max_signatures = max_signatures
        self.max_size = max_size
        self._verify, self._timeout, self._proxy = verify, timeout, proxy
        self._transport = transport
        # Made on the first fetch: a run that reads no lookaside never pays for an HTTP
        # client and its TLS context (tens of milliseconds of start-up).
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(verify=self._verify, timeout=self._timeout,
                                           follow_redirects=True, max_redirects=5,
                                           transport=self._transport, trust_env=False,
                                           proxy=self._proxy, headers={"User-Agent": "mirrord"})
        return self._http

    async def __aenter__(self) -> LookasideClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()

    async def fetch(self, base: str, repository: str, digest: str, *,
                    start: int = 1) -> list[bytes]:
        """The signatures ``signature-<start>``, ``signature-<start+1>``… of the manifest
        ``digest`` of ``repository`` (the path without host) under ``base``, in order.

        ``start`` > 1 skips signatures the caller already holds (e.g. already in the
        mirror's lookaside). Raises :class:`LookasideError` (see the module docstring) and
        ``InvalidReferenceError`` / ``ConfigError`` for a bad repository, digest or URL.
        """
        base = check_lookaside_url(base)
        out: list[bytes] = []
        index = start
        while True:
            if index > self.max_signatures:
                raise LookasideError(f"{base}: more than {self.max_signatures} signatures for "
                                     f"{repository}@{digest}", temporary=False)
            url = signature_url(base, repository, digest, index)
            blob = await self.fetch_one(url)
            if blob is None:
                return out
            out.append(blob)
            index += 1

    async def fetch_one(self, url: str) -> bytes | None:
        """One signature by full URL; None when it does not exist."""
        if url.startswith("file:"):
            blob = await self._read_file(url)
        else:
            blob = await self._get(url)
        if blob is None:
            return None
        try:
            openpgp_message(blob)
        except ValueError as exc:
            raise LookasideError(f"{url}: {exc}", temporary=False) from None
        return blob

    async def _read_file(self, url: str) -> bytes | None:
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        try:
            return await anyio.to_thread.run_sync(read_bounded, path, self.max_size)
        except FileProblem as exc:
            if exc.missing:
                return None
            raise LookasideError(f"lookaside: {exc}", temporary=not exc.permanent) from None

    async def _get(self, url: str) -> bytes | None:
        try:
            async with self._client().stream("GET", url) as resp:
                if resp.status_code == 404:
                    return None
                if resp.status_code != 200:
                    raise LookasideError(f"{url}: HTTP {resp.status_code}")
                if url.startswith("https:") and resp.url.scheme != "https":
                    raise LookasideError(f"{url}: redirected to {resp.url.scheme}://",
                                         temporary=False)
                return await self._body(url, resp)
        except httpx.TooManyRedirects:
            raise LookasideError(f"{url}: too many redirects") from None
        except httpx.HTTPError as exc:
            raise LookasideError(f"{url}: {type(exc).__name__}: {exc}") from None

    async def _body(self, url: str, resp: httpx.Response) -> bytes:
        length = resp.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_size:
            raise LookasideError(f"{url}: signature of {length} bytes, larger than "
                                 f"{self.max_size}", temporary=False)
        body = bytearray()
        async for chunk in resp.aiter_bytes():
            body += chunk
            if len(body) > self.max_size:
                raise LookasideError(f"{url}: signature larger than {self.max_size} bytes",
                                     temporary=False)
        return bytes(body)
