"""Image references: parse, normalise and format, the way the container tools do.

The grammar is distribution's ``reference`` package::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] path-component ["/" path-component]*
    domain     := host [":" port]     (the first component, when it holds "." or ":"
                                       or is "localhost")

Normalisation follows docker/podman: no domain means ``docker.io``, a one-part
docker.io path gains ``library/``, and ``index.docker.io`` is ``docker.io``.
This module is pure: it imports nothing of mirrord but the error type.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from mirrord.errors import InvalidReferenceError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])"
    r"(?::[0-9]+)?"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)  # Go's \w: [A-Za-z0-9_] only
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
_SHA256_HEX = re.compile(r"[a-f0-9]{64}")
_MAX_NAME_LENGTH = 255


@dataclass(frozen=True, slots=True)
class Reference:
    """A normalised image reference.

    ``registry`` is host[:port] as the user wrote it (``docker.io`` for Docker
    Hub); ``repository`` is the path inside it; ``tag`` and ``digest`` are
    optional and may both be set.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository``, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def api_host(self) -> str:
        """The host the distribution API is served from (Docker Hub is special)."""
        return DOCKER_HUB_API_HOST if self.registry == DOCKER_HUB else self.registry

    @property
    def identifier(self) -> str | None:
        """What a manifest request names: the digest when present, else the tag."""
        return self.digest or self.tag

    def with_tag(self, tag: str) -> Reference:
        _check_tag(str(self), tag)
        return replace(self, tag=tag, digest=None)

    def with_digest(self, digest: str) -> Reference:
        _check_digest(str(self), digest)
        return replace(self, tag=None, digest=digest)

    def repository_only(self) -> Reference:
        return replace(self, tag=None, digest=None)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def parse(text: str, *, default_tag: str | None = None) -> Reference:
    """Parse and normalise ``text``; raise :class:`InvalidReferenceError` naming it.

    ``default_tag`` (e.g. ``"latest"``) is filled in when neither tag nor digest
    is given.
    """
    if not text or text != text.strip():
        raise InvalidReferenceError(text, "empty or surrounded by white space")
    if "://" in text:
        raise InvalidReferenceError(text, "a reference has no scheme (drop the '…://')")
    remainder, digest = _split_digest(text)
    remainder, tag = _split_tag(text, remainder)
    registry, repository = _split_domain(text, remainder)
    if tag is None and digest is None and default_tag is not None:
        tag = default_tag
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest)


def parse_repository(text: str) -> Reference:
    """Parse a repository name: a reference that must carry no tag or digest."""
    ref = parse(text)
    if ref.tag or ref.digest:
        raise InvalidReferenceError(text, "expected a repository, without tag or digest")
    return ref


def normalise_registry(host: str) -> str:
    """``index.docker.io`` and friends are ``docker.io``; other hosts are lower-cased."""
    host = host.lower()
    return DOCKER_HUB if host in _DOCKER_HUB_ALIASES else host


def _split_digest(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    remainder, _, digest = text.partition("@")
    _check_digest(text, digest)
    return remainder, digest


def _split_tag(text: str, remainder: str) -> tuple[str, str | None]:
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon <= slash:
        return remainder, None
    tag = remainder[colon + 1 :]
    _check_tag(text, tag)
    return remainder[:colon], tag


def _split_domain(text: str, name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        if not _DOMAIN.fullmatch(first):
            raise InvalidReferenceError(text, f"invalid registry host {first!r}")
        registry, path = normalise_registry(first), rest
    else:
        registry, path = DOCKER_HUB, name
    if not path:
        raise InvalidReferenceError(text, "missing repository name")
    for component in path.split("/"):
        if component != component.lower():
            raise InvalidReferenceError(text, "repository name must be lowercase")
        if not _PATH_COMPONENT.fullmatch(component):
            raise InvalidReferenceError(text, f"invalid repository path component {component!r}")
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(registry) + 1 + len(path) > _MAX_NAME_LENGTH:
        raise InvalidReferenceError(text, f"name longer than {_MAX_NAME_LENGTH} characters")
    return registry, path


def _check_tag(text: str, tag: str) -> None:
    if not _TAG.fullmatch(tag):
        raise InvalidReferenceError(text, f"invalid tag {tag!r}")


def _check_digest(text: str, digest: str) -> None:
    if not _DIGEST.fullmatch(digest):
        raise InvalidReferenceError(text, f"invalid digest {digest!r}")
    algorithm, _, hex_part = digest.partition(":")
    if algorithm == "sha256" and not _SHA256_HEX.fullmatch(hex_part):
        raise InvalidReferenceError(text, "a sha256 digest is 64 lower-case hex characters")
