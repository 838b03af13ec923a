"""The generator's inputs and outputs, and the field rules the OpenShift API enforces. Pure."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mirrord.errors import ClusterResourcesError

# config.openshift.io/v1 ImageDigestMirrors.source / ImageTagMirrors.source and
# ImageMirror: the kubebuilder patterns of openshift/api
# config/v1/types_image_digest_mirror_set.go (minus the "*.host" wildcard mirrord never
# writes). Their path component `[a-z0-9]+(?:(?:(?:[._]|__|[-]*)[a-z0-9]+)+)?` allows an
# empty separator, which backtracks exponentially in Python's re on a long non-matching
# name; `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*` is the same language (an empty separator
# only joins two runs of letters), checked against the original in the tests.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*(?::[0-9]+)?"
_PATH = r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
OPENSHIFT_LOCATION_PATTERN = (  # verbatim, for the tests
    r"^((?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:(?:\.(?:[a-zA-Z0-9]|"
    r"[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))+)?(?::[0-9]+)?)(?:(?:/[a-z0-9]+(?:(?:(?:[._]|"
    r"__|[-]*)[a-z0-9]+)+)?)+)?$"
)
LOCATION_RE = re.compile(f"{_HOST}{_PATH}")
# metadata.name of a cluster-scoped object: a DNS-1123 subdomain; mirrord writes a label.
DNS1123_LABEL_RE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
MAX_LOCATION = 255  # distribution's limit on a repository name, host included


@dataclass(frozen=True)
class MirrorRecord:
    """One mirrored repository: images of ``source`` are in ``mirror``.

    ``source`` and ``mirror`` are ``host[:port]/path`` without tag or digest
    (``docker.io/library/nginx``, ``mirror:5000/prefix/library/nginx``).
    ``digest_mirror``: the mirror holds the images by digest (every mirrored stream).
    ``tag_mirror``: the mirror keeps the source's tags current (a configured or a
    scheduled stream), so pulls by tag may go to it too. ``insecure``: clients reach
    the mirror over plain HTTP (or without verifying TLS); ``source_insecure`` the same
    for the source, so a client falling back to it keeps working.
    """

    source: str
    mirror: str
    digest_mirror: bool = True
    tag_mirror: bool = False
    insecure: bool = False
    source_insecure: bool = False

    def __post_init__(self) -> None:
        for what, value in (("source", self.source), ("mirror", self.mirror)):
            check_location(value, what)
            if "/" not in value:
                raise ClusterResourcesError(f"{what} {value!r} names no repository")


@dataclass(frozen=True)
class SignatureScope:
    """A registries.d(5) entry for a mirror ``scope`` (``host[:port][/prefix]``).

    ``lookaside``: the URL clients read simple signatures from (None: no lookaside;
    HOOK(signatures): filled in once mirrord serves a lookaside, see issue 15).
    """

    scope: str
    use_sigstore_attachments: bool = True
    lookaside: str | None = None

    def __post_init__(self) -> None:
        check_location(self.scope, "signature scope")


@dataclass(frozen=True)
class Entry:
    """One ``source`` with its mirrors, in the order clients try them."""

    source: str
    mirrors: tuple[str, ...]


@dataclass(frozen=True)
class ClusterResources:
    """What :func:`~mirrord.cluster.generate` produced.

    ``files``: relative path → content, in the order written; a document with no
    entry is absent (the writer removes a stale one). ``objects``: the Kubernetes
    objects of the YAML files (IDMS, ITMS, ICSP), for an API to serve as JSON.
    """

    name: str
    digest_mirrors: tuple[Entry, ...] = ()
    tag_mirrors: tuple[Entry, ...] = ()
    files: Mapping[str, str] = field(default_factory=dict)
    objects: tuple[Mapping[str, Any], ...] = ()


def check_location(value: str, what: str) -> None:
    """``host[:port][/path]`` as the OpenShift API accepts it; ClusterResourcesError if not."""
    if not isinstance(value, str) or len(value) > MAX_LOCATION or not LOCATION_RE.fullmatch(value):
        raise ClusterResourcesError(
            f"{what} {value!r} cannot be named in an ImageDigestMirrorSet: expected "
            "host[:port][/path] with a DNS host or IPv4 address, a lower-case path, "
            "no tag or digest"
        )


def check_name(name: str) -> None:
    """A DNS-1123 label (valid as any object's ``metadata.name``)."""
    if not DNS1123_LABEL_RE.fullmatch(name):
        raise ClusterResourcesError(
            f"metadata.name {name!r} is not a DNS-1123 label (at most 63 characters of "
            "a-z, 0-9 and '-', starting and ending with a letter or digit)"
        )


def resource_name(mirror_targets: Iterable[str]) -> str:
    """``mirrord-<10 hex>``: stable for a set of mirror targets (``host[:port][/prefix]``).

    Two mirrord instances with different mirrors write objects of different names, so
    one cluster can apply both; the name changes only when the mirror targets do.
    """
    targets = sorted({t.strip("/") for t in mirror_targets})
    if not targets:
        raise ClusterResourcesError("no mirror target to name the resources after")
    digest = hashlib.sha256("\n".join(targets).encode()).hexdigest()
    return f"mirrord-{digest[:10]}"
