"""Image references: parse, normalise and format, the way the container tools do.

The grammar is distribution's ``reference`` package::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] path-component ["/" path-component]*
    domain     := host [":" port]     (the first component, when it holds "." or ":"
                                       or is "localhost")

Normalisation follows docker/podman: no domain means ``docker.io``, a one-part
docker.io path gains ``library/``, and ``index.docker.io`` is ``docker.io``.
Tags follow :data:`TAG_RE`, repository paths :data:`REPOSITORY_RE` and digests
:data:`mirrord.core.oci.DIGEST_RE` (sha256 and sha512 only): the configuration, the
registry client, the copy and the OCI layout all check names with these. Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from mirrord.core.oci._digest import DIGEST_HELP, DIGEST_RE
from mirrord.errors import InvalidNameError, InvalidReferenceError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API_HOST = "registry-1.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])"
    r"(?::([0-9]{1,5}))?"
)
TAG_RE = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)  # Go's \w: [A-Za-z0-9_] only
"""The distribution spec's tag grammar: the one mirrord checks every tag against."""
REPOSITORY_RE = re.compile(rf"{_PATH_COMPONENT.pattern}(?:/{_PATH_COMPONENT.pattern})*")
"""A repository path (``library/nginx``): lower-case components separated by ``/``."""
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
        match = _DOMAIN.fullmatch(first)
        if not match or (match.group(1) and not 0 < int(match.group(1)) <= 65535):
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
    if not TAG_RE.fullmatch(tag):
        raise InvalidReferenceError(text, f"invalid tag {tag!r}")


def _check_digest(text: str, digest: str) -> None:
    if not DIGEST_RE.fullmatch(digest):
        raise InvalidReferenceError(text, f"invalid digest {digest!r}: {DIGEST_HELP}")


def is_tag(text: str) -> bool:
    """True when ``text`` is a valid tag (:data:`TAG_RE`)."""
    return TAG_RE.fullmatch(text) is not None


def is_repository(text: str) -> bool:
    """True when ``text`` is a valid repository path of at most 255 characters."""
    return len(text) <= _MAX_NAME_LENGTH and REPOSITORY_RE.fullmatch(text) is not None


def escaped(name: str, limit: int = 150) -> str:
    """``name`` as it may appear in a message or log line: ``repr`` (control characters,
    NUL and newlines escaped), shortened past ``limit`` characters."""
    return repr(name[:limit]) + ("…" if len(name) > limit else "")


_TAG_HELP = "is not a valid tag ([A-Za-z0-9_], then up to 127 of [A-Za-z0-9_.-])"
_REPOSITORY_HELP = (
    "is not a valid repository path (lower-case components of letters, digits and . _ -"
    " separated by /, at most 255 characters)"
)


def check_tag(tag: str, where: str = "") -> str:
    """``tag`` if it is a valid tag; else :class:`InvalidNameError` naming it escaped."""
    if not is_tag(tag):
        raise InvalidNameError(tag, _TAG_HELP, where)
    return tag


def check_repository(repository: str, where: str = "") -> str:
    """``repository`` if it is a valid repository path; else :class:`InvalidNameError`."""
    if not is_repository(repository):
        raise InvalidNameError(repository, _REPOSITORY_HELP, where)
    return repository


def check_reference(reference: str, where: str = "") -> str:
    """A manifest reference: a valid digest, or else a valid tag (never something in
    between: ``sha256:/etc/passwd`` is neither)."""
    if DIGEST_RE.fullmatch(reference):
        return reference
    return check_tag(reference, where)
