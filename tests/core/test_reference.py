"""Image references: parsed and normalised the way docker/podman do; bad ones name themselves."""

from __future__ import annotations

import pytest

from mirrord.core.reference import DOCKER_HUB_API_HOST, Reference, parse, parse_repository
from mirrord.errors import InvalidReferenceError, MirrordError

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(("text", "registry", "repository", "tag", "digest", "normalised"), [
    ("nginx", "docker.io", "library/nginx", None, None, "docker.io/library/nginx"),
    ("nginx:1.25", "docker.io", "library/nginx", "1.25", None, "docker.io/library/nginx:1.25"),
    ("bitnami/redis", "docker.io", "bitnami/redis", None, None, "docker.io/bitnami/redis"),
    ("docker.io/nginx", "docker.io", "library/nginx", None, None, "docker.io/library/nginx"),
    ("index.docker.io/library/nginx:latest", "docker.io", "library/nginx", "latest", None,
     "docker.io/library/nginx:latest"),
    ("registry-1.docker.io/nginx", "docker.io", "library/nginx", None, None,
     "docker.io/library/nginx"),
    ("quay.io/prometheus/node-exporter:v1.8.0", "quay.io", "prometheus/node-exporter",
     "v1.8.0", None, "quay.io/prometheus/node-exporter:v1.8.0"),
    ("registry.redhat.io/ubi9/ubi", "registry.redhat.io", "ubi9/ubi", None, None,
     "registry.redhat.io/ubi9/ubi"),
    ("quay.io/nginx", "quay.io", "nginx", None, None, "quay.io/nginx"),  # no library/ there
    ("localhost/app", "localhost", "app", None, None, "localhost/app"),
    ("localhost:5000/team/app:1", "localhost:5000", "team/app", "1", None,
     "localhost:5000/team/app:1"),
    ("127.0.0.1:5101/mirror/ubi9/ubi:9.4", "127.0.0.1:5101", "mirror/ubi9/ubi", "9.4", None,
     "127.0.0.1:5101/mirror/ubi9/ubi:9.4"),
    ("[::1]:5000/app", "[::1]:5000", "app", None, None, "[::1]:5000/app"),
    ("Quay.IO/org/app", "quay.io", "org/app", None, None, "quay.io/org/app"),
    (f"nginx@{DIGEST}", "docker.io", "library/nginx", None, DIGEST,
     f"docker.io/library/nginx@{DIGEST}"),
    (f"quay.io/a/b:v2@{DIGEST}", "quay.io", "a/b", "v2", DIGEST, f"quay.io/a/b:v2@{DIGEST}"),
    ("ghcr.io/a/b.c/d_e/f__g/h-i--j:T_a.g-1", "ghcr.io", "a/b.c/d_e/f__g/h-i--j", "T_a.g-1",
     None, "ghcr.io/a/b.c/d_e/f__g/h-i--j:T_a.g-1"),
])
def test_parse_and_normalise(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None,
    normalised: str,
) -> None:
    ref = parse(text)
    assert ref == Reference(registry, repository, tag, digest)
    assert str(ref) == normalised
    assert parse(str(ref)) == ref  # the normal form parses to itself
    assert ref.name == f"{registry}/{repository}"
    assert ref.identifier == (digest or tag)


def test_docker_hub_api_host() -> None:
    assert parse("nginx").api_host == DOCKER_HUB_API_HOST
    assert parse("quay.io/a/b").api_host == "quay.io"


def test_default_tag_only_when_neither_tag_nor_digest() -> None:
    assert parse("nginx", default_tag="latest").tag == "latest"
    assert parse("nginx:1", default_tag="latest").tag == "1"
    assert parse(f"nginx@{DIGEST}", default_tag="latest").tag is None


def test_with_tag_with_digest_repository_only() -> None:
    ref = parse(f"quay.io/a/b:v1@{DIGEST}")
    assert str(ref.with_tag("v2")) == "quay.io/a/b:v2"
    assert str(ref.with_digest(DIGEST)) == f"quay.io/a/b@{DIGEST}"
    assert str(ref.repository_only()) == "quay.io/a/b"
    with pytest.raises(InvalidReferenceError, match="invalid tag"):
        ref.with_tag("-x")
    with pytest.raises(InvalidReferenceError, match="invalid digest"):
        ref.with_digest("sha256:xyz")


def test_parse_repository_refuses_tag_and_digest() -> None:
    assert parse_repository("quay.io/a/b") == Reference("quay.io", "a/b")
    for text in ("quay.io/a/b:v1", f"quay.io/a/b@{DIGEST}"):
        with pytest.raises(InvalidReferenceError, match="without tag or digest") as caught:
            parse_repository(text)
        assert repr(text) in str(caught.value)


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty"),
    (" nginx", "white space"),
    ("nginx\n", "white space"),
    ("docker://quay.io/a/b", "no scheme"),
    ("Nginx", "lowercase"),
    ("quay.io/Org/app", "lowercase"),
    ("nginx:", "invalid tag ''"),
    ("nginx:-x", "invalid tag '-x'"),
    ("nginx:" + "a" * 129, "invalid tag"),
    ("nginx:t\u00e9st", "invalid tag"),  # tags are ASCII ([A-Za-z0-9_.-])
    ("nginx:\u0661", "invalid tag"),  # an Arabic-Indic digit is not [0-9]
    ("nginx@sha256:abc", "invalid digest"),
    ("nginx@sha256:" + "A" * 64, "and 64, or sha512: and 128, lower-case hex"),
    ("nginx@", "invalid digest"),
    ("quay.io/", "missing repository"),
    ("quay.io//app", "invalid repository path component ''"),
    ("quay.io/a/-b", "invalid repository path component '-b'"),
    ("quay.io/a/b_", "invalid repository path component 'b_'"),
    ("quay.io/a/b___c", "invalid repository path component"),
    ("my_host.example/app", "invalid registry host 'my_host.example'"),
    ("quay.io:port/app", "invalid registry host"),
    ("a/b:c:d", "invalid repository path component 'b:c'"),
    ("quay.io/" + "a" * 250, "longer than 255"),
])
def test_invalid_references_name_themselves(text: str, why: str) -> None:
    with pytest.raises(InvalidReferenceError) as caught:
        parse(text)
    error = caught.value
    assert str(error).startswith(f"invalid reference {text!r}: ")
    assert why in str(error)
    assert error.reference == text
    assert isinstance(error, MirrordError) and isinstance(error, ValueError)
    assert not error.temporary
