"""An async client for one registry, with verbs named after the distribution spec.

The session (:mod:`._session`) sends the requests; this class says what they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlencode

import anyio
import httpx

from mirrord.core.oci import (
    MANIFEST_ACCEPT,
    Descriptor,
    Manifest,
    is_digest,
    parse_digest,
    parse_manifest,
)
from mirrord.core.reference import check_repository
from mirrord.errors import (
    DigestMismatchError,
    LimitExceededError,
    MirrordError,
    NotFoundError,
    RegistryError,
)
from mirrord.registry._body import content_length, read_bounded, rebuilt
from mirrord.registry._errors import error_from_response
from mirrord.registry._http import json_object, raw_chunks, with_query
from mirrord.registry._options import LIMIT_KEYS
from mirrord.registry._session import ERROR_BODY_LIMIT, RegistrySession
from mirrord.registry._urls import api_path, next_page

TAG_PAGE_SIZE = 1000


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


class RegistryClient(RegistrySession):
    """The distribution-spec verbs over a :class:`RegistrySession`.

    Every name that goes into a URL is checked first (an invalid one raises
    :class:`~mirrord.errors.InvalidNameError`, nothing is sent); every answer is bounded
    (:mod:`._options`)."""

    # -- tags -----------------------------------------------------------------------

    async def list_tags(self, repository: str, page_size: int = TAG_PAGE_SIZE) -> list[str]:
        """Every tag of ``repository``, following ``Link: <…>; rel="next"`` pages.

        The tags are returned as the registry sent them, unchecked (an entry that is no
        string comes back as a ``<type …>`` text that no tag grammar accepts): the
        caller skips invalid ones by name. LimitExceededError past ``max_tag_pages``
        pages or ``max_tags`` tags, or when a page links to one already read."""
        tags_path = api_path(repository, "tags/list")
        url: str | None = f"{tags_path}?n={page_size}"
        tags: list[str] = []
        seen: set[str] = set()
        what = f"list tags of {repository}"
        while url:
            if url in seen:
                raise LimitExceededError(
                    f"{self.registry}: {what}: the pagination Link leads back to a page "
                    f"already read ({url[:200]!r}); a loop, refused"
                )
            seen.add(url)
            if len(seen) > self.options.max_tag_pages:
                raise LimitExceededError(
                    f"{self.registry}: {what}: more than {self.options.max_tag_pages} pages "
                    f"({LIMIT_KEYS['max_tag_pages']}); refused"
                )
            response = await self._request("GET", url, what, ok=(200,))
            found = json_object(response, self.registry, what).get("tags") or []
            if not isinstance(found, list):
                raise RegistryError(f"{what}: `tags` is not a list", registry=self.registry)
            tags.extend(tag if isinstance(tag, str) else _not_a_tag(tag) for tag in found)
            if len(tags) > self.options.max_tags:
                raise LimitExceededError(
                    f"{self.registry}: {what}: more than {self.options.max_tags} tags "
                    f"({LIMIT_KEYS['max_upstream_tags']}); refused"
                )
            url = next_page(response, tags_path, self.registry)
        return tags

    # -- manifests --------------------------------------------------------------------

    async def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        """The manifest's descriptor from ``HEAD``, or None when it does not exist."""
        what = f"HEAD manifest {repository}:{reference}"
        try:
            response = await self._request(
                "HEAD",
                api_path(repository, "manifests", reference),
                what,
                ok=(200,),
                headers={"Accept": MANIFEST_ACCEPT},
            )
        except NotFoundError:
            return None
        digest = response.headers.get("docker-content-digest", "")
        if not digest:
            # Without the header HEAD says nothing useful; only a GET can tell.
            manifest = await self.get_manifest(repository, reference)
            return manifest.descriptor()
        parse_digest(digest, f"{self.registry}: {what}: Docker-Content-Digest")
        size = content_length(response, self.registry, what) or 0
        if size > self.options.max_manifest_size:
            raise self._manifest_too_large(what, size)
        media_type = response.headers.get("content-type", "").split(";")[0]
        return Descriptor(media_type, digest, size)

    def _manifest_too_large(self, what: str, size: int) -> LimitExceededError:
        return LimitExceededError(
            f"{self.registry}: {what}: the manifest is {size} bytes, over the limit of "
            f"{self.options.max_manifest_size} ({LIMIT_KEYS['max_manifest_size']}); refused"
        )

    async def get_manifest(
        self, repository: str, reference: str, expected_digest: str = ""
    ) -> Manifest:
        """``GET`` a manifest, read up to ``max_manifest_size``; its digest is checked
        against ``expected_digest``, else against ``reference`` when that is a digest.

        A ``GET`` is a pull: below the registry's pull floor it is not sent (RateLimitedError
        saying when pulls resume)."""
        if not expected_digest and is_digest(reference):
            expected_digest = reference
        what = f"GET manifest {repository}:{reference}"
        response = await self._request(
            "GET",
            api_path(repository, "manifests", reference),
            what,
            ok=(200,),
            pull=True,
            headers={"Accept": MANIFEST_ACCEPT},
            limit=self.options.max_manifest_size,
            key=LIMIT_KEYS["max_manifest_size"],
        )
        return parse_manifest(
            response.content, response.headers.get("content-type", ""), expected_digest
        )

    async def put_manifest(self, repository: str, reference: str, manifest: Manifest) -> None:
        """``PUT`` the manifest's exact bytes under a tag or its digest."""
        await self._request(
            "PUT",
            api_path(repository, "manifests", reference),
            f"PUT manifest {repository}:{reference}",
            ok=(201, 200),
            content=manifest.raw,
            headers={"Content-Type": manifest.media_type},
        )

    async def delete_manifest(self, repository: str, digest: str) -> None:
        await self._request(
            "DELETE",
            api_path(repository, "manifests", parse_digest(digest)),
            f"DELETE manifest {repository}@{digest}",
            ok=(202, 200),
        )

    # -- blobs --------------------------------------------------------------------------

    async def head_blob(self, repository: str, digest: str) -> int | None:
        """The blob's size, or None when the repository does not have it."""
        what = f"HEAD blob {digest}"
        path = api_path(repository, "blobs", parse_digest(digest))
        try:
            response = await self._request("HEAD", path, what, ok=(200,))
        except NotFoundError:
            return None
        return content_length(response, self.registry, what) or 0

    @asynccontextmanager
    async def get_blob(self, repository: str, digest: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Stream a blob's raw bytes, at the minimum transfer rate (``stall_timeout``).

        A redirect (a CDN) is followed without our Authorization when it leaves the
        registry's origin (httpx drops it); the headers arrive within ``request_timeout``.
        """
        what = f"GET blob {repository}@{digest}"
        request = self.build_request(
            "GET", api_path(repository, "blobs", parse_digest(digest)), what
        )
        borrower = object()  # the stream's own slot, whichever task consumes it
        await self._streams.acquire_on_behalf_of(borrower)
        try:
            async with self._limiter:
                await self._prepare(request)
                try:
                    with anyio.fail_after(self.options.request_timeout):
                        response = await self._transmit(request, what)
                except TimeoutError:
                    raise self._overdue(what) from None
            try:
                if response.status_code != 200:
                    body = await read_bounded(
                        response,
                        self.options,
                        self.registry,
                        what,
                        limit=ERROR_BODY_LIMIT,
                        truncate=True,
                    )
                    raise error_from_response(
                        rebuilt(response, body), self.registry, what, self.credential_source
                    )
                yield raw_chunks(response, self.options, self.registry, what)
            finally:
                await response.aclose()
        finally:
            self._streams.release_on_behalf_of(borrower)

    async def mount_blob(self, repository: str, digest: str, from_repository: str) -> str | None:
        """Cross-repository mount. None when mounted (201); else the upload URL (202)."""
        query = urlencode(
            {"mount": parse_digest(digest), "from": check_repository(from_repository)}
        )
        response = await self._request(
            "POST",
            f"{api_path(repository, 'blobs/uploads/')}?{query}",
            f"mount {digest} from {from_repository}",
            ok=(201, 202),
        )
        if response.status_code == 201:
            return None
        return self._location(response, repository)

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


def _not_a_tag(entry: object) -> str:
    """A tag-list entry that is no string, as a text no tag grammar accepts."""
    return f"<{type(entry).__name__} {str(entry)[:100]}>"
