"""mirrord: keep a mirror registry in step with upstream repositories."""

from __future__ import annotations

import sys

# httpx imports its own command-line tool (rich, pygments, click) with itself: ~70 ms of
# every start-up, though mirrord never runs it. Marked absent before httpx is first
# imported, httpx falls back to its stub `httpx.main`; an httpx already imported by the
# process (a test session, an embedding program) is left alone.
if "httpx" not in sys.modules:
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

from mirrord.errors import (
    ConfigError,
    ConnectError,
    CredentialError,
    DigestMismatchError,
    ForbiddenError,
    InvalidReferenceError,
    LockedError,
    ManifestError,
    MethodNotAllowedError,
    MirrordError,
    NameResolutionError,
    NotFoundError,
    NotifyError,
    RateLimitedError,
    RegistryError,
    ServerError,
    StateError,
    StorageError,
    TLSError,
    UnauthorizedError,
    UnsupportedManifestError,
)

__version__ = "0.2.0.dev0"  # the one place the version is defined (pyproject reads it)

__all__ = [
    "ConfigError",
    "ConnectError",
    "CredentialError",
    "DigestMismatchError",
    "ForbiddenError",
    "InvalidReferenceError",
    "LockedError",
    "ManifestError",
    "MethodNotAllowedError",
    "MirrordError",
    "NameResolutionError",
    "NotFoundError",
    "NotifyError",
    "RateLimitedError",
    "RegistryError",
    "ServerError",
    "StateError",
    "StorageError",
    "TLSError",
    "UnauthorizedError",
    "UnsupportedManifestError",
]
