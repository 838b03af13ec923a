"""``signedIdentity`` rules: does the identity a signature claims fit the image being checked?

Semantics follow containers/image ``signature/policy_reference_match.go`` exactly; the
references are normalised the way docker does (``busybox`` is
``docker.io/library/busybox``). ``image`` is the reference the image was asked for (the
source ``registry/repo:tag``, or ``registry/repo@digest``); ``signed`` is the untrusted
``critical.identity.docker-reference`` string of a signature whose cryptography has already
been verified. A signed identity that does not parse never matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mirrord.core.reference import Reference, parse
from mirrord.errors import InvalidReferenceError

# distribution's DomainRegexp (one or more dot-separated components, optional port), and the
# path components of a name: what validateIdentityRemappingPrefix accepts.
_DOMAIN = re.compile(
    r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
    r"(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*"
    r"(?::[0-9]+)?"
)
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")


def _parse(text: str) -> Reference | None:
    try:
        return parse(text)
    except InvalidReferenceError:
        return None


def _name_only(ref: Reference) -> bool:
    return ref.tag is None and ref.digest is None


def _repo_digest_or_exact(intended: Reference, signed: Reference) -> bool:
    """matchRepoDigestOrExactReferenceValues: a tagged image needs the exact signed
    reference; an image by digest only needs the same repository (the digest itself is
    checked against the manifest separately)."""
    if _name_only(signed):
        return False
    if intended.tag is not None:
        return str(signed) == str(intended)
    if intended.digest is not None:
        return signed.name == intended.name
    return False


@dataclass(frozen=True)
class MatchExact:
    """The signed reference must be exactly the image's reference (tag or digest)."""

    def matches(self, image: Reference, signed: str) -> bool:
        ref = _parse(signed)
        if ref is None or _name_only(image) or _name_only(ref):
            return False
        return str(ref) == str(image)

    def describe(self) -> str:
        return "matchExact"


@dataclass(frozen=True)
class MatchRepoDigestOrExact:
    """The default of ``signedBy``: exact for a tag, same repository for a digest."""

    def matches(self, image: Reference, signed: str) -> bool:
        ref = _parse(signed)
        return ref is not None and _repo_digest_or_exact(image, ref)

    def describe(self) -> str:
        return "matchRepoDigestOrExact"


@dataclass(frozen=True)
class MatchRepository:
    """Any signed reference in the image's repository."""

    def matches(self, image: Reference, signed: str) -> bool:
        ref = _parse(signed)
        return ref is not None and ref.name == image.name

    def describe(self) -> str:
        return "matchRepository"


@dataclass(frozen=True)
class ExactReference:
    """The signed reference must be ``docker_reference`` (which has a tag or digest)."""

    docker_reference: str

    def matches(self, image: Reference, signed: str) -> bool:
        wanted, ref = _parse(self.docker_reference), _parse(signed)
        if wanted is None or ref is None or _name_only(wanted) or _name_only(ref):
            return False
        return str(ref) == str(wanted)

    def describe(self) -> str:
        return f"exactReference {self.docker_reference}"


@dataclass(frozen=True)
class ExactRepository:
    """The signed reference must be in repository ``docker_repository``."""

    docker_repository: str

    def matches(self, image: Reference, signed: str) -> bool:
        wanted, ref = _parse(self.docker_repository), _parse(signed)
        return wanted is not None and ref is not None and ref.name == wanted.name

    def describe(self) -> str:
        return f"exactRepository {self.docker_repository}"


@dataclass(frozen=True)
class RemapIdentity:
    """Like matchRepoDigestOrExact, after rewriting an image name under ``prefix`` to the
    same name under ``signed_prefix`` (a mirror checking signatures made for its source)."""

    prefix: str
    signed_prefix: str

    def _remap(self, image: Reference) -> Reference | None:
        name = image.name
        if name != self.prefix and not name.startswith(self.prefix + "/"):
            return image
        rewritten = self.signed_prefix + str(image)[len(self.prefix) :]
        ref = _parse(rewritten)
        # reference.ParseNamed: the result must already be in canonical form.
        if ref is None or str(ref) != rewritten:
            return None
        return ref

    def matches(self, image: Reference, signed: str) -> bool:
        ref = _parse(signed)
        intended = self._remap(image)
        return ref is not None and intended is not None and _repo_digest_or_exact(intended, ref)

    def describe(self) -> str:
        return f"remapIdentity {self.prefix} -> {self.signed_prefix}"


IdentityRule = (
    MatchExact | MatchRepoDigestOrExact | MatchRepository | ExactReference | ExactRepository
    | RemapIdentity
)


def valid_remap_prefix(text: str) -> bool:
    """validateIdentityRemappingPrefix: a host[:port], or host[:port]/path without tag."""
    if _DOMAIN.fullmatch(text):
        return True
    host, sep, path = text.partition("/")
    return bool(
        sep and _DOMAIN.fullmatch(host)
        and all(_PATH_COMPONENT.fullmatch(part) for part in path.split("/"))
    )
