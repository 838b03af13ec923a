"""Names in a lookaside: ``<repository path>@sha256=<hex>/signature-N``, validated.

The layout is containers/image's ``lookasideStorageURL``: the base URL, the repository path
(the reference without its host), ``@<algorithm>=<hex>``, then ``signature-1``,
``signature-2``… A repository path is checked against the distribution grammar (so no
``..``, no empty or absolute component) and the digest must be a sha256 digest, so nothing
built here can leave the base it is joined to.
"""

from __future__ import annotations

import re
import urllib.parse

from mirrord.errors import ConfigError, InvalidReferenceError

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_SHA256 = re.compile(r"sha256:([a-f0-9]{64})")
_SCHEMES = ("file", "http", "https")

#: The lookasides containers-common / Red Hat ship in /etc/containers/registries.d for
#: Red Hat's registries (containers-registries.d(5) ``lookaside``, formerly ``sigstore``).
BUILTIN_LOOKASIDES: dict[str, str] = {
    "registry.redhat.io": "https://registry.redhat.io/containers/sigstore",
    "registry.access.redhat.com": "https://access.redhat.com/webassets/docker/content/sigstore",
}


def builtin_lookaside(registry: str) -> str | None:
    """The built-in lookaside base URL for ``registry`` (host[:port]), if any."""
    return BUILTIN_LOOKASIDES.get(registry.lower())


def check_repository(repository: str) -> str:
    """``repository`` (``ns/repo``, no host) if it is a valid repository path."""
    parts = repository.split("/")
    if not repository or not all(_PATH_COMPONENT.fullmatch(p) for p in parts):
        raise InvalidReferenceError(repository, "not a repository path (ns/repo, lowercase)")
    return repository


def digest_hex(digest: str) -> str:
    """The hex part of a sha256 digest; lookaside names are only built for sha256."""
    m = _SHA256.fullmatch(digest)
    if m is None:
        raise InvalidReferenceError(digest, "a lookaside needs a sha256 manifest digest")
    return m.group(1)


def signature_dir(repository: str, digest: str) -> str:
    """``<repository>@sha256=<hex>``: the directory of one manifest's signatures."""
    return f"{check_repository(repository)}@sha256={digest_hex(digest)}"


def signature_name(index: int) -> str:
    if index < 1:
        raise ValueError("signatures are numbered from 1")
    return f"signature-{index}"


def check_lookaside_url(url: str, *, key: str = "lookaside") -> str:
    """``url`` without a trailing slash if it can be a lookaside base: ``file://``,
    ``http://`` or ``https://``, with no user/password (it would be sent in the clear to
    whoever serves signatures), query or fragment. Raises :class:`ConfigError`."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigError(f"{url!r}: a lookaside URL is file://, http:// or https://", key=key)
    if parts.username is not None or parts.password is not None:
        raise ConfigError("a lookaside URL must not carry credentials", key=key)
    if parts.query or parts.fragment:
        raise ConfigError(f"{url!r}: a lookaside URL has no query or fragment", key=key)
    if parts.scheme == "file" and (parts.netloc not in ("", "localhost") or not parts.path):
        raise ConfigError(f"{url!r}: a file:// lookaside is file:///absolute/path", key=key)
    if parts.scheme != "file" and not parts.hostname:
        raise ConfigError(f"{url!r}: no host", key=key)
    return url.rstrip("/")


def signature_url(base: str, repository: str, digest: str, index: int) -> str:
    """``<base>/<repository>@sha256=<hex>/signature-<index>`` (base already checked)."""
    return f"{base.rstrip('/')}/{signature_dir(repository, digest)}/{signature_name(index)}"
