"""A real Docker/OCI token server (the "Bearer" half of distribution's token auth).

It runs `http.server.ThreadingHTTPServer` in a daemon thread on 127.0.0.1 and issues RS256
JWTs with an `x5c` header (the certificate chain, base64 DER) and a libtrust `kid`, the shape
registry.redhat.io and quay.io use and that distribution 2.8's `auth.token` verifies against
its `rootcertbundle` (= `TokenServer.cert_path`).

    GET  /token?service=S&scope=repository:foo/bar:pull,push&scope=...&account=alice
         (Basic credentials optional: none -> an anonymous token with empty access)
    POST /token  (OAuth2 form: grant_type=password|refresh_token, as containerd sends)

Every request is recorded in `TokenServer.requests` (a list of `TokenRequest`).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import math
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .tls import self_signed

__all__ = ["REGISTRY_LEEWAY", "Access", "TokenRequest", "TokenServer", "parse_scope"]

#: distribution 2.8 accepts a token up to 60 s after its `exp` (clock-skew leeway).
REGISTRY_LEEWAY = 60

#: policy(user, type, name, requested_actions) -> granted actions
Policy = Callable[[str | None, str, str, tuple[str, ...]], tuple[str, ...]]


@dataclass(frozen=True)
class Access:
    """One entry of a JWT `access` claim (also one parsed `scope`)."""

    type: str
    name: str
    actions: tuple[str, ...]

    def claim(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "actions": list(self.actions)}


@dataclass(frozen=True)
class TokenRequest:
    """What one request to the token endpoint asked for and got."""

    method: str
    user: str | None  # authenticated user; None when anonymous or rejected
    account: str | None  # the `account` (or OAuth2 `username`) parameter
    service: str | None
    scopes: tuple[str, ...]  # raw scope strings, in order
    granted: tuple[Access, ...]
    status: int
    grant_type: str | None = None  # OAuth2 POST only
    time: float = field(default_factory=time.time)


def parse_scope(scope: str) -> Access | None:
    """`repository:foo/bar:pull,push` -> Access; the name may itself contain ':'."""
    typ, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not typ or not name:
        return None
    return Access(typ, name, tuple(a for a in actions.split(",") if a))


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _libtrust_kid(public_der: bytes) -> str:
    """The key ID libtrust (and so distribution) computes from a public key's DER."""
    enc = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode().rstrip("=")
    return ":".join(enc[i : i + 4] for i in range(0, len(enc), 4))


class TokenServer:
    """Token server bound to 127.0.0.1 on a free port.

    Attributes: `url`, `host`, `realm` (the `/token` URL), `service`, `issuer`,
    `cert_path` (root bundle for the registry), `users`, `ttl` (seconds, settable at runtime),
    `anonymous_pull` (grant `pull` to anonymous requests), `policy` (optional callable
    restricting grants), `fail_next` (list of HTTP statuses to answer the next requests with),
    `requests` (list of `TokenRequest`).

    `leeway_compensation`: distribution accepts tokens `REGISTRY_LEEWAY` seconds past `exp`.
    By default the JWT's `exp` is `iat + ttl - 60`, so the *registry* rejects the token right
    after `ttl` seconds (what `expires_in` says). Set it to 0 for an honest `exp`.
    """

    def __init__(
        self,
        directory: Path,
        users: Mapping[str, str] | None = None,
        *,
        service: str = "mirrord-harness-registry",
        issuer: str = "mirrord-harness-token-issuer",
        ttl: int = 300,
        leeway_compensation: int = REGISTRY_LEEWAY,
    ) -> None:
        self.directory = Path(directory)
        self.users: dict[str, str] = dict(users or {})
        self.service = service
        self.issuer = issuer
        self.ttl = ttl
        self.leeway_compensation = leeway_compensation
        self.anonymous_pull = False
        self.policy: Policy | None = None
        self.fail_next: list[int] = []
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._refresh_tokens: dict[str, str] = {}
        pair = self_signed(self.directory, "token-signer", common_name=issuer, rsa_bits=2048)
        assert isinstance(pair.private_key, rsa.RSAPrivateKey)
        self._key: rsa.RSAPrivateKey = pair.private_key
        self.cert_path = pair.cert_path
        self._x5c = [base64.b64encode(pair.cert_der).decode()]
        self._kid = _libtrust_kid(
            self._key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def start(self) -> TokenServer:
        if self._httpd is not None:
            return self
        handler = type("_BoundHandler", (_Handler,), {"server_obj": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"token-server-{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget recorded requests and runtime overrides (ttl stays)."""
        with self._lock:
            self.requests.clear()
            self.fail_next.clear()
        self.anonymous_pull = False
        self.policy = None

    # -- tokens ----------------------------------------------------------------------------
    def grant(self, user: str | None, scopes: list[str]) -> tuple[Access, ...]:
        granted: list[Access] = []
        for raw in scopes:
            for part in raw.split():
                acc = parse_scope(part)
                if acc is None:
                    continue
                actions: tuple[str, ...]
                if user is None:
                    actions = ("pull",) if self.anonymous_pull and "pull" in acc.actions else ()
                else:
                    actions = acc.actions
                if self.policy is not None:
                    actions = tuple(self.policy(user, acc.type, acc.name, actions))
                if actions:
                    granted.append(Access(acc.type, acc.name, actions))
        return tuple(granted)

    def issue(self, subject: str, access: tuple[Access, ...], ttl: int | None = None) -> str:
        """Mint a signed JWT (also usable directly by tests)."""
        ttl = self.ttl if ttl is None else ttl
        now_f = time.time()
        now = int(now_f)
        header = {"typ": "JWT", "alg": "RS256", "kid": self._kid, "x5c": self._x5c}
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            # rounded up: the token is good for at least `ttl` seconds, at most ttl + 1
            "exp": math.ceil(now_f + ttl) - self.leeway_compensation,
            "nbf": now - 1,
            "iat": now,
            "jti": secrets.token_hex(16),
            "access": [a.claim() for a in access],
        }
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        ).encode()
        sig = self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input.decode()}.{_b64url(sig)}"

    def _response(self, user: str | None, access: tuple[Access, ...]) -> dict[str, Any]:
        token = self.issue(user or "", access)
        issued = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"token": token, "access_token": token, "expires_in": self.ttl, "issued_at": issued}

    def _check_basic(self, header: str | None) -> tuple[bool, str | None]:
        """(ok, user): no header -> (True, None); bad credentials -> (False, None)."""
        if not header:
            return True, None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False, None
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False, None
        ok = user in self.users and secrets.compare_digest(self.users[user], password)
        return ok, (user if ok else None)

    def _record(self, req: TokenRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _take_failure(self) -> int | None:
        with self._lock:
            return self.fail_next.pop(0) if self.fail_next else None

    def handle_get(self, query: dict[str, list[str]], auth: str | None) -> tuple[int, Any]:
        scopes = query.get("scope", [])
        account = query["account"][0] if query.get("account") else None
        service = query["service"][0] if query.get("service") else None
        ok, user = self._check_basic(auth)
        failure = self._take_failure()
        status = failure or (200 if ok else 401)
        if status != 200:
            self._record(TokenRequest("GET", user, account, service, tuple(scopes), (), status))
            return status, {"errors": [{"code": "UNAUTHORIZED", "message": "access denied"}]}
        granted = self.grant(user, scopes)
        self._record(TokenRequest("GET", user, account, service, tuple(scopes), granted, 200))
        return 200, self._response(user, granted)

    def handle_post(self, form: dict[str, list[str]]) -> tuple[int, Any]:
        def one(key: str) -> str | None:
            return form[key][0] if form.get(key) else None

        grant_type, service = one("grant_type"), one("service")
        scopes = form.get("scope", [])
        user: str | None = None
        if grant_type == "password":
            name, password = one("username") or "", one("password") or ""
            if name in self.users and secrets.compare_digest(self.users[name], password):
                user = name
        elif grant_type == "refresh_token":
            user = self._refresh_tokens.get(one("refresh_token") or "")
        status = self._take_failure() or (200 if user is not None else 401)
        account = one("username") if grant_type == "password" else user
        if status != 200:
            self._record(
                TokenRequest("POST", None, account, service, tuple(scopes), (), status, grant_type)
            )
            return status, {"error": "invalid_grant"}
        granted = self.grant(user, scopes)
        self._record(
            TokenRequest("POST", user, account, service, tuple(scopes), granted, 200, grant_type)
        )
        body = self._response(user, granted)
        if one("access_type") == "offline" or grant_type == "refresh_token":
            refresh = secrets.token_urlsafe(24)
            with self._lock:
                self._refresh_tokens[refresh] = user or ""
            body["refresh_token"] = refresh
        return 200, body


class _Handler(BaseHTTPRequestHandler):
    server_obj: TokenServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="mirrord-harness-token"')
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        if parsed.path != "/token":
            self._send(404, {"error": "not found"})
            return
        query = urllib.parse.parse_qs(parsed.query, keep_blank_values=True)
        self._send(*self.server_obj.handle_get(query, self.headers.get("Authorization")))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        if urllib.parse.urlsplit(self.path).path != "/token":
            self._send(404, {"error": "not found"})
            return
        form = urllib.parse.parse_qs(body, keep_blank_values=True)
        self._send(*self.server_obj.handle_post(form))
