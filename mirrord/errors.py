"""The one exception tree of mirrord.

Every error mirrord raises on purpose derives from :class:`MirrordError`. Its
``temporary`` property decides retries: a temporary error (5xx, a connection
reset, a 429) may succeed if tried again; anything else will not. Its ``reason``
is the image-stream condition reason an import failure records.

* MirrordError                      (reason ``InternalError``)
  * InvalidReferenceError           an image reference that does not parse
    * InvalidNameError              a tag or repository name from upstream (reason
                                    ``InvalidName``); never used in a URL, file or state
  * ConfigError                     a configuration that does not load: file, line, key
  * ManifestError                   a malformed manifest, or one mirrord cannot copy
    * UnsupportedManifestError      Docker schema1, unknown media types
    * DigestInvalidError            not ``sha256:`` + 64 hex or ``sha512:`` + 128 hex
                                    (a header, a descriptor, a reference; ``DigestInvalid``)
  * LimitExceededError              upstream data over a cap (``limits:``): the limit, the
                                    upstream and the key that raises it (``LimitExceeded``)
  * DigestMismatchError             content that is not what its descriptor promised
  * StorageError                    the OCI layout mirror cannot be read or written
  * CredentialError                 a credential source that exists but cannot be used
  * StateError                      the state store cannot be opened, migrated, written
    * LockedError                   another run holds the state lock
    * DatabaseUnavailableError      the PostgreSQL state cannot be reached (temporary)
  * ClusterResourcesError           cluster handoff files that cannot be built or written
  * NotifyError                     a notification receiver failed (temporary)
  * ListenError                     the daemon cannot listen on ``server.listen``
  * SubjectFailedError              an attached artifact whose image failed
  * SignatureRejectedError          an image the verification policy refuses
  * LookasideError                  signatures that cannot be fetched from a lookaside
  * RegistryError                   a registry's answer, or no answer (``status``, ``code``)
    * UnauthorizedError             401
    * ForbiddenError                403
    * NotFoundError                 404
    * MethodNotAllowedError         405
    * RateLimitedError              429, or a pull floor reached (temporary; ``retry_after``)
    * ServerError                   5xx (temporary)
    * ConnectError                  no connection, or it broke (temporary; ``Unreachable``)
      * NameResolutionError         the host name does not resolve (never retried)
      * TransferTimeoutError        a request over its deadline, a body below the minimum
                                    rate (temporary: retried, each try bounded; ``Timeout``)
    * TLSError                      TLS failed: verification, plain HTTP (never retried)

How long a temporary error is retried is :mod:`mirrord.registry`'s decision (a time
budget for 429/503 and for connection failures, attempts for the rest).

Messages never contain a secret: credentials are named by their source
("auth file /etc/mirrord/pull-secret.json", "keyring"), never by their value.
:func:`first_error` turns a task group's exception group back into the error that
caused it, so callers see one error, never a group.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class MirrordError(Exception):
    """Root of every error mirrord raises on purpose."""

    reason = "InternalError"

    @property
    def temporary(self) -> bool:
        """True when the same operation may succeed if retried."""
        return False


class InvalidReferenceError(MirrordError, ValueError):
    """An image reference that does not parse; the message names it."""

    def __init__(self, reference: str, why: str) -> None:
        super().__init__(f"invalid reference {reference!r}: {why}")
        self.reference = reference


class InvalidNameError(InvalidReferenceError):
    """A tag or repository name that came from upstream and breaks the distribution
    grammar. The message shows it escaped (``repr``, shortened): control characters, NUL
    and newlines never reach a log line or a terminal as themselves."""

    reason = "InvalidName"

    def __init__(self, name: str, why: str, where: str = "") -> None:
        shown = repr(name[:150]) + ("…" if len(name) > 150 else "")
        MirrordError.__init__(self, f"{where + ': ' if where else ''}{shown} {why}")
        self.reference = name


class ConfigError(MirrordError):
    """A configuration file that is invalid: names the file, line and key path."""

    reason = "InvalidConfiguration"  # never a tag condition: nothing ran

    def __init__(
        self, message: str, *, file: str | None = None, line: int | None = None, key: str = ""
    ) -> None:
        where = file or "<config>"
        if line is not None:
            where = f"{where}:{line}"
        if key:
            where = f"{where}: {key}"
        super().__init__(f"{where}: {message}")
        self.file = file
        self.line = line
        self.key = key


class ManifestError(MirrordError):
    """A manifest that is malformed or of a kind mirrord cannot copy."""


class UnsupportedManifestError(ManifestError):
    """A manifest media type mirrord refuses, such as Docker schema1."""


class DigestInvalidError(ManifestError):
    """A digest mirrord does not accept: only ``sha256:`` with 64 and ``sha512:`` with
    128 lower-case hex digits, wherever it comes from (header, descriptor, reference)."""

    reason = "DigestInvalid"


class LimitExceededError(MirrordError):
    """Upstream data beyond one of mirrord's caps (manifest size, layers, index children
    or depth, tag-list pages or tags, a pagination loop). The message names the limit,
    the upstream and the configuration key that raises it. Never retried."""

    reason = "LimitExceeded"


class DigestMismatchError(MirrordError):
    """Content whose digest or size differs from what its descriptor promised."""

    reason = "DigestMismatch"


class StorageError(MirrordError):
    """The mirror's own storage (an OCI layout directory) could not be read or written."""


class SignatureRejectedError(MirrordError):
    """The verification policy refused an image: the message names the policy file, the
    scope and the requirement that failed, and why. Never retried: the same signatures
    give the same answer."""

    reason = "SignatureRejected"

    def __init__(self, message: str, *, scope: str = "", requirement: str = "") -> None:
        super().__init__(message)
        self.scope = scope
        self.requirement = requirement


class LookasideError(MirrordError):
    """A signature lookaside (``signature-N`` files) could not be read, or served something
    that is not a signature. Unreachable or failing servers are temporary; oversized,
    unrecognised or too many signatures are not."""

    reason = "SignatureUnavailable"

    def __init__(self, message: str, *, temporary: bool = True) -> None:
        super().__init__(message)
        self._temporary = temporary

    @property
    def temporary(self) -> bool:
        return self._temporary


class CredentialError(MirrordError):
    """A credential source that exists but cannot be read or used."""

    reason = "Unauthorized"  # the import fails for want of a usable credential


class StateError(MirrordError):
    """The state store cannot be opened, migrated or written."""


class LockedError(StateError):
    """Another mirrord run holds the state lock."""

    reason = "Locked"  # never a tag condition: nothing ran


class ClusterResourcesError(MirrordError):
    """Cluster resources (ImageDigestMirrorSet, registries.conf…) that cannot be built
    (a name the OpenShift API would refuse) or written."""


class DatabaseUnavailableError(StateError):
    """The state database (PostgreSQL) cannot be reached, or broke off, for now: the
    message names it as ``postgresql://user@host:port/dbname``, never with a password."""

    @property
    def temporary(self) -> bool:
        return True


class NotifyError(MirrordError):
    """A notification receiver refused or could not be reached."""

    @property
    def temporary(self) -> bool:
        return True


class ListenError(MirrordError):
    """The daemon cannot listen on its configured address (in use, not permitted)."""


class SubjectFailedError(MirrordError):
    """An attached artifact (a signature, an SBOM) not copied: its image failed."""

    reason = "SubjectFailed"


class RegistryError(MirrordError):
    """A registry answered with an error, or could not be reached.

    ``registry`` is the host[:port]; ``status`` the HTTP status (0 when no answer
    came); ``code`` the first OCI error code of the body (``MANIFEST_UNKNOWN``…).
    """

    def __init__(
        self,
        message: str,
        *,
        registry: str = "",
        status: int = 0,
        code: str = "",
        credential_source: str = "",
    ) -> None:
        prefix = f"{registry}: " if registry else ""
        suffix = f" (credentials from {credential_source})" if credential_source else ""
        super().__init__(f"{prefix}{message}{suffix}")
        self.registry = registry
        self.status = status
        self.code = code
        self.credential_source = credential_source

    @property
    def temporary(self) -> bool:
        return self.status >= 500 or self.status == 408  # 408: the server timed out waiting


class UnauthorizedError(RegistryError):
    """401: the credentials were refused (or none were found)."""

    reason = "Unauthorized"


class ForbiddenError(RegistryError):
    """403: authenticated, but not allowed."""

    reason = "Forbidden"


class NotFoundError(RegistryError):
    """404: unknown repository, manifest or blob."""

    reason = "NotFound"


class MethodNotAllowedError(RegistryError):
    """405: the registry does not allow this verb (deletes disabled, read-only)."""


class RateLimitedError(RegistryError):
    """429: too many requests. ``retry_after`` is in seconds (None when not given)."""

    reason = "RateLimited"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: str) -> None:
        super().__init__(message, status=429, **kwargs)
        self.retry_after = retry_after

    @property
    def temporary(self) -> bool:
        return True


class ServerError(RegistryError):
    """5xx from the registry."""


class ConnectError(RegistryError):
    """The registry could not be reached, or the connection broke mid-request."""

    reason = "Unreachable"

    @property
    def temporary(self) -> bool:
        return True


class TransferTimeoutError(ConnectError):
    """A request past its overall deadline, or a body slower than the minimum transfer
    rate (stalled or trickled). Temporary: retried, and every attempt is bounded."""

    reason = "Timeout"


class NameResolutionError(ConnectError):
    """The registry's host name does not resolve: retrying will not make it resolve."""

    @property
    def temporary(self) -> bool:
        return False


class TLSError(RegistryError):
    """TLS verification failed; never retried, never silently downgraded."""

    reason = "TLSError"

    @property
    def temporary(self) -> bool:
        return False


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first MirrordError in ``group`` (however nested); else its only error, when it
    holds one; else the group itself."""
    for leaf in group.exceptions:
        if isinstance(leaf, BaseExceptionGroup):
            found = first_error(leaf)
            if isinstance(found, MirrordError):
                return found
        elif isinstance(leaf, MirrordError):
            return leaf
    sole: BaseException = group
    while isinstance(sole, BaseExceptionGroup) and len(sole.exceptions) == 1:
        sole = sole.exceptions[0]
    return sole


@contextlib.contextmanager
def ungrouped() -> Iterator[None]:
    """Re-raise an exception group escaping the block as :func:`first_error` of it::

    with ungrouped():
        async with anyio.create_task_group() as tg:
            ...
    """
    try:
        yield
    except BaseExceptionGroup as group:
        raise first_error(group) from None
