"""Content digests (image-spec ``descriptor.md#digests``): sha256 and sha512 only.

:data:`DIGEST_RE` is mirrord's one digest grammar: ``sha256:`` and 64, or ``sha512:``
and 128, lower-case hex digits. Headers, descriptors, references and OCI layout paths
are all checked against it (``md5:``, ``shake_128:``, ``sha256:/path`` never pass).
"""

from __future__ import annotations

import hashlib
import re

from mirrord.errors import DigestInvalidError, DigestMismatchError

DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
DIGEST_HELP = "expected sha256: and 64, or sha512: and 128, lower-case hex digits"


def is_digest(text: str) -> bool:
    """True when ``text`` is a digest mirrord accepts (see :data:`DIGEST_RE`)."""
    return DIGEST_RE.fullmatch(text) is not None


def parse_digest(text: str, where: str = "") -> str:
    """Return ``text`` if it is a sha256/sha512 digest, else raise DigestInvalidError
    (``where`` says where it was found; the digest is shown escaped and shortened)."""
    if not is_digest(text):
        shown = repr(text[:150]) + ("…" if len(text) > 150 else "")
        prefix = f"{where}: " if where else ""
        raise DigestInvalidError(f"{prefix}invalid digest {shown}: {DIGEST_HELP}")
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
