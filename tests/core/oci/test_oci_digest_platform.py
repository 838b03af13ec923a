"""Digests, the verifying Digester, and platforms."""

from __future__ import annotations

import hashlib

import pytest

from mirrord.core.oci import Digester, Platform, compute_digest, parse_digest
from mirrord.errors import DigestMismatchError, ManifestError

DATA = b"hello, registry"
SHA256 = "sha256:" + hashlib.sha256(DATA).hexdigest()


def test_parse_digest() -> None:
    assert parse_digest(SHA256) == SHA256
    sha512 = "sha512:" + hashlib.sha512(DATA).hexdigest()
    assert parse_digest(sha512) == sha512
    for bad in ("sha256:abc", "sha256:" + "A" * 64, "md5:" + "0" * 32, SHA256 + "0", ""):
        with pytest.raises(ManifestError, match=repr(bad).replace("'", ".")):
            parse_digest(bad)


def test_compute_digest() -> None:
    assert compute_digest(DATA) == SHA256
    assert compute_digest(DATA, "sha512") == "sha512:" + hashlib.sha512(DATA).hexdigest()


def test_digester_accepts_exact_content_in_pieces() -> None:
    digester = Digester(SHA256, len(DATA))
    for i in range(0, len(DATA), 4):
        digester.update(DATA[i : i + 4])
    digester.verify()
    assert digester.size == len(DATA)


def test_digester_refuses_more_bytes_than_promised_at_once() -> None:
    digester = Digester(SHA256, 5)
    digester.update(DATA[:5])
    with pytest.raises(DigestMismatchError, match="more than the 5 bytes promised"):
        digester.update(DATA[5:6])


def test_digester_refuses_short_or_different_content() -> None:
    short = Digester(SHA256, len(DATA))
    short.update(DATA[:-1])
    with pytest.raises(DigestMismatchError, match=f"got {len(DATA) - 1} bytes, expected"):
        short.verify()
    other = Digester(SHA256)  # size unknown: only the digest is checked
    other.update(DATA.upper())
    with pytest.raises(DigestMismatchError, match=f"does not match {SHA256}") as caught:
        other.verify()
    assert caught.value.reason == "DigestMismatch"


def test_platforms() -> None:
    assert Platform.parse("linux/arm64/v8") == Platform("linux", "arm64", "v8")
    assert str(Platform.parse("linux/amd64")) == "linux/amd64"
    for bad in ("linux", "linux/", "a/b/c/d"):
        with pytest.raises(ManifestError, match="expected os/arch"):
            Platform.parse(bad)
    assert Platform.from_json(None) is None
    assert Platform.from_json({"os": "linux", "architecture": "arm", "variant": "v6"}) == (
        Platform("linux", "arm", "v6"))


@pytest.mark.parametrize(("wanted", "offered", "matches"), [
    ("linux/amd64", "linux/amd64", True),
    ("linux/amd64", "linux/arm64", False),
    ("linux/amd64", "windows/amd64", False),
    ("linux/arm64", "linux/arm64/v8", True),  # arm64 means v8
    ("linux/arm64/v8", "linux/arm64", True),
    ("linux/arm", "linux/arm/v7", True),  # arm means v7
    ("linux/arm", "linux/arm/v6", False),
    ("linux/arm/v6", "linux/arm/v6", True),
])
def test_platform_matching(wanted: str, offered: str, matches: bool) -> None:
    assert Platform.parse(wanted).matches(Platform.parse(offered)) is matches
