"""The verifying stream: nothing complete reaches the consumer unless it matches."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import pytest

from mirrord import DigestMismatchError
from mirrord.copy import verified_chunks
from mirrord.core.oci import Descriptor

DATA = [b"a" * 1000, b"b" * 1000, b"c" * 10]


def descriptor(data: bytes, size: int | None = None) -> Descriptor:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return Descriptor("application/octet-stream", digest, len(data) if size is None else size)


async def chunks(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


@pytest.mark.anyio
async def test_matching_stream_passes_through_unchanged_and_counts_progress() -> None:
    progress = [0]
    out = [c async for c in verified_chunks(chunks(DATA), descriptor(b"".join(DATA)), progress)]
    assert out == DATA
    assert progress == [2010]


@pytest.mark.anyio
async def test_wrong_digest_raises_before_the_last_chunk_is_released() -> None:
    received: list[bytes] = []
    wrong = descriptor(b"".join(DATA[:-1]) + b"X" * 10)
    with pytest.raises(DigestMismatchError, match="does not match"):
        async for chunk in verified_chunks(chunks(DATA), wrong):
            received.append(chunk)
    assert received == DATA[:-1], "the consumer must never hold the complete blob"


@pytest.mark.anyio
async def test_too_many_bytes_fail_as_soon_as_they_arrive() -> None:
    received: list[bytes] = []
    short = descriptor(b"".join(DATA), size=1500)
    with pytest.raises(DigestMismatchError, match="more than the 1500 bytes"):
        async for chunk in verified_chunks(chunks(DATA), short):
            received.append(chunk)
    assert received == []


@pytest.mark.anyio
async def test_too_few_bytes_fail_at_the_end() -> None:
    long = descriptor(b"".join(DATA), size=5000)
    with pytest.raises(DigestMismatchError, match="got 2010 bytes, expected 5000"):
        async for _ in verified_chunks(chunks(DATA), long):
            pass
