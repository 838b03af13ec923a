"""What a run asked of each registry, by kind of request, from the registry's access log.

The access log of Debian's docker-registry is the ground truth for both tools: neither
tool's own counters are trusted. At the source, what matters is how many requests (and
manifest GETs, which Docker Hub counts as pulls) a run costs; at the mirror, how many
requests each blob costs before it is there (a HEAD, a mount or an upload's POST, PATCH
and PUT).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from harness.registry import AccessEntry


def _is_ping(route: str) -> bool:
    return route.rstrip("/") == "/v2"


@dataclass
class SourceRequests:
    """The requests a run sent to the source registry, by kind."""

    total: int = 0
    ping: int = 0  # GET /v2/
    tag_list: int = 0
    manifest_get: int = 0
    manifest_head: int = 0
    blob_get: int = 0
    blob_head: int = 0
    other: int = 0
    bytes_sent: int = 0
    protocols: dict[str, int] = field(default_factory=dict)  # "HTTP/2.0" -> requests

    @classmethod
    def of(cls, entries: Iterable[AccessEntry]) -> SourceRequests:
        out = cls()
        protocols: Counter[str] = Counter()
        for e in entries:
            out.total += 1
            out.bytes_sent += e.size
            protocols[e.protocol] += 1
            route = e.route
            if _is_ping(route):
                out.ping += 1
            elif route.endswith("/tags/list"):
                out.tag_list += 1
            elif "/manifests/" in route:
                if e.method == "GET":
                    out.manifest_get += 1
                else:
                    out.manifest_head += 1
            elif "/blobs/" in route:
                if e.method == "GET":
                    out.blob_get += 1
                else:
                    out.blob_head += 1
            else:
                out.other += 1
        out.protocols = dict(protocols)
        return out

    def per_tag(self, tags: int) -> float:
        """Requests per tag, the tag listings and ``GET /v2/`` version checks left out."""
        return (self.total - self.tag_list - self.ping) / tags if tags else 0.0


@dataclass
class MirrorRequests:
    """The requests a run sent to the mirror registry, by kind.

    A blob arrives in the mirror by an upload (``POST …/blobs/uploads/`` answered 202,
    any ``PATCH``, then ``PUT …?digest=`` answered 201; or one monolithic ``POST
    …?digest=`` answered 201) or by a cross-repository mount (``POST …?mount=…&from=…``
    answered 201; a 202 there is a refused mount that starts an upload)."""

    total: int = 0
    ping: int = 0
    tag_list: int = 0
    blob_head: int = 0
    blob_head_found: int = 0  # answered 200: the blob was already there
    blob_get: int = 0
    upload_post: int = 0  # every POST /blobs/uploads/ (mount attempts included)
    mount_attempts: int = 0
    mounted: int = 0  # POST ?mount= answered 201
    monolithic: int = 0  # POST ?digest= answered 201
    patch: int = 0
    put_upload: int = 0
    put_upload_done: int = 0  # answered 201
    manifest_head: int = 0
    manifest_get: int = 0
    manifest_put: int = 0
    other: int = 0
    not_found: int = 0  # a GET or HEAD answered 404: a lookup of what is not there yet
    errors: int = 0  # any other answer >= 400
    protocols: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, entries: Iterable[AccessEntry]) -> MirrorRequests:
        out = cls()
        protocols: Counter[str] = Counter()
        for e in entries:
            out.total += 1
            protocols[e.protocol] += 1
            if e.status == 404 and e.method in ("GET", "HEAD"):
                out.not_found += 1
            elif e.status >= 400:
                out.errors += 1
            out._count(e)
        out.protocols = dict(protocols)
        return out

    def _count(self, e: AccessEntry) -> None:
        route, query = e.route, e.path.partition("?")[2]
        if _is_ping(route):
            self.ping += 1
        elif route.endswith("/tags/list"):
            self.tag_list += 1
        elif "/blobs/uploads/" in route:
            self._upload(e, query)
        elif "/blobs/" in route:
            if e.method == "HEAD":
                self.blob_head += 1
                self.blob_head_found += e.status == 200
            elif e.method == "GET":
                self.blob_get += 1
            else:
                self.other += 1
        elif "/manifests/" in route:
            if e.method == "HEAD":
                self.manifest_head += 1
            elif e.method == "GET":
                self.manifest_get += 1
            elif e.method == "PUT":
                self.manifest_put += 1
            else:
                self.other += 1
        else:
            self.other += 1

    def _upload(self, e: AccessEntry, query: str) -> None:
        params = {p.partition("=")[0] for p in query.split("&") if p}
        if e.method == "POST":
            self.upload_post += 1
            if "mount" in params:
                self.mount_attempts += 1
                self.mounted += e.status == 201
            elif "digest" in params:
                self.monolithic += e.status == 201
        elif e.method == "PATCH":
            self.patch += 1
        elif e.method == "PUT":
            self.put_upload += 1
            self.put_upload_done += e.status == 201
        else:
            self.other += 1

    @property
    def copied(self) -> int:
        """Blobs whose bytes were uploaded."""
        return self.put_upload_done + self.monolithic

    @property
    def blobs(self) -> int:
        """Blobs that arrived: uploaded or mounted."""
        return self.copied + self.mounted

    @property
    def blob_requests(self) -> int:
        """Every request spent on blobs: HEADs, upload/mount POSTs, PATCHes, PUTs."""
        return self.blob_head + self.upload_post + self.patch + self.put_upload

    def per_blob(self) -> float | None:
        return self.blob_requests / self.blobs if self.blobs else None

    def per_tag(self, tags: int) -> float:
        """Requests per tag, tag listings and ``GET /v2/`` left out (as at the source)."""
        return (self.total - self.tag_list - self.ping) / tags if tags else 0.0
