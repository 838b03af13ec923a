"""The one grammar for names and digests (core/reference.py, core/oci/_digest.py), on the
hostile inputs of issue 10 (tests/harness/hostile_images.py)."""

from __future__ import annotations

import pytest
from harness.hostile_images import BAD_DIGESTS, WEIRD_TAGS

from mirrord.core.limits import KEYS, Limits
from mirrord.core.oci import is_digest, parse_digest, parse_manifest
from mirrord.core.reference import (
    check_reference,
    check_repository,
    check_tag,
    escaped,
    is_repository,
    is_tag,
    parse,
)
from mirrord.core.selection import split_invalid, wanted_invalid
from mirrord.core.units import parse_size
from mirrord.errors import DigestInvalidError, InvalidNameError, InvalidReferenceError

GOOD_TAGS = ["latest", "1.0", "v1.2.3-rc.1", "_x", "A" * 128, "sha256-" + "a" * 64 + ".sig"]


@pytest.mark.parametrize("tag", WEIRD_TAGS)
def test_every_odd_tag_name_is_refused_and_named_escaped(tag: str) -> None:
    assert not is_tag(tag)
    with pytest.raises(InvalidNameError) as caught:
        check_tag(tag, "quay.io/x")
    message = str(caught.value)
    assert caught.value.reason == "InvalidName"
    assert message.startswith("quay.io/x: ")
    assert all(c.isprintable() for c in message), message  # NUL, \n, ESC escaped
    assert escaped(tag) in message


@pytest.mark.parametrize("tag", GOOD_TAGS)
def test_valid_tags_pass(tag: str) -> None:
    assert is_tag(tag) and check_tag(tag) == tag and check_reference(tag) == tag


@pytest.mark.parametrize("digest", sorted(set(BAD_DIGESTS.values()) - {BAD_DIGESTS["wrong"]}))
def test_only_sha256_and_sha512_hex_are_digests(digest: str) -> None:
    assert not is_digest(digest)
    with pytest.raises(DigestInvalidError) as caught:
        parse_digest(digest, "Docker-Content-Digest")
    assert caught.value.reason == "DigestInvalid"
    assert "sha512: and 128" in str(caught.value)
    if not is_tag(digest):  # 64 hex digits without an algorithm are a valid *tag*
        with pytest.raises(InvalidReferenceError):
            check_reference(digest)  # neither a digest nor a tag


def test_sha512_is_a_digest_and_references_use_the_same_grammar() -> None:
    sha512 = "sha512:" + "0" * 128
    assert is_digest(sha512) and check_reference(sha512) == sha512
    assert parse(f"quay.io/a/b@{sha512}").digest == sha512
    for bad in ("md5:" + "0" * 32, "sha256:" + "A" * 64, "sha384:" + "0" * 96):
        with pytest.raises(InvalidReferenceError):
            parse(f"quay.io/a/b@{bad}")


@pytest.mark.parametrize("digest", ["shake_128:00", "md5:d41d8cd98f00b204e9800998ecf8427e",
                                    "foo:bar"])
def test_a_manifest_checked_against_a_foreign_digest_is_digest_invalid(digest: str) -> None:
    with pytest.raises(DigestInvalidError):
        parse_manifest(b"{}", expected_digest=digest)


def test_a_manifest_nested_past_the_recursion_limit_is_a_clean_error() -> None:
    from mirrord.errors import ManifestError

    with pytest.raises(ManifestError, match="nested too deeply"):
        parse_manifest(b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize(("repository", "valid"), [
    ("library/nginx", True), ("a/b/c", True), ("a__b", True), ("x" * 255, True),
    ("x" * 256, False), ("../x", False), ("a//b", False), ("A/b", False), ("a/", False),
    ("a b", False), ("a\x00", False), ("", False),
])
def test_repository_paths(repository: str, valid: bool) -> None:
    assert is_repository(repository) is valid
    if not valid:
        with pytest.raises(InvalidNameError):
            check_repository(repository)


@pytest.mark.parametrize("text", ["127.0.0.1:99999/x", "host:0/x", "host:123456/x"])
def test_a_registry_port_out_of_range_is_an_invalid_reference(text: str) -> None:
    with pytest.raises(InvalidReferenceError, match="invalid registry host"):
        parse(text)


def test_odd_upstream_tags_are_split_off_and_only_selected_ones_count() -> None:
    listed = ["1.0", "a/b", "latest\n", "1.0", "..", "v2"]
    valid, invalid = split_invalid(listed)
    assert valid == ["1.0", "v2"] and invalid == ["a/b", "latest\n", ".."]

    class Params:
        tags = None
        include = ()
        exclude = (__import__("re").compile("/"),)
        semver = None
        newest = None
        max_tags = 50

    assert wanted_invalid(invalid, Params()) == ("latest\n", "..")
    Params.tags = ("1.0",)  # type: ignore[assignment]
    assert wanted_invalid(invalid, Params()) == ()


def test_every_limit_has_a_key_and_sizes_parse() -> None:
    assert set(KEYS) >= {f for f in Limits.__dataclass_fields__}
    assert Limits().max_manifest_size == parse_size("4MiB") == 4 * 1024 * 1024
    assert parse_size("512KiB") == 512 * 1024 and parse_size("5MB") == 5_000_000
    for bad in ("4 XB", "-1", "1e9", "", "9" * 40):
        with pytest.raises(ValueError, match="invalid size"):
            parse_size(bad)
