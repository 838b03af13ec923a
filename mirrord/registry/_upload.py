"""Blob uploads: one streamed ``PATCH`` (or chunks, or a monolithic ``PUT``) then the
closing ``PUT``; the session is cancelled when the upload fails."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

import httpx

from mirrord.core.oci import Descriptor
from mirrord.errors import DigestMismatchError, MirrordError
from mirrord.registry._http import with_query
from mirrord.registry._session import RegistrySession
from mirrord.registry._urls import api_path


class _UntilFailure:
    """A streamed ``PATCH`` body that ends early, and cleanly, when its source fails.

    The registry then answers the PATCH with the session's URL for what it holds,
    which a ``DELETE`` can cancel. A body cut short mid-request instead leaves its
    bytes in the registry's ``_uploads`` and a session URL distribution 2.8 cannot
    cancel (it answers ``BLOB_UPLOAD_INVALID`` and keeps the data). The source's error
    is kept in ``error`` for the caller to raise; nothing is committed without the
    final ``PUT``, and the verifying stream never hands over the last chunk of
    content that does not match.
    """

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks
        self._started = False
        self.error: MirrordError | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._started:  # a resend (after a 401): the source cannot be read twice
            raise httpx.StreamConsumed()
        self._started = True
        try:
            async for chunk in self._chunks:
                yield chunk
        except MirrordError as error:
            self.error = error


class BlobUploads(RegistrySession):
    """The upload verbs of :class:`~mirrord.registry.RegistryClient`."""

    async def start_upload(self, repository: str) -> str:
        response = await self._request(
            "POST",
            api_path(repository, "blobs/uploads/"),
            f"start upload to {repository}",
            ok=(202,),
        )
        return self._location(response, repository)

    async def upload_blob(
        self,
        repository: str,
        descriptor: Descriptor,
        chunks: AsyncIterable[bytes],
        location: str | None = None,
    ) -> None:
        """Upload ``chunks`` (which the caller verifies) as ``descriptor``'s blob.

        One streamed ``PATCH`` then the closing ``PUT`` by default; ``PATCH``es of
        ``chunk_size`` bytes when that is set.
        The upload session (``location`` when given) is this call's: when the upload
        fails or is cancelled, the session is cancelled too (``DELETE``).
        """
        # The session's latest URL (each PATCH answers with the next one).
        session = [location or await self.start_upload(repository)]
        try:
            what = f"upload {descriptor.digest} to {repository}"
            await self._upload(repository, session, descriptor, chunks, what)
        except BaseException:
            await self.cancel_upload(session[0])
            raise

    async def _upload(
        self,
        repository: str,
        session: list[str],
        descriptor: Descriptor,
        chunks: AsyncIterable[bytes],
        what: str,
    ) -> None:
        body = b""
        if self.options.chunk_size:
            await self._patch_chunks(repository, session, chunks, self.options.chunk_size, what)
        elif descriptor.size <= self.options.monolithic_max:
            body = await _whole(chunks, descriptor.size, what)
        else:
            await self._patch_stream(repository, session, chunks, what)
        await self._request(
            "PUT",
            with_query(session[0], digest=descriptor.digest),
            what,
            ok=(201,),
            content=body,
            headers={
                "Content-Length": str(len(body)),
                "Content-Type": "application/octet-stream",
            },
        )

    async def _patch_stream(
        self, repository: str, session: list[str], chunks: AsyncIterable[bytes], what: str
    ) -> None:
        """The whole blob in one streamed PATCH (chunked transfer encoding), as docker and
        containers/image send it; a source failure ends the body (see _UntilFailure)."""
        body = _UntilFailure(chunks)
        response = await self._request(
            "PATCH",
            session[0],
            what,
            ok=(202,),
            content=body,
            headers={"Content-Type": "application/octet-stream"},
            # A streamed body takes as long as the upstream it comes from (which has its
            # minimum rate); every other request has the deadline.
            deadline=False,
        )
        session[0] = self._location(response, repository)
        if body.error is not None:
            raise body.error

    async def _patch_chunks(
        self,
        repository: str,
        session: list[str],
        chunks: AsyncIterable[bytes],
        chunk_size: int,
        what: str,
    ) -> None:
        """PATCH ``chunks`` in pieces of ``chunk_size``; ``session[0]`` follows the URL."""
        offset = 0
        buffer = bytearray()

        async def send(piece: bytes) -> None:
            nonlocal offset
            response = await self._request(
                "PATCH",
                session[0],
                what,
                ok=(202,),
                content=piece,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"{offset}-{offset + len(piece) - 1}",
                    "Content-Length": str(len(piece)),
                },
            )
            offset += len(piece)
            session[0] = self._location(response, repository)

        async for chunk in chunks:
            buffer += chunk
            while len(buffer) >= chunk_size:
                await send(bytes(buffer[:chunk_size]))
                del buffer[:chunk_size]
        if buffer:
            await send(bytes(buffer))


async def _whole(chunks: AsyncIterable[bytes], size: int, what: str) -> bytes:
    """All of ``chunks`` (the caller's verifying stream), refused past ``size`` bytes.

    Nothing is sent until the stream has ended, so a source that fails, or content the
    verifying stream refuses, never reaches the registry: the session is cancelled."""
    body = bytearray()
    async for chunk in chunks:
        body += chunk
        if len(body) > size:
            raise DigestMismatchError(f"{what}: the source sent more than {size} bytes")
    return bytes(body)
