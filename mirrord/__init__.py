"""mirrord: keep a mirror registry in step with upstream repositories."""

from __future__ import annotations

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

__version__ = "0.1.0"

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
