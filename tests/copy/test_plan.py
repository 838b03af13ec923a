"""Plan decisions: copy unless the mirror already holds what the source tag names."""

from __future__ import annotations

from mirrord.copy import Action, Imported, decide
from mirrord.core.modes import ImportMode
from mirrord.core.oci import Descriptor

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
    arm = Imported(B.digest, A.digest, "linux/arm64")
    assert decide(A, B, LEGACY, "linux/arm64", arm) is Action.UNCHANGED
    assert decide(A, B, LEGACY, "linux/arm64", None) is Action.COPY  # nothing recorded
    other_index = Imported(B.digest, "sha256:" + "c" * 64, "linux/arm64")
    assert decide(A, B, LEGACY, "linux/arm64", other_index) is Action.COPY
    assert decide(A, B, PRESERVE, "linux/arm64", arm) is Action.COPY


def test_legacy_copies_again_for_another_platform_or_after_preserve_original() -> None:
    arm = Imported(B.digest, A.digest, "linux/arm64")
    assert decide(A, B, LEGACY, "linux/amd64", arm) is Action.COPY  # platform setting changed
    # The mirror holds the whole index (PreserveOriginal before): Legacy wants one platform.
    assert decide(A, A, LEGACY, "linux/amd64", Imported(A.digest, A.digest, "")) is Action.COPY
    # The state says arm64 of A, but the mirror tag points elsewhere (changed by hand).
    assert decide(A, A, LEGACY, "linux/arm64", arm) is Action.COPY


def test_legacy_trusts_the_record_when_the_head_names_no_media_type() -> None:
    """A registry that answers HEAD without the index's Content-Type: no copy loop."""
    untyped = Descriptor("", A.digest, 10)
    arm = Imported(B.digest, A.digest, "linux/arm64")
    assert decide(untyped, B, LEGACY, "linux/arm64", arm) is Action.UNCHANGED

