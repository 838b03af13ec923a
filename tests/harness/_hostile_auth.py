"""Authentication of the hostile registry: Basic against fixed users, opaque Bearer tokens
from a `/token` endpoint (on either server), and the catcher's lure challenges."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import urllib.parse

from ._hostile_server import Request, Response

__all__ = ["Auth"]


class Auth:
    """`users` (name -> password); `tokens`: every token issued (by either server)."""

    def __init__(self, users: dict[str, str], repository: str) -> None:
        self.users = users
        self.repository = repository
        self.tokens: set[str] = set()
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every token issued."""
        with self._lock:
            self.tokens.clear()

    def user(self, header: str) -> str | None:
        """The user a `Basic` Authorization value proves, or None."""
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return user if self._known(user, password) else None

    def _known(self, user: str, password: str) -> bool:
        known = self.users.get(user)
        return known is not None and secrets.compare_digest(known, password)

    def challenge(self, kind: str, realm: str) -> Response:
        if kind == "basic":
            value = 'Basic realm="hostile"'
        else:
            value = (f'Bearer realm="{realm}",service="hostile-registry",'
                     f'scope="repository:{self.repository}:pull"')
        return Response.error(401, "UNAUTHORIZED", "authentication required",
                              {"WWW-Authenticate": value})

    def check(self, req: Request, mode: str, realm: str) -> Response | None:
        """None when `req` may pass under `mode` ("none", "basic", "bearer"), else a 401."""
        header = req.headers.get("authorization", "")
        if mode == "basic" and self.user(header) is None:
            return self.challenge("basic", "")
        if mode == "bearer":
            scheme, _, token = header.partition(" ")
            with self._lock:
                ok = scheme.lower() == "bearer" and token.strip() in self.tokens
            if not ok:
                return self.challenge("bearer", realm)
        return None

    def lure(self, req: Request, mode: str, realm: str) -> Response | None:
        """The catcher: a challenge to requests without any Authorization (any passes)."""
        if mode == "none" or req.headers.get("authorization"):
            return None
        return self.challenge(mode, realm)

    def token(self, req: Request, requires_auth: bool) -> Response:
        """`GET /token` (Basic credentials) or `POST /token` (OAuth2 password grant)."""
        user = self.user(req.headers.get("authorization", ""))
        if user is None and req.method == "POST":
            form = urllib.parse.parse_qs(req.body.decode(errors="replace"))
            name, password = form.get("username", [""])[0], form.get("password", [""])[0]
            user = name if self._known(name, password) else None
        if user is None and requires_auth:
            return self.challenge("basic", "")
        token = "hostile-" + secrets.token_hex(16)
        with self._lock:
            self.tokens.add(token)
        body = {"token": token, "access_token": token, "expires_in": 300}
        return Response.json(200, json.dumps(body).encode())
