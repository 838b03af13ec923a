"""The transport interfaces the copy engine talks to."""

from __future__ import annotations

from collections.abc import AsyncIterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from mirrord.core.oci import Descriptor, Manifest


class Response(Protocol):
    """An HTTP answer read whole (``httpx.Response`` is one)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...


class Source(Protocol):
    """Read side: what the copy engine needs of an upstream repository.

    ``get_path`` reads a referrers listing or a manifest by API path (200 and 404 are
    answers, other statuses raise): what :func:`mirrord.signatures.list_referrers` asks.
    """

    registry: str

    async def list_tags(self, repository: str) -> list[str]: ...

    async def head_manifest(self, repository: str, reference: str) -> Descriptor | None: ...

    async def get_manifest(
        self, repository: str, reference: str, expected_digest: str = ""
    ) -> Manifest: ...

    def get_blob(
        self, repository: str, digest: str
    ) -> AbstractAsyncContextManager[AsyncIterable[bytes]]: ...

    async def get_path(self, path: str, headers: Mapping[str, str]) -> Response: ...


class Destination(Protocol):
    """Write side: the mirror.

    ``write_blob`` consumes ``chunks`` completely before the blob becomes
    visible; when the iterator raises (a digest mismatch), nothing is stored.
    ``mount_blob`` returns None when the blob is now present, else an opaque
    upload handle to pass to ``write_blob`` (which then owns it: a write that fails
    cancels it) or, when the blob will not be written after all, to ``cancel_upload``.
    ``cancel_upload`` never raises. ``put_manifest`` returns the subject digest the mirror
    indexed the manifest under through the OCI referrers API (its ``OCI-Subject`` answer),
    None when it did not (no API, no ``subject``, an OCI layout). ``referrers_api`` says
    whether the mirror answers the referrers API for ``repository@digest``.
    """

    description: str

    def repository(self, path: str) -> str: ...

    def reference(self, repository: str, tag_or_digest: str) -> str: ...

    async def ping(self) -> None: ...

    async def list_tags(self, repository: str) -> list[str]: ...

    async def head_manifest(self, repository: str, reference: str) -> Descriptor | None: ...

    async def put_manifest(
        self, repository: str, reference: str, manifest: Manifest
    ) -> str | None: ...

    async def referrers_api(self, repository: str, digest: str) -> bool: ...

    async def delete_manifest(self, repository: str, digest: str) -> None: ...

    async def blob_exists(self, repository: str, digest: str) -> bool: ...

    async def mount_blob(
        self, repository: str, digest: str, from_repository: str
    ) -> str | None: ...

    async def write_blob(
        self,
        repository: str,
        descriptor: Descriptor,
        chunks: AsyncIterable[bytes],
        upload: str | None = None,
    ) -> None: ...

    async def cancel_upload(self, repository: str, upload: str) -> None: ...

    async def aclose(self) -> None: ...
