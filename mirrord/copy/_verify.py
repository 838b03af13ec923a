"""The verifying blob stream: hash while streaming, release the last chunk only when valid."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

from mirrord.core.oci import Descriptor, Digester


async def verified_chunks(
    chunks: AsyncIterable[bytes], descriptor: Descriptor, progress: list[int] | None = None
) -> AsyncIterator[bytes]:
    """Pass ``chunks`` through, checking size and digest against ``descriptor``.

    The last chunk is held back until the whole stream has been verified, so a
    consumer never receives the complete blob unless it matches: a registry
    upload whose body falls short of its Content-Length is discarded, and an
    OCI-layout write is never renamed into place. Memory stays at two chunks.
    ``progress`` (a one-element list) is incremented by the bytes passed on.
    """
    digester = Digester(descriptor.digest, descriptor.size)
    pending: bytes | None = None
    async for chunk in chunks:
        if not chunk:
            continue
        digester.update(chunk)
        if pending is not None:
            yield pending
            if progress is not None:
                progress[0] += len(pending)
        pending = chunk
    digester.verify()
    if pending is not None:
        yield pending
        if progress is not None:
            progress[0] += len(pending)
