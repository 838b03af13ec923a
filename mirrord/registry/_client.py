"""An async client for one registry, with verbs named after the distribution spec.

The session (:mod:`._session`) sends the requests; this class says what they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
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
    LimitExceededError,
    NotFoundError,
    RegistryError,
)
from mirrord.registry._body import content_length, read_bounded, rebuilt
from mirrord.registry._errors import error_from_response
from mirrord.registry._http import json_object, raw_chunks
from mirrord.registry._options import LIMIT_KEYS
from mirrord.registry._session import ERROR_BODY_LIMIT
from mirrord.registry._upload import BlobUploads
from mirrord.registry._urls import api_path, next_page, referrers_or_manifest_path

TAG_PAGE_SIZE = 1000


class RegistryClient(BlobUploads):
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

    async def put_manifest(
        self, repository: str, reference: str, manifest: Manifest
    ) -> str | None:
        """``PUT`` the manifest's exact bytes under a tag or its digest.

        Returns the ``OCI-Subject`` answer (distribution spec 1.1: a registry with the
        referrers API names the subject it indexed the manifest under), None without it."""
        response = await self._request(
            "PUT",
            api_path(repository, "manifests", reference),
            f"PUT manifest {repository}:{reference}",
            ok=(201, 200),
            content=manifest.raw,
            headers={"Content-Type": manifest.media_type},
        )
        subject = response.headers.get("oci-subject")
        return subject.strip() if subject else None

    async def get_path(self, path: str, headers: Mapping[str, str]) -> httpx.Response:
        """``GET`` a referrers listing (``/v2/<name>/referrers/<digest>[?…]``) or a manifest
        (``/v2/<name>/manifests/<reference>``) by its API path, as
        :func:`mirrord.signatures.list_referrers` builds and follows them.

        The path is checked against those two shapes (anything else: RegistryError, nothing
        sent); the answer is read up to ``max_manifest_size``. 200 and 404 are returned (a
        404 tells a registry without the referrers API); other statuses raise as usual."""
        if not referrers_or_manifest_path(path):
            raise RegistryError(f"refused to GET {path[:200]!r}", registry=self.registry)
        return await self._request(
            "GET",
            path,
            f"GET {path[:200]}",
            ok=(200, 404),
            pull="/manifests/" in path,
            headers={"Accept": headers.get("Accept", MANIFEST_ACCEPT)},
            limit=self.options.max_manifest_size,
            key=LIMIT_KEYS["max_manifest_size"],
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



def _not_a_tag(entry: object) -> str:
    """A tag-list entry that is no string, as a text no tag grammar accepts."""
    return f"<{type(entry).__name__} {str(entry)[:100]}>"
