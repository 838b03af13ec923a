"""A session with one registry: its HTTP client, limiters, throttle and auth flow.

Every request holds a slot of the registry's limiter, so concurrency is bounded
per registry however many images and blobs are in flight. A blob body being
streamed holds a slot of a second limiter of the same size instead (the GET
holds a request slot only until its headers arrive): a blob streamed from this
registry into this same registry then never waits for a slot its own stream
holds, and the connection pool (twice the limit) always has room for both. Errors come back as
the typed exceptions of :mod:`mirrord.errors`; nothing here retries (callers do, with
:func:`~mirrord.registry.retrying` and :attr:`RegistrySession.retry`). Every answer feeds
the registry's pacing: a 429 or 503 pauses it and halves its concurrency, successes
restore it, and Docker Hub's ``ratelimit-remaining`` is read. The verbs are
:class:`~mirrord.registry.RegistryClient`'s.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Self

import anyio
import httpx

from mirrord.core.reference import DOCKER_HUB, DOCKER_HUB_API_HOST
from mirrord.errors import (
    ConnectError,
    MirrordError,
    NotFoundError,
    RegistryError,
    TransferTimeoutError,
    UnauthorizedError,
)
from mirrord.registry._auth import CredentialLike, RegistryAuth, Token
from mirrord.registry._body import read_bounded, rebuilt
from mirrord.registry._challenge import Challenge
from mirrord.registry._clients import HttpClients
from mirrord.registry._errors import (
    error_from_exception,
    error_from_response,
)
from mirrord.registry._http import json_object
from mirrord.registry._options import LIMIT_KEYS, MAX_JSON_BODY, RegistryOptions
from mirrord.registry._retry import RetryPolicy
from mirrord.registry._throttle import RegistryPacing
from mirrord.registry._tls import ssl_context
from mirrord.registry._urls import host_port, same_origin, upload_location

log = logging.getLogger("mirrord.registry")

ERROR_BODY_LIMIT = 64 << 10  # an error answer is read this far (for its OCI error code)
MAX_TOKEN_LIFETIME = 24 * 3600.0  # a token is fetched again at least daily
CANCEL_TIMEOUT = 5.0  # seconds one upload cancellation (or all of them at close) may take

#: What a failed ``GET /v2/`` says it was doing (a user reads it: no "ping" jargon).
REACH = "connecting"


class RegistrySession:
    """Talks HTTP to one registry (``host[:port]``; ``docker.io`` means Docker Hub's API
    host), authorising every request, within the registry's limits."""

    def __init__(
        self,
        registry: str,
        *,
        credential: CredentialLike | None = None,
        options: RegistryOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        on_request: Callable[[str, str, int], None] | None = None,
        pacing: RegistryPacing | None = None,
    ) -> None:
        self.registry = registry
        self.options = options or RegistryOptions()
        host = DOCKER_HUB_API_HOST if registry == DOCKER_HUB else registry
        self.base_url = httpx.URL(f"{'http' if self.options.insecure else 'https'}://{host}")
        self.credential = credential
        self.requests: Counter[str] = Counter()
        self._on_request = on_request
        self.pacing = pacing or RegistryPacing.for_options(self.options)
        self._limiter = self.pacing.requests
        self._streams = self.pacing.streams
        self.throttle = self.pacing.throttle
        self.retry = RetryPolicy(
            budget=self.options.retry_budget, outage_budget=self.options.outage_budget
        )
        # Upload sessions given up on whose DELETE failed (the registry was down): tried
        # again when the client closes.
        self.abandoned_uploads: list[str] = []
        self.auth = RegistryAuth(credential, self._fetch_token)
        # Plain HTTP needs no TLS context (building one costs tens of milliseconds).
        verify = ssl_context(host, self.options) if not self.options.insecure else False
        self._clients = HttpClients(self.options, self.base_url, auth=self.auth, verify=verify,
                                    transport=transport)
        self._http = self._clients.bulk
        self._pinged = False
        self._withheld_from = ""  # a token realm the credential was not sent to
        self._ping_lock = anyio.Lock()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_TIMEOUT):
            while self.abandoned_uploads:
                if not await self._delete_upload(self.abandoned_uploads.pop(0)):
                    break
        await self._clients.aclose()

    # -- upload sessions given up on -----------------------------------------------------

    async def cancel_upload(self, location: str) -> None:
        """``DELETE`` an upload session mirrord gives up on, so the registry drops what it
        holds of the blob (``_uploads``). Never raises: a session that cannot be deleted
        now (the registry is down) is tried again when the client closes."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(CANCEL_TIMEOUT) as scope:
            if await self._delete_upload(location):
                return
        if scope.cancelled_caught:
            log.info("%s: cancelling an upload session timed out", self.registry)
        self.abandoned_uploads.append(location)

    async def _delete_upload(self, location: str) -> bool:
        """True when the session is gone, or cannot be deleted at all; False when the
        registry could not be asked (tried again at close).

        Distribution 2.8 answers ``404 BLOB_UPLOAD_INVALID`` for a session holding more
        than its URL says (a body cut short) and then fails to drop it; the registry's
        upload purging removes it later. Monolithic uploads avoid that case (see
        ``_upload._UntilFailure``)."""
        try:
            await self._request("DELETE", location, "cancel upload", ok=(204, 202, 200))
        except NotFoundError as error:
            if error.code == "BLOB_UPLOAD_INVALID":
                log.info("%s: the registry cannot cancel the session: %s", self.registry, error)
        except MirrordError as error:
            log.info("%s: cannot cancel an upload session yet: %s", self.registry, error)
            return False
        return True

    @property
    def credential_source(self) -> str:
        return self.credential.source if self.credential else ""

    # -- ping and auth ------------------------------------------------------------

    async def ping(self) -> str:
        """``GET /v2/``: learn the auth scheme (``""``, ``basic`` or ``bearer``). Always
        asks; a request queued meanwhile waits for this answer instead of its own."""
        async with self._limiter, self._ping_lock:
            await self._ping()
        return self.auth.scheme

    async def _ping(self) -> None:
        response = await self._send("GET", "/v2/", REACH, authenticate=False)
        if response.status_code == 401:
            self.auth.learn(response, self.base_url)
        elif response.status_code != 200:
            raise error_from_response(response, self.registry, REACH)
        self._pinged = True

    async def check_credentials(self) -> None:
        """Prove the credential is accepted (for ``mirrord login``); raise UnauthorizedError."""
        scheme = await self.ping()
        if scheme == "bearer":
            await self.auth.token((), refresh=True)
            if self._withheld_from:
                # An anonymous token proves nothing about the credential.
                why = f"{self._withheld_from} is untrusted: list it under registries:"
                raise UnauthorizedError(f"check credentials: not checked: the token server "
                                        f"{why}", registry=self.registry)
        elif scheme == "basic":
            await self._request("GET", "/v2/", "check credentials", ok=(200,))

    async def _fetch_token(
        self, challenge: Challenge, scopes: tuple[str, ...], credential: CredentialLike | None
    ) -> Token:
        params: list[tuple[str, str | int | float | bool | None]] = (
            [("service", challenge.service)] if challenge.service else []
        )
        params += [("scope", scope) for scope in scopes]
        realm = self._realm_url(challenge.realm)
        auth: httpx.Auth | None = None
        what = f"token from {realm}"
        if credential is not None and self._may_receive_credentials(realm):
            params.append(("account", credential.username))
            auth = httpx.BasicAuth(credential.username, credential.password)
        elif credential is not None:
            self._withheld_from = host_port(realm)
            what += (
                " (asked without credentials: the realm is another host, not over verified "
                "HTTPS; list it under registries: to trust it)"
            )
        request = self._http.build_request("GET", realm, params=params)
        response = await self._exchange(request, what, auth=auth, limit=MAX_JSON_BODY)
        if response.status_code != 200:
            raise error_from_response(response, self.registry, what, self.credential_source)
        body = json_object(response, self.registry, what)
        value = str(body.get("token") or body.get("access_token") or "")
        try:
            lifetime = min(max(float(body.get("expires_in") or 60), 1.0), MAX_TOKEN_LIFETIME)
        except (TypeError, ValueError, OverflowError):
            lifetime = 60.0
        # The auth flow's clock, not anyio's: trio's clock runs on a different base.
        return Token.issued(value, lifetime, self.auth.clock())

    def _realm_url(self, realm: str) -> httpx.URL:
        """The challenge's token realm as a URL: http(s) with a host, else RegistryError."""
        try:
            url = httpx.URL(realm)
        except (httpx.InvalidURL, ValueError, TypeError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise RegistryError(
                f"the token realm {realm[:200]!r} is not an http(s) URL", registry=self.registry
            )
        return url

    def _may_receive_credentials(self, realm: httpx.URL) -> bool:
        """The rule for token realms: the registry's own host, any host over verified
        HTTPS, or a host configured under ``registries:``; anything else gets an anonymous
        request. (A client that does not verify TLS, ``insecure`` or ``tls_verify: false``,
        has no verified HTTPS: only its own host and configured hosts qualify.)"""
        verified = not self.options.insecure and self.options.tls_verify
        if same_origin(realm, self.base_url) or (realm.scheme == "https" and verified):
            return True
        if host_port(realm) in self.options.trusted_hosts:
            return True
        log.warning(
            "%s: token realm %s is another host, not over verified HTTPS and not configured "
            "under registries:; it gets no credentials (an anonymous token is asked for)",
            self.registry,
            host_port(realm),
        )
        return False

    # -- plumbing -------------------------------------------------------------------------

    def _url(self, path_or_url: str) -> str:
        """A path mirrord built (``/v2/…``), or an upload URL already checked to be on
        this registry's origin; nothing else is ever sent to."""
        if path_or_url.startswith("/v2/"):
            return str(self.base_url).rstrip("/") + path_or_url
        if path_or_url.startswith(str(self.base_url).rstrip("/") + "/"):
            return path_or_url
        raise RegistryError(f"refused to request {path_or_url[:200]!r}", registry=self.registry)

    def _location(self, response: httpx.Response, repository: str) -> str:
        return upload_location(response, self.base_url, repository, self.registry)

    async def _request(
        self,
        method: str,
        url: str,
        what: str,
        *,
        ok: tuple[int, ...],
        pull: bool = False,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send within the registry's limits; ``pull``: a manifest GET, which the pull floor
        may refuse (checked holding the slot, so queued pulls see the latest figure)."""
        async with self._limiter:
            if pull:
                self.pacing.pulls.check(self.registry)
            response = await self._send(method, url, what, **kwargs)
        if response.status_code not in ok:
            raise error_from_response(response, self.registry, what, self.credential_source)
        return response

    async def _send(
        self,
        method: str,
        url: str,
        what: str,
        *,
        authenticate: bool = True,
        limit: int = MAX_JSON_BODY,
        key: str = "",
        deadline: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send and read the answer whole (at most ``limit`` bytes; ``key`` is the
        setting that raises it), within ``request_timeout`` unless ``deadline`` is False
        (a streamed upload, bounded by the rate of the stream it forwards)."""
        request = self.build_request(method, url, what, **kwargs)
        await self._prepare(request, authenticate)
        timeout = self.options.request_timeout if deadline else math.inf
        return await self._exchange(
            request,
            what,
            auth=httpx.USE_CLIENT_DEFAULT if authenticate else None,
            limit=limit,
            key=key,
            timeout=timeout,
        )

    def build_request(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Request:
        try:
            return self._http.build_request(method, self._url(url), **kwargs)
        except httpx.InvalidURL as exc:  # names are checked before: a bug, said clearly
            raise RegistryError(f"{what}: invalid URL: {exc}", registry=self.registry) from None

    async def _exchange(
        self,
        request: httpx.Request,
        what: str,
        *,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        limit: int,
        key: str = "",
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send ``request`` and read its answer within ``timeout`` and ``limit``."""
        timeout = self.options.request_timeout if timeout is None else timeout
        try:
            with anyio.fail_after(timeout):
                response = await self._transmit(request, what, auth=auth)
                if response.is_closed:  # whole already: the HEAD pool's answers
                    return response
                try:
                    error = not 200 <= response.status_code < 300
                    body = await read_bounded(
                        response,
                        self.options,
                        self.registry,
                        what,
                        limit=ERROR_BODY_LIMIT if error else limit,
                        key=key,
                        truncate=error,
                    )
                finally:
                    await response.aclose()
        except TimeoutError:
            raise self._overdue(what) from None
        return rebuilt(response, body)

    def _overdue(self, what: str) -> TransferTimeoutError:
        return TransferTimeoutError(
            f"{what}: no complete answer within {self.options.request_timeout:g}s "
            f"({LIMIT_KEYS['request_timeout']})",
            registry=self.registry,
        )

    async def _prepare(self, request: httpx.Request, authenticate: bool = True) -> None:
        """What comes before sending: the ping (once), the throttle, the counters."""
        if authenticate and not self._pinged:
            await self._ping_once()
        await self.throttle.wait()
        self.requests[request.method] += 1

    async def _transmit(
        self, request: httpx.Request, what: str, *, auth: Any = httpx.USE_CLIENT_DEFAULT
    ) -> httpx.Response:
        """Send ``request``; the answer's body is left to stream (the caller closes it).
        The ``on_request`` hook hears of it after the answer (its status is a label of
        the metrics), or after its failure (status 0)."""
        status = 0  # no answer, unless one comes
        sent_at = time.time()
        try:
            heads, response = self._clients.heads, None
            if heads is not None:  # None from it: the exchange is httpx's
                flow_auth = self.auth if auth is httpx.USE_CLIENT_DEFAULT else auth
                response = await heads.send(request, flow_auth)
            if response is None:
                client = self._clients.for_request(request)
                response = await client.send(request, stream=True, auth=auth)
            status = response.status_code
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, self.registry, what) from exc
        except httpx.StreamConsumed as exc:
            # The registry refused the token of a streamed upload; the auth flow has
            # fetched a new one but cannot send the consumed body twice. The caller can.
            raise ConnectError(
                f"{what}: the registry refused the token during a streamed upload; "
                "a new token is ready, so the upload can be retried",
                registry=self.registry,
            ) from exc
        finally:
            if self._on_request:
                self._on_request(request.method, request.url.path, status)
        self.pacing.observe(self.registry, response.status_code, response.headers, sent_at)
        return response

    async def _ping_once(self) -> None:
        # Learn the challenge once, so every later request is authorised up front
        # and costs one round trip instead of a 401 and a retry.
        async with self._ping_lock:
            if not self._pinged:
                await self._ping()
