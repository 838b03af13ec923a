"""signedIdentity rules against containers/image's own test tables
(signature/policy_reference_match_test.go), so the semantics are theirs, case for case."""

from __future__ import annotations

import json

import pytest

from mirrord.core.reference import parse
from mirrord.errors import ConfigError
from mirrord.signatures import (
    ExactReference,
    ExactRepository,
    MatchExact,
    MatchRepoDigestOrExact,
    MatchRepository,
    RemapIdentity,
    parse_policy,
)

RHEL = "registry.access.redhat.com/rhel7/rhel:7.2.3"
RHEL_UNTAGGED = "registry.access.redhat.com/rhel7/rhel"
D = "@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
D2 = "@sha256:" + "a" * 64
BAD = "UPPERCASE_IS_INVALID_IN_DOCKER_REFERENCES"

EXACT = [  # prmExactMatchTestTable (symmetric)
    ("busybox:latest", "busybox:latest", True), (RHEL, RHEL, True),
    ("busybox" + D, "busybox" + D, True), ("library/busybox:latest", "busybox:latest", True),
    ("docker.io/library/busybox:latest", "busybox:latest", True),
    ("busybox:latest", "busybox:notlatest", False), ("busybox:latest", "notbusybox:latest", False),
    ("busybox:latest", "hostname/library/busybox:notlatest", False),
    ("busybox:latest", RHEL, False), ("busybox" + D, "notbusybox" + D, False),
    ("busybox:latest", "busybox" + D, False), ("busybox" + D, "busybox" + D2, False),
    ("busybox", "busybox:latest", False), ("busybox", "busybox" + D, False),
    ("busybox", "busybox", False), ("busybox:latest" + D, "busybox:latest" + D, True),
    ("busybox:latest" + D, "busybox:latest" + D2, False),
    ("busybox:latest" + D, "busybox" + D, False), ("busybox:latest" + D, "busybox:latest", False),
]
REPOSITORY = [  # prmRepositoryMatchTestTable (symmetric)
    ("busybox:latest", "busybox:notlatest", True), (RHEL + "tagsuffix", RHEL, True),
    ("library/busybox:latest", "busybox:notlatest", True),
    ("busybox:latest", "busybox" + D, True), ("busybox" + D, "busybox" + D2, True),
    ("busybox", "busybox:notlatest", True), (RHEL, RHEL_UNTAGGED, True),
    ("docker.io/library/busybox", "busybox", True),
    ("busybox:latest", "notbusybox:latest", False),
    ("hostname/library/busybox:latest", "busybox:notlatest", False),
    ("busybox:latest", RHEL, False), ("busybox" + D, "notbusybox" + D, False),
    ("busybox:latest" + D, "busybox:latest", True),
]
REPO_DIGEST_OR_EXACT = [  # matchRepoDigestOrExactTestTable (image, signature)
    ("busybox:latest", "busybox:notlatest", False), (RHEL + "tagsuffix", RHEL, False),
    ("busybox", "busybox:latest", False), ("busybox:latest", "busybox", False),
    ("busybox", "busybox" + D, False), ("busybox" + D, "busybox", False),
    (RHEL, RHEL_UNTAGGED, False), ("busybox", "busybox", False),
    ("busybox:latest", "busybox" + D, False), ("busybox" + D, "busybox:latest", True),
    ("busybox" + D, "busybox" + D2, True), ("busybox:latest" + D, "busybox:latest", False),
    ("busybox:latest" + D, "busybox:notlatest", False),
    ("busybox:latest", "busybox:latest" + D, False),
    ("busybox:latest" + D, "busybox:latest" + D2, False),
]


def both_ways(table: list[tuple[str, str, bool]]) -> list[tuple[str, str, bool]]:
    return table + [(b, a, r) for a, b, r in table]


@pytest.mark.parametrize(("image", "signed", "result"), both_ways(EXACT))
def test_match_exact_and_exact_reference(image: str, signed: str, result: bool) -> None:
    assert MatchExact().matches(parse(image), signed) is result
    assert ExactReference(image).matches(parse("unrelated/x:1"), signed) is result


@pytest.mark.parametrize(("image", "signed", "result"), both_ways(REPOSITORY))
def test_match_repository_and_exact_repository(image: str, signed: str, result: bool) -> None:
    assert MatchRepository().matches(parse(image), signed) is result
    assert ExactRepository(image).matches(parse("unrelated/x:1"), signed) is result


@pytest.mark.parametrize(("image", "signed", "result"), REPO_DIGEST_OR_EXACT
                         + [t for t in both_ways(EXACT) if t[2]]
                         + [t for t in both_ways(REPOSITORY) if not t[2]])
def test_match_repo_digest_or_exact(image: str, signed: str, result: bool) -> None:
    assert MatchRepoDigestOrExact().matches(parse(image), signed) is result
    # remapIdentity that never rewrites is matchRepoDigestOrExact
    never = RemapIdentity("never-causes-a-rewrite.example", "never-causes-a-rewrite.example")
    assert never.matches(parse(image), signed) is result


@pytest.mark.parametrize("signed", [BAD, "", "INVALID", "busybox:-tag", "a//b:1"])
def test_unparsable_signed_identities_never_match(signed: str) -> None:
    image = parse("busybox:latest")
    for rule in (MatchExact(), MatchRepoDigestOrExact(), MatchRepository(),
                 ExactReference("busybox:latest"), ExactRepository("busybox"),
                 RemapIdentity("docker.io", "docker.io")):
        assert rule.matches(image, signed) is False


@pytest.mark.parametrize(("prefix", "signed_prefix", "image", "signed", "result"), [
    ("does-not-match.com", "does-not-match.rewritten", "busybox:latest", "busybox:latest", True),
    ("does-not-match.com", "does-not-match.rewritten", "busybox:latest", "notbusybox:latest",
     False),
    ("mirror.example", "public.com", "mirror.example/busybox:1", "public.com/busybox:1", True),
    ("mirror.example", "public.com", "mirror.example/busybox:1", "public.com/busybox:not1", False),
    ("mirror.example", "docker.io/library", "mirror.example/busybox:latest", "busybox:latest",
     True),
    ("mirror.example", "docker.io/library", "mirror.example/alpine:latest", "busybox:latest",
     False),
    ("docker.io/library", "original.com", "copied:latest", "original.com/copied:latest", True),
    ("docker.io/library", "original.com", "copied:latest", "original.com/ns/copied:latest", False),
    ("busybox", "example.com/busybox", "busybox:latest", "example.com/busybox:latest", False),
    ("docker.io/library/busybox", "busybox", "docker.io/library/busybox:latest",
     "busybox:latest", False),
    # prefix matching is per path component, and ports are part of the host
    ("example.com:5000", "public.com", "example.com:50000/image:1", "public.com/image:1", False),
    ("example.com/ns", "public.com/ns", "example.com/ns2/image:1", "public.com/ns2/image:1",
     False),
    ("example.com/ns", "public.com/x", "example.com/ns/image:1", "public.com/x/image:1", True),
    ("example.com/ns/image", "public.com/y", "example.com/ns/image" + D, "public.com/y:any",
     True),
])
def test_remap_identity(prefix: str, signed_prefix: str, image: str, signed: str,
                        result: bool) -> None:
    assert RemapIdentity(prefix, signed_prefix).matches(parse(image), signed) is result


@pytest.mark.parametrize(("prefix", "valid"), [
    ("example.com", True), ("example.com:5000", True), ("example.com/ns/repo", True),
    ("localhost:5000/a", True), ("docker.io/library", True), ("example.com/ns:tag", False),
    ("example.com/NS", False), ("", False), ("example.com/", False), ("a//b", False),
    ("example.com" + D, False),
])
def test_remap_prefix_validation(prefix: str, valid: bool) -> None:
    identity = {"type": "remapIdentity", "prefix": prefix, "signedPrefix": "example.org"}
    doc = json.dumps({"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyData": "eA==",
                                   "signedIdentity": identity}]})
    if valid:
        parse_policy(doc)
    else:
        with pytest.raises(ConfigError, match=r"signedIdentity\.prefix"):
            parse_policy(doc)
