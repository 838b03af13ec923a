"""Content digests (image-spec ``descriptor.md#digests``): sha256 and sha512."""

from __future__ import annotations

import hashlib
import re

from mirrord.errors import DigestMismatchError, ManifestError

_DIGEST = re.compile(r"(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})")


def parse_digest(text: str) -> str:
    """Return ``text`` if it is a sha256/sha512 digest, else raise ManifestError."""
    if not _DIGEST.fullmatch(text):
        raise ManifestError(f"unsupported or malformed digest {text!r}")
    return text


def compute_digest(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"


class Digester:
    """Hashes content as it streams past and checks it against its descriptor.

    ``update`` raises as soon as more bytes arrive than promised; ``verify``
    raises :class:`DigestMismatchError` when the size or digest differs.
    """

    def __init__(self, digest: str, size: int | None = None) -> None:
        algorithm, _, _ = parse_digest(digest).partition(":")
        self.expected = digest
        self.expected_size = size
        self.size = 0
        self._hash = hashlib.new(algorithm)

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.expected_size is not None and self.size > self.expected_size:
            raise DigestMismatchError(
                f"{self.expected}: more than the {self.expected_size} bytes promised"
            )
        self._hash.update(chunk)

    def verify(self) -> None:
        if self.expected_size is not None and self.size != self.expected_size:
            raise DigestMismatchError(
                f"{self.expected}: got {self.size} bytes, expected {self.expected_size}"
            )
        actual = f"{self._hash.name}:{self._hash.hexdigest()}"
        if actual != self.expected:
            raise DigestMismatchError(f"content digest {actual} does not match {self.expected}")
