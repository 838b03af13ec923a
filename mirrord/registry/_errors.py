"""Map registry answers (distribution ``spec.md#error-codes``) to mirrord's exceptions."""

from __future__ import annotations

import contextlib
import email.utils
import json
import socket
import ssl
import time
from typing import TypeVar

import httpx

from mirrord.errors import (
    ConnectError,
    ForbiddenError,
    InvalidCredentialsError,
    MethodNotAllowedError,
    NameResolutionError,
    NotFoundError,
    RateLimitedError,
    RegistryError,
    ServerError,
    TLSError,
    TransferTimeoutError,
    UnauthorizedError,
)

_E = TypeVar("_E", bound=BaseException)

_BY_STATUS: dict[int, type[RegistryError]] = {
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    405: MethodNotAllowedError,
}


def error_from_response(
    response: httpx.Response, registry: str, what: str, credential_source: str = ""
) -> RegistryError:
    """Build the typed error for a non-success ``response`` to the request ``what``.

    The body must already be read (or be a HEAD response, which has none). A 401 to a
    request that sent a user name and password (Basic auth, at the registry or at its
    token endpoint) is :class:`InvalidCredentialsError`: those credentials are wrong.
    """
    status = response.status_code
    code, detail = _first_error(response)
    if status == 401 and credential_source and _sent_basic(response):
        return InvalidCredentialsError(
            registry=registry, credential_source=credential_source, code=code
        )
    message = f"{what}: {status} {printable(response.reason_phrase[:100])}"
    if code:
        message += f" ({code}{': ' + detail if detail else ''})"
    if status == 401 and "insufficient_scope" in response.headers.get("www-authenticate", ""):
        # token.md: the credential is valid, the token it gets lacks this access.
        message += "; the credential was accepted but is not allowed this access"
    if status == 400 and _HTTPS_ONLY in response.text:
        message += f"; {registry} speaks HTTPS: remove 'insecure: true' for it under 'registries:'"
    if status == 401:
        source = credential_source or "anonymous (no credentials found)"
        return UnauthorizedError(
            message, registry=registry, status=status, code=code, credential_source=source
        )
    if status == 405:
        message += "; the registry does not allow this operation"
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("retry-after"))
        return RateLimitedError(message, retry_after=retry_after, registry=registry, code=code)
    if code == "DENIED" and status not in _BY_STATUS:
        return ForbiddenError(message, registry=registry, status=status, code=code)
    cls = _BY_STATUS.get(status, ServerError if status >= 500 else RegistryError)
    return cls(message, registry=registry, status=status, code=code)


def _sent_basic(response: httpx.Response) -> bool:
    """True when the request that got ``response`` carried Basic credentials."""
    try:
        authorization = response.request.headers.get("authorization", "")
    except RuntimeError:  # a response built without a request (tests)
        return False
    return authorization.lower().startswith("basic ")


# What Go's net/http answers a plain HTTP request on a TLS port.
_HTTPS_ONLY = "HTTP request to an HTTPS server"

# OpenSSL's reasons when the server answers a TLS hello in plain HTTP (1.1, 3.x, 3.2+).
_PLAIN_HTTP_REASONS = ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE")


def error_from_exception(exc: httpx.HTTPError, registry: str, what: str) -> RegistryError:
    """Typed error for a transport failure: a name that does not resolve, TLS failures,
    redirect loops and redirects to what is not HTTP are final; timeouts and the rest
    (refused, reset) temporary."""
    if isinstance(exc, httpx.TooManyRedirects | httpx.UnsupportedProtocol):
        return RegistryError(f"{what}: {type(exc).__name__}: {exc}", registry=registry)
    if isinstance(exc, httpx.TimeoutException):
        return TransferTimeoutError(
            f"{what}: timed out: {type(exc).__name__}: {_describe(exc)}", registry=registry
        )
    if (unresolved := _cause(exc, socket.gaierror)) is not None:
        return NameResolutionError(
            f"{what}: cannot reach the registry: its host name does not resolve ({unresolved})",
            registry=registry,
        )
    if not _is_tls_failure(exc):
        return ConnectError(
            f"{what}: cannot reach the registry: {type(exc).__name__}: {_describe(exc)}",
            registry=registry,
        )
    if _speaks_plain_http(exc):
        return TLSError(
            f"{what}: TLS handshake failed, the answer looks like plain HTTP ({exc}); "
            f"if {registry} serves only HTTP, set 'insecure: true' for it under 'registries:' "
            f"in the configuration (or pass --insecure to import-image, --tls-verify=false to "
            "login)",
            registry=registry,
        )
    return TLSError(
        f"{what}: TLS verification failed: {exc} (add the CA with ca_file or "
        f"/etc/containers/certs.d/{registry}/ca.crt; tls_verify: false only for testing)",
        registry=registry,
    )


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def _first_error(response: httpx.Response) -> tuple[str, str]:
    if response.request.method == "HEAD" or not response.content:
        return "", ""
    try:
        errors = json.loads(response.content).get("errors") or []
        first = errors[0]
        detail = first.get("message") or ""
        return printable(str(first.get("code", ""))[:100]), printable(str(detail)[:300])
    except (ValueError, AttributeError, IndexError, TypeError, KeyError, RecursionError):
        return "", ""


def printable(text: str) -> str:
    """Upstream text as it may go into a message: control characters escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _speaks_plain_http(exc: BaseException) -> bool:
    """True when a TLS handshake failed because the other side answered in plain HTTP."""
    texts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        texts.append(f"{getattr(seen, 'reason', '')} {seen}")
        seen = seen.__cause__ or seen.__context__
    text = " ".join(texts).upper().replace(" ", "_")
    return any(reason in text for reason in _PLAIN_HTTP_REASONS)


def _cause(exc: BaseException, kind: type[_E]) -> _E | None:
    """The first exception of ``kind`` in ``exc``'s chain of causes (``exc`` included)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _describe(exc: BaseException) -> str:
    """``exc``'s message, with the OS error under it when that says more (httpx's
    "All connection attempts failed" hides "Connection refused")."""
    text = str(exc) or type(exc).__name__
    seen: BaseException | None = exc.__cause__ or exc.__context__
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror and seen.strerror not in text:
            return f"{text} ({seen.strerror})"
        seen = seen.__cause__ or seen.__context__
    return text


def _is_tls_failure(exc: BaseException) -> bool:
    if _cause(exc, ssl.SSLError) is not None:
        return True
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSL" in type(exc).__name__
