"""Plan decisions: copy unless the mirror already holds what the source tag names."""

from __future__ import annotations

from mirrord.copy import Action, ImportMode, decide
from mirrord.oci import Descriptor

A = Descriptor("application/vnd.oci.image.index.v1+json", "sha256:" + "a" * 64, 10)
B = Descriptor("application/vnd.oci.image.manifest.v1+json", "sha256:" + "b" * 64, 10)
PRESERVE, LEGACY = ImportMode.PRESERVE_ORIGINAL, ImportMode.LEGACY


def test_missing_in_mirror_is_copied() -> None:
    assert decide(A, None, PRESERVE) is Action.COPY


def test_equal_digests_are_unchanged() -> None:
    assert decide(A, A, PRESERVE) is Action.UNCHANGED
    assert decide(B, B, LEGACY) is Action.UNCHANGED


def test_different_digest_is_copied() -> None:
    assert decide(A, B, PRESERVE) is Action.COPY


def test_legacy_platform_image_taken_from_the_same_index_is_unchanged() -> None:
    assert decide(A, B, LEGACY, imported_from=A.digest) is Action.UNCHANGED
    assert decide(A, B, LEGACY, imported_from="sha256:" + "c" * 64) is Action.COPY
    assert decide(A, B, PRESERVE, imported_from=A.digest) is Action.COPY
