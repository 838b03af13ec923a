"""A tiny in-memory registry with the OCI 1.1 referrers API (distribution 2.8 has none).

Just enough of the distribution spec for a client to push an image and artifacts whose
`subject` names it, then list them: `GET /v2/`, monolithic blob upload (POST then
PUT ?digest=), blob GET/HEAD, manifest PUT/GET/HEAD by tag or digest (a PUT of a manifest
with a `subject` answers `OCI-Subject`), tag list, and

    GET /v2/<name>/referrers/<digest>[?artifactType=T]

answering an OCI index of the descriptors of every manifest in <name> whose subject is
<digest> (`artifactType`, else the config media type; annotations), filtered server-side
when asked (`OCI-Filters-Applied: artifactType`). `page_size` splits answers into pages
linked with `Link: <...>; rel="next"`; `forged[digest] = (body, headers)` answers that
instead (a hostile upstream). Everything is kept in memory; `requests` records (method,
path). Use it only for the referrers API: real behaviour is Debian's registry.

    with ReferrersRegistry() as reg:
        client = RegistryHTTP(reg.url)      # the harness client pushes as usual
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["OCI_INDEX", "ReferrersRegistry", "build_referrer", "push_referrer"]

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
EMPTY_CONFIG = "application/vnd.oci.empty.v1+json"
_ROUTE = re.compile(r"^/v2/(?P<name>.+?)/(?P<kind>manifests|blobs|referrers|tags)/(?P<rest>.*)$")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_referrer(subject: dict[str, Any], artifact_type: str, payload: bytes,
                   annotations: dict[str, str] | None = None) -> tuple[bytes, dict[str, bytes]]:
    """An OCI 1.1 artifact manifest referring to `subject` (a descriptor): the manifest bytes
    and its blobs (digest -> bytes) to push first. Config is the empty descriptor `{}`."""
    empty = b"{}"
    blobs = {_digest(empty): empty, _digest(payload): payload}
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": EMPTY_CONFIG, "digest": _digest(empty), "size": len(empty)},
        "layers": [{"mediaType": "application/octet-stream", "digest": _digest(payload),
                    "size": len(payload)}],
        "subject": subject,
    }
    if annotations:
        doc["annotations"] = annotations
    return json.dumps(doc, separators=(",", ":")).encode(), blobs


def push_referrer(client: Any, image: Any, artifact_type: str, payload: bytes, *,
                  tag_schema: bool = True) -> tuple[bytes, str]:
    """Push an artifact whose `subject` is `image` (a harness `Image`) into its repository
    with `client` (a harness `RegistryHTTP`), as oras or cosign 2 would; `tag_schema`: also
    add it to the `sha256-<hex>` referrers tag schema index (read, append, push), as those
    clients do against a registry without the referrers API. Returns (manifest, digest)."""
    raw, blobs = build_referrer(image.descriptor(), artifact_type, payload,
                                {"org.example.kind": artifact_type})
    for digest, blob in blobs.items():
        if not client.blob_exists(image.repo, digest):
            client.upload_blob(image.repo, blob, digest)
    digest = client.put_manifest(image.repo, _digest(raw), raw, OCI_MANIFEST)
    if tag_schema:
        tag = "sha256-" + image.digest.split(":", 1)[1]
        found = client.request("GET", f"/v2/{image.repo}/manifests/{tag}",
                               headers={"Accept": OCI_INDEX})
        doc = found.json() if found.status_code == 200 else {
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
        doc["manifests"].append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw),
                                 "artifactType": artifact_type})
        client.put_manifest(image.repo, tag, json.dumps(doc).encode(), OCI_INDEX)
    return raw, digest


class ReferrersRegistry:
    """See the module docstring. Attributes: `url`, `host`, `page_size`, `requests`."""

    def __init__(self, page_size: int | None = None) -> None:
        self.page_size = page_size
        self.requests: list[tuple[str, str]] = []
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}  # (repo, digest)
        self.tags: dict[tuple[str, str], str] = {}
        # subject digest -> (body, headers) answered instead of the computed listing: a
        # hostile upstream's referrers API.
        self.forged: dict[str, tuple[bytes, dict[str, str]]] = {}
        self._lock = threading.Lock()
        handler = type("_Bound", (_Handler,), {"registry": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self.host = f"127.0.0.1:{self._httpd.server_address[1]}"
        self.url = f"http://{self.host}"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> ReferrersRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    # -- the store -------------------------------------------------------------------------
    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> str:
        digest = _digest(raw)
        with self._lock:
            self.manifests[(repo, digest)] = (raw, media_type)
            if not ref.startswith("sha256:"):
                self.tags[(repo, ref)] = digest
            elif ref != digest:
                raise ValueError("digest mismatch")
        return digest

    def resolve(self, repo: str, ref: str) -> tuple[bytes, str, str] | None:
        with self._lock:
            digest = ref if ref.startswith("sha256:") else self.tags.get((repo, ref), "")
            found = self.manifests.get((repo, digest))
        return (found[0], found[1], digest) if found else None

    def referrers(self, repo: str, subject: str, artifact_type: str | None) -> list[dict[str, Any]]:
        out = []
        with self._lock:
            items = sorted(self.manifests.items())
        for (r, digest), (raw, media_type) in items:
            doc = json.loads(raw)
            if r != repo or (doc.get("subject") or {}).get("digest") != subject:
                continue
            kind = doc.get("artifactType") or (doc.get("config") or {}).get("mediaType")
            if artifact_type is not None and kind != artifact_type:
                continue
            desc: dict[str, Any] = {"mediaType": media_type, "digest": digest, "size": len(raw)}
            if kind:
                desc["artifactType"] = kind
            if doc.get("annotations"):
                desc["annotations"] = doc["annotations"]
            out.append(desc)
        return out


class _Handler(BaseHTTPRequestHandler):
    registry: ReferrersRegistry
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              head: bool = False) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _error(self, status: int, code: str) -> None:
        body = json.dumps({"errors": [{"code": code, "message": code.lower()}]}).encode()
        self._send(status, body, {"Content-Type": "application/json"},
                   head=self.command == "HEAD")

    def _route(self, method: str) -> None:
        parts = urllib.parse.urlsplit(self.path)
        self.registry.requests.append((method, self.path))
        if parts.path == "/v2/":
            self._send(200, b"{}", {"Content-Type": "application/json"})
            return
        m = _ROUTE.match(parts.path)
        if not m:
            self._error(404, "NOT_FOUND")
            return
        query = dict(urllib.parse.parse_qsl(parts.query))
        getattr(self, f"_{m['kind']}")(method, m["name"], m["rest"], query)

    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("HEAD")

    def do_PUT(self) -> None:
        self._route("PUT")

    def do_POST(self) -> None:
        self._route("POST")

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _blobs(self, method: str, name: str, rest: str, query: dict[str, str]) -> None:
        if method == "POST" and rest == "uploads/":
            self._body()
            self._send(202, headers={"Location": f"/v2/{name}/blobs/uploads/{uuid.uuid4()}"})
        elif method == "PUT" and rest.startswith("uploads/"):
            data = self._body()
            if _digest(data) != query.get("digest"):
                self._error(400, "DIGEST_INVALID")
                return
            self.registry.blobs[_digest(data)] = data
            self._send(201, headers={"Docker-Content-Digest": _digest(data)})
        elif method in ("GET", "HEAD") and rest in self.registry.blobs:
            self._send(200, self.registry.blobs[rest], {"Docker-Content-Digest": rest},
                       head=method == "HEAD")
        else:
            self._error(404, "BLOB_UNKNOWN")

    def _manifests(self, method: str, name: str, rest: str, query: dict[str, str]) -> None:
        if method == "PUT":
            raw = self._body()
            media_type = self.headers.get("Content-Type", OCI_MANIFEST)
            digest = self.registry.put_manifest(name, rest, raw, media_type)
            headers = {"Docker-Content-Digest": digest,
                       "Location": f"/v2/{name}/manifests/{digest}"}
            subject = (json.loads(raw).get("subject") or {}).get("digest")
            if subject:
                headers["OCI-Subject"] = subject
            self._send(201, headers=headers)
            return
        found = self.registry.resolve(name, rest)
        if found is None:
            self._error(404, "MANIFEST_UNKNOWN")
            return
        raw, media_type, digest = found
        self._send(200, raw, {"Content-Type": media_type, "Docker-Content-Digest": digest},
                   head=method == "HEAD")

    def _tags(self, method: str, name: str, rest: str, query: dict[str, str]) -> None:
        with self.registry._lock:
            tags = sorted(t for (r, t) in self.registry.tags if r == name)
        self._send(200, json.dumps({"name": name, "tags": tags}).encode(),
                   {"Content-Type": "application/json"})

    def _referrers(self, method: str, name: str, rest: str, query: dict[str, str]) -> None:
        if rest in self.registry.forged:
            body, headers = self.registry.forged[rest]
            self._send(200, body, {"Content-Type": OCI_INDEX, **headers})
            return
        artifact_type = query.get("artifactType")
        found = self.registry.referrers(name, rest, artifact_type)
        headers = {"Content-Type": OCI_INDEX}
        if artifact_type:
            headers["OCI-Filters-Applied"] = "artifactType"
        size = self.registry.page_size
        if size:
            start = int(query.get("page", "0"))
            if start + size < len(found):
                extra = f"&artifactType={artifact_type}" if artifact_type else ""
                headers["Link"] = (f'</v2/{name}/referrers/{rest}?page={start + size}{extra}>; '
                                   'rel="next"')
            found = found[start:start + size]
        body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": found}
        self._send(200, json.dumps(body).encode(), headers)
