"""The verification policy (containers-policy.json(5)) as frozen values, and scope lookup.

A :class:`Policy` holds the ``default`` requirements and the scopes of the ``docker``
transport (other transports are parsed, so podman's own file loads, but mirrord only reads
registries). :meth:`Policy.scope_for` picks the requirements for a reference exactly as
containers/image ``requirementsForImageRef`` does for the docker transport:

1. the full identity ``host/ns/repo:tag`` (or ``host/ns/repo@digest``);
2. the repository ``host/ns/repo``, then each parent namespace ``host/ns``, then ``host``
   (with its port, if any), then the wildcards ``*.example.com``, ``*.com`` of the host;
3. the transport's ``""`` scope;
4. the top-level ``default``.

Key material is read when the policy is loaded (``_policy_parse``), so a missing key file is
a configuration error at start-up, not a rejection later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from mirrord.core.reference import Reference, parse
from mirrord.errors import InvalidReferenceError

from ._identity import IdentityRule

SIMPLE_SIGNING = "simple-signing"
COSIGN = "cosign"


@dataclass(frozen=True)
class InsecureAcceptAnything:
    """Every image is accepted (signatures are not looked at)."""

    def describe(self) -> str:
        return "insecureAcceptAnything"


@dataclass(frozen=True)
class Reject:
    """Every image is refused."""

    def describe(self) -> str:
        return "reject"


@dataclass(frozen=True)
class SignedBy:
    """At least one simple-signing (OpenPGP) signature by one of ``keys`` whose payload
    names the manifest's digest and an identity ``signed_identity`` accepts.

    ``keys`` are keyrings as read (binary or ASCII-armoured), one per source; ``sources``
    says where each came from ("keyPath /etc/pki/key.gpg", "keyData") for messages.
    """

    keys: tuple[bytes, ...] = field(repr=False)
    sources: tuple[str, ...]
    signed_identity: IdentityRule
    key_type: str = "GPGKeys"

    def describe(self) -> str:
        return f"signedBy {self.key_type} {', '.join(self.sources)}"


@dataclass(frozen=True)
class SigstoreSigned:
    """At least one cosign key-based signature (``.sig`` attachment layer) by one of
    ``keys`` (PEM public keys: ECDSA, RSA or Ed25519) whose payload names the manifest's
    digest and an identity ``signed_identity`` accepts."""

    keys: tuple[bytes, ...] = field(repr=False)
    sources: tuple[str, ...]
    signed_identity: IdentityRule

    def describe(self) -> str:
        return f"sigstoreSigned {', '.join(self.sources)}"


Requirement = InsecureAcceptAnything | Reject | SignedBy | SigstoreSigned


@dataclass(frozen=True)
class Scope:
    """The requirements that apply to one reference, and where in the policy they are
    (``label``: ``default``, ``transports.docker[""]`` or ``transports.docker["quay.io/org"]``).
    Every requirement must accept the image."""

    label: str
    requirements: tuple[Requirement, ...]

    @property
    def signature_kinds(self) -> frozenset[str]:
        """Which signatures the evaluation reads: ``SIMPLE_SIGNING`` (lookaside blobs) for a
        ``signedBy``, ``COSIGN`` (``.sig`` attachments) for a ``sigstoreSigned``. Empty when
        no signature is looked at, so a caller can skip fetching them."""
        kinds = set()
        for req in self.requirements:
            if isinstance(req, SignedBy):
                kinds.add(SIMPLE_SIGNING)
            elif isinstance(req, SigstoreSigned):
                kinds.add(COSIGN)
        return frozenset(kinds)


@dataclass(frozen=True, eq=False)
class Policy:
    """A parsed policy file. ``docker`` maps each scope of the docker transport to its
    requirements; ``transports`` lists every transport the file names."""

    source: str
    default: tuple[Requirement, ...]
    docker: Mapping[str, tuple[Requirement, ...]]
    transports: tuple[str, ...] = ()

    def scope_for(self, reference: Reference | str) -> Scope:
        """The scope whose requirements apply to ``reference`` (a tag or a digest, not
        both; raises :class:`InvalidReferenceError` otherwise)."""
        ref = parse(reference) if isinstance(reference, str) else reference
        for name in _candidate_scopes(ref):
            if name in self.docker:
                return Scope(f"transports.docker[{_quote(name)}]", self.docker[name])
        if "" in self.docker:
            return Scope('transports.docker[""]', self.docker[""])
        return Scope("default", self.default)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def identity_of(ref: Reference) -> str:
    """docker's PolicyConfigurationIdentity: ``name:tag`` or ``name@digest``."""
    if ref.tag is not None and ref.digest is not None:
        raise InvalidReferenceError(str(ref), "a policy check needs a tag or a digest, not both")
    if ref.tag is not None:
        return f"{ref.name}:{ref.tag}"
    if ref.digest is not None:
        return f"{ref.name}@{ref.digest}"
    raise InvalidReferenceError(str(ref), "a policy check needs a tag or a digest")


def _candidate_scopes(ref: Reference) -> list[str]:
    """The identity, then docker's PolicyConfigurationNamespaces, most specific first."""
    out = [identity_of(ref)]
    name = ref.name
    while True:
        out.append(name)
        slash = name.rfind("/")
        if slash < 0:
            break
        name = name[:slash]
    host = name.partition(":")[0] if not name.startswith("[") else name
    while "." in host:
        host = host[host.index(".") + 1 :]
        out.append(f"*.{host}")
    return out
