"""Registry authentication as an ``httpx.Auth`` flow: anonymous, Basic and Bearer.

The flow learns the registry's challenge from ``GET /v2/`` (or from the first
401) and from then on authorises every request before it is sent, so a request
costs one round trip, not two. Bearer tokens (distribution ``token.md``) are
cached per realm, service and scope set, refreshed shortly before they expire,
and fetched again when the registry answers 401 anyway. Pull and pull,push
tokens are different scope sets, so they never stand in for each other.

Credentials stay on their host: a challenge is learnt only from an answer of the
registry's own origin (never from the target of a redirect), and the session sends the
credential to a token realm only on the registry's own host, over verified HTTPS, or on
a host that is itself configured under ``registries:`` (``RegistrySession._fetch_token``).
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import anyio
import httpx

from mirrord.registry._challenge import (
    Challenge,
    merge_scopes,
    parse_challenges,
    request_scopes,
)
from mirrord.registry._urls import same_origin

# Per token.md, a token without expires_in lives 60 seconds.
DEFAULT_TOKEN_LIFETIME = 60.0


class CredentialLike(Protocol):
    """What auth needs of a credential (``mirrord.credentials.Credential`` fits)."""

    @property
    def username(self) -> str: ...

    @property
    def password(self) -> str: ...

    @property
    def source(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Token:
    value: str = ""
    expires_at: float = 0.0
    refresh_at: float = 0.0

    @classmethod
    def issued(cls, value: str, lifetime: float, now: float) -> Token:
        # Refresh when 80% of the lifetime has passed (at least a second early),
        # so that a long request never starts with a token about to lapse.
        margin = max(1.0, min(30.0, lifetime * 0.2))
        return cls(value, now + lifetime, now + max(0.0, lifetime - margin))


TokenFetcher = Callable[[Challenge, tuple[str, ...], "CredentialLike | None"], Awaitable[Token]]


class RegistryAuth(httpx.Auth):
    """Authorises requests to one registry with one (optional) credential."""

    requires_response_body = False

    def __init__(
        self,
        credential: CredentialLike | None,
        fetch_token: TokenFetcher,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credential = credential
        self._fetch_token = fetch_token
        self.clock = clock  # the time base of Token.expires_at / refresh_at
        self._challenge: Challenge | None = None
        self._tokens: dict[tuple[str, ...], Token] = {}
        self._locks: dict[tuple[str, ...], anyio.Lock] = {}
        self.tokens_fetched = 0

    @property
    def scheme(self) -> str:
        """``basic``, ``bearer``, or ``""`` while the registry has not challenged."""
        return self._challenge.scheme if self._challenge else ""

    def learn(self, response: httpx.Response, origin: httpx.URL) -> Challenge | None:
        """Remember the challenge of a 401 (Bearer preferred over Basic), if it came from
        ``origin``: a 401 of another host a request was redirected to (a CDN, a hostile
        one) never names where this registry's credential goes."""
        if not same_origin(response.url, origin):
            return None
        challenges = parse_challenges(response.headers.get("www-authenticate", ""))
        usable = [c for c in challenges if c.scheme in ("bearer", "basic")]
        usable.sort(key=lambda c: c.scheme != "bearer")
        if usable:
            self._challenge = usable[0]
        return usable[0] if usable else None

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        scopes = request_scopes(request.method, str(request.url))
        await self._authorise(request, scopes)
        response = yield request
        if response.status_code != 401:
            return
        sent_authorization = request.headers.get("authorization", "")
        challenge = self.learn(response, request.url)
        if challenge is None or (challenge.scheme == "basic" and sent_authorization):
            return
        if challenge.scheme == "basic" and self.credential is None:
            return
        if challenge.scheme == "bearer" and challenge.scopes:
            scopes = (*scopes, *challenge.scopes)
        # The token just refused is stale wherever it is cached; one a concurrent request
        # fetched since is not.
        refused = sent_authorization.removeprefix("Bearer ")
        self._forget(refused)
        await self._authorise(request, scopes, stale=refused)
        yield request

    def _forget(self, refused: str) -> None:
        """Drop a token the registry refused from every scope set it was cached for."""
        if refused:
            for key in [k for k, t in self._tokens.items() if t.value == refused]:
                del self._tokens[key]

    async def token(
        self, scopes: tuple[str, ...], *, refresh: bool = False, stale: str = ""
    ) -> Token:
        """A valid token for ``scopes`` from the cache, or a new one.

        ``refresh`` always fetches; ``stale`` names a token the registry refused, which
        is fetched again only if nobody has replaced it yet (one fetch for a burst of 401s).
        """
        assert self._challenge is not None and self._challenge.scheme == "bearer"
        scopes = merge_scopes(scopes)
        key = (self._challenge.realm, self._challenge.service, *scopes)
        cached = self._tokens.get(key)
        if not refresh and self._usable(cached, stale):
            assert cached is not None
            return cached  # the common case: no lock, no checkpoint
        lock = self._locks.setdefault(key, anyio.Lock())
        async with lock:
            cached = self._tokens.get(key)
            if not refresh and self._usable(cached, stale):
                assert cached is not None
                return cached
            token = await self._fetch_token(self._challenge, scopes, self.credential)
            self.tokens_fetched += 1
            self._tokens[key] = token
            return token

    def _usable(self, token: Token | None, stale: str) -> bool:
        return token is not None and token.value != stale and self.clock() < token.refresh_at

    async def _authorise(
        self, request: httpx.Request, scopes: tuple[str, ...], stale: str = ""
    ) -> None:
        if self._challenge is None:
            return
        if self._challenge.scheme == "basic":
            if self.credential is not None:
                request.headers["Authorization"] = basic_authorization(self.credential)
            return
        token = await self.token(scopes, stale=stale)
        if token.value:
            request.headers["Authorization"] = f"Bearer {token.value}"


def basic_authorization(credential: CredentialLike) -> str:
    raw = f"{credential.username}:{credential.password}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")
