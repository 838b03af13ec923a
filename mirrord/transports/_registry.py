"""The mirror as a registry: ``docker://host[:port]/prefix``."""

from __future__ import annotations

from collections.abc import AsyncIterable

from mirrord.core.oci import OCI_INDEX, Descriptor, Manifest, is_digest, parse_digest
from mirrord.core.reference import check_repository
from mirrord.registry import RegistryClient


class RegistryDestination:
    """Mirror repositories live under ``prefix`` in the registry ``client`` talks to."""

    def __init__(self, client: RegistryClient, prefix: str = "") -> None:
        self.client = client
        self.prefix = prefix.strip("/")
        self.description = f"docker://{client.registry}/{self.prefix}".rstrip("/")

    def repository(self, path: str) -> str:
        path = path.strip("/")
        return f"{self.prefix}/{path}" if self.prefix else path

    def reference(self, repository: str, tag_or_digest: str) -> str:
        sep = "@" if is_digest(tag_or_digest) else ":"
        return f"{self.client.registry}/{repository}{sep}{tag_or_digest}"

    async def ping(self) -> None:
        await self.client.ping()

    async def list_tags(self, repository: str) -> list[str]:
        return await self.client.list_tags(repository)

    async def head_manifest(self, repository: str, reference: str) -> Descriptor | None:
        return await self.client.head_manifest(repository, reference)

    async def put_manifest(
        self, repository: str, reference: str, manifest: Manifest
    ) -> str | None:
        return await self.client.put_manifest(repository, reference, manifest)

    async def referrers_api(self, repository: str, digest: str) -> bool:
        """Whether ``GET /v2/<repository>/referrers/<digest>`` answers an index (a 404 is
        a registry without the API, distribution 2.8)."""
        path = f"/v2/{check_repository(repository)}/referrers/{parse_digest(digest)}"
        response = await self.client.get_path(path, {"Accept": OCI_INDEX})
        return response.status_code == 200

    async def delete_manifest(self, repository: str, digest: str) -> None:
        await self.client.delete_manifest(repository, digest)

    async def blob_exists(self, repository: str, digest: str) -> bool:
        return await self.client.head_blob(repository, digest) is not None

    async def mount_blob(self, repository: str, digest: str, from_repository: str) -> str | None:
        return await self.client.mount_blob(repository, digest, from_repository)

    async def write_blob(
        self,
        repository: str,
        descriptor: Descriptor,
        chunks: AsyncIterable[bytes],
        upload: str | None = None,
    ) -> None:
        await self.client.upload_blob(repository, descriptor, chunks, location=upload)

    async def cancel_upload(self, repository: str, upload: str) -> None:
        await self.client.cancel_upload(upload)

    async def aclose(self) -> None:
        await self.client.aclose()
