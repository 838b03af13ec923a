"""Test-image generator and a tiny independent registry client (plain httpx, sync).

Images are built in memory, deterministically from a seed (same seed -> same digests), then
pushed with `push(client, image)`. Each build returns a frozen `Image` record carrying the
manifest's raw bytes, digest and media type and every blob (`Blob`, with its bytes), so tests
can later compare what the mirror serves byte for byte.

    client = RegistryHTTP(registry.url, "alice", "pw")     # Basic or Bearer, handled here
    img = push_image(client, "team/app", "1.0")            # OCI image manifest
    idx = push_index(client, "team/app", "multi", fmt="docker")  # Docker manifest list
    assert client.get_manifest("team/app", "1.0").raw == img.raw

This module does not import mirrord: it is an independent check.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import random
import re
import ssl
import tarfile
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "ALL_MANIFEST_TYPES",
    "DEFAULT_PLATFORMS",
    "DOCKER_CONFIG",
    "DOCKER_LAYER",
    "DOCKER_LIST",
    "DOCKER_MANIFEST",
    "HELM_CHART",
    "HELM_CONFIG",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_MANIFEST",
    "Blob",
    "Corpus",
    "Fetched",
    "Image",
    "RegistryError",
    "RegistryHTTP",
    "build_artifact",
    "build_corpus",
    "build_image",
    "build_index",
    "image_config",
    "make_layer",
    "push",
    "push_artifact",
    "push_blob",
    "push_corpus",
    "push_image",
    "push_index",
    "sha256",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
HELM_CONFIG = "application/vnd.cncf.helm.config.v1+json"
HELM_CHART = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"

DEFAULT_PLATFORMS: tuple[tuple[str, str], ...] = (("linux", "amd64"), ("linux", "arm64"))


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Blob:
    """A blob's bytes and descriptor fields. `diff_id` is set for layers (uncompressed)."""

    media_type: str
    digest: str
    size: int
    data: bytes = field(repr=False, compare=False)
    diff_id: str | None = None

    @classmethod
    def of(cls, data: bytes, media_type: str, diff_id: str | None = None) -> Blob:
        return cls(media_type, sha256(data), len(data), data, diff_id)

    def descriptor(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}


@dataclass(frozen=True)
class Image:
    """A manifest (image, index/list or artifact) as pushed: raw bytes are the truth.

    For an index, `children` are the platform manifests (their `tag` is None) and
    `config`/`layers` are empty. `blobs` gathers every blob, children's included.
    """

    repo: str
    tag: str | None
    media_type: str
    digest: str
    raw: bytes = field(repr=False)
    config: Blob | None = None
    layers: tuple[Blob, ...] = ()
    children: tuple[Image, ...] = ()
    platform: tuple[str, str] | None = None  # (os, architecture) of an image manifest

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def is_index(self) -> bool:
        return self.media_type in (OCI_INDEX, DOCKER_LIST)

    @property
    def blobs(self) -> tuple[Blob, ...]:
        seen: dict[str, Blob] = {}
        for child in self.children:
            for b in child.blobs:
                seen.setdefault(b.digest, b)
        for b in ((self.config,) if self.config else ()) + self.layers:
            seen.setdefault(b.digest, b)
        return tuple(seen.values())

    def manifests(self) -> tuple[Image, ...]:
        """This manifest and its children, children first (the push order)."""
        return (*self.children, self)

    def ref(self, host: str) -> str:
        """`host/repo:tag` (or `host/repo@digest` when untagged)."""
        return f"{host}/{self.repo}:{self.tag}" if self.tag else self.by_digest(host)

    def by_digest(self, host: str) -> str:
        return f"{host}/{self.repo}@{self.digest}"

    def descriptor(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            d["platform"] = _platform_dict(self.platform)
        return d

    def with_repo(self, repo: str, tag: str | None = None) -> Image:
        """The same bytes addressed in another repository (children follow)."""
        kids = tuple(c.with_repo(repo) for c in self.children)
        return Image(repo, tag, self.media_type, self.digest, self.raw, self.config,
                     self.layers, kids, self.platform)


def _platform_dict(platform: tuple[str, str]) -> dict[str, str]:
    os_, arch = platform
    d = {"architecture": arch, "os": os_}
    if arch == "arm64":
        d["variant"] = "v8"
    return d


def _dump(obj: Any, fmt: str) -> bytes:
    # Docker writes 3-space indented JSON; the OCI form here is compact. Neither is the
    # canonical form a client would produce by re-serialising, which is the point.
    if fmt == "docker":
        return json.dumps(obj, indent=3).encode()
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


# -- a tiny registry client ------------------------------------------------------------------
ALL_MANIFEST_TYPES = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_REPO_IN_PATH = re.compile(r"^/v2/(.+?)/(?:manifests|blobs|tags)/")


class RegistryError(Exception):
    """An unexpected answer from a registry (status and body in the message)."""


@dataclass(frozen=True)
class Fetched:
    raw: bytes = field(repr=False)
    media_type: str
    digest: str  # Docker-Content-Digest, or sha256(raw) when absent


class RegistryHTTP:
    """Blocking distribution-spec client for tests; handles Basic and Bearer itself.

    On a 401 it parses `WWW-Authenticate`: Basic -> resend with the credentials; Bearer ->
    fetch a token from the realm (Basic credentials if any, the challenge's scope, else
    `repository:<repo>:pull,push`) and resend. Tokens are cached per repository.
    `verify`: False, True, an SSLContext, or a CA file path (for a TLS registry).
    `token_requests` counts the tokens fetched.
    """

    def __init__(self, base_url: str, username: str | None = None,
                 password: str | None = None, *,
                 verify: bool | str | ssl.SSLContext = True,
                 timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.creds = (username, password) if username is not None else None
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
        self.http = httpx.Client(verify=verify, timeout=timeout, follow_redirects=True)
        self._basic = False
        self._tokens: dict[str, str] = {}
        self.token_requests = 0

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> RegistryHTTP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _auth_header(self, repo: str) -> dict[str, str]:
        if repo in self._tokens:
            return {"Authorization": f"Bearer {self._tokens[repo]}"}
        if self._basic and self.creds:
            token = base64.b64encode(f"{self.creds[0]}:{self.creds[1]}".encode()).decode()
            return {"Authorization": f"Basic {token}"}
        return {}

    def _fetch_token(self, params: dict[str, str], repo: str) -> str:
        query: dict[str, str] = {}
        if "service" in params:
            query["service"] = params["service"]
        # Ask for pull,push on the path's repository whatever the challenge said (the harness
        # pushes right after pulling); keep any other scope the challenge names.
        scopes = [sc for sc in params.get("scope", "").split()
                  if not sc.startswith(f"repository:{repo}:")]
        query["scope"] = " ".join([f"repository:{repo}:pull,push", *scopes] if repo else scopes)
        headers: dict[str, str] = {}
        if self.creds:
            query["account"] = str(self.creds[0])
            token = base64.b64encode(f"{self.creds[0]}:{self.creds[1]}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        resp = self.http.get(params["realm"], params=query, headers=headers)
        self.token_requests += 1
        if resp.status_code != 200:
            raise RegistryError(f"token endpoint: {resp.status_code} {resp.text[:200]}")
        body = resp.json()
        return str(body.get("token") or body["access_token"])

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One request (path relative to the registry, or an absolute URL); authenticates on
        a 401 and retries once. Returns the response whatever its status."""
        url = path if path.startswith("http") else self.base_url + path
        m = _REPO_IN_PATH.match(urllib.parse.urlsplit(url).path)
        repo = m.group(1) if m else ""
        headers = {**kw.pop("headers", {}), **self._auth_header(repo)}
        resp = self.http.request(method, url, headers=headers, **kw)
        if resp.status_code != 401:
            return resp
        scheme, _, rest = resp.headers.get("www-authenticate", "").partition(" ")
        params = dict(_CHALLENGE_PARAM.findall(rest))
        if scheme.lower() == "basic" and self.creds:
            self._basic = True
        elif scheme.lower() == "bearer" and "realm" in params:
            self._tokens[repo] = self._fetch_token(params, repo)
        else:
            return resp
        headers.update(self._auth_header(repo))
        return self.http.request(method, url, headers=headers, **kw)

    def _ok(self, resp: httpx.Response, *codes: int) -> httpx.Response:
        if resp.status_code not in codes:
            raise RegistryError(f"{resp.request.method} {resp.request.url}: "
                                f"{resp.status_code} {resp.text[:300]}")
        return resp

    def ping(self) -> int:
        return self.request("GET", "/v2/").status_code

    def blob_exists(self, repo: str, digest: str) -> bool:
        resp = self.request("HEAD", f"/v2/{repo}/blobs/{digest}")
        return self._ok(resp, 200, 404).status_code == 200

    def get_blob(self, repo: str, digest: str) -> bytes:
        return self._ok(self.request("GET", f"/v2/{repo}/blobs/{digest}"), 200).content

    def upload_blob(self, repo: str, data: bytes, digest: str | None = None) -> str:
        """Monolithic upload: POST /blobs/uploads/, then PUT <Location>?digest=."""
        digest = digest or sha256(data)
        resp = self._ok(self.request("POST", f"/v2/{repo}/blobs/uploads/"), 202)
        location = urllib.parse.urljoin(self.base_url + "/", resp.headers["location"])
        sep = "&" if "?" in location else "?"
        put = self.request("PUT", f"{location}{sep}digest={digest}", content=data,
                           headers={"Content-Type": "application/octet-stream"})
        self._ok(put, 201)
        return digest

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> str:
        resp = self.request("PUT", f"/v2/{repo}/manifests/{ref}", content=raw,
                            headers={"Content-Type": media_type})
        return str(self._ok(resp, 201).headers.get("docker-content-digest", sha256(raw)))

    def get_manifest(self, repo: str, ref: str,
                     accept: Sequence[str] = ALL_MANIFEST_TYPES) -> Fetched:
        resp = self._ok(self.request("GET", f"/v2/{repo}/manifests/{ref}",
                                     headers={"Accept": ", ".join(accept)}), 200)
        return Fetched(resp.content, resp.headers.get("content-type", ""),
                       resp.headers.get("docker-content-digest") or sha256(resp.content))

    def head_manifest(self, repo: str, ref: str,
                      accept: Sequence[str] = ALL_MANIFEST_TYPES) -> str | None:
        """The digest of `repo:ref`, or None when absent."""
        resp = self._ok(self.request("HEAD", f"/v2/{repo}/manifests/{ref}",
                                     headers={"Accept": ", ".join(accept)}), 200, 404)
        return resp.headers.get("docker-content-digest") if resp.status_code == 200 else None

    def delete_manifest(self, repo: str, digest: str) -> None:
        self._ok(self.request("DELETE", f"/v2/{repo}/manifests/{digest}"), 202)

    def tags(self, repo: str, page_size: int | None = None) -> list[str]:
        """All tags (follows `Link` pagination); [] for an unknown repository."""
        out: list[str] = []
        path: str | None = f"/v2/{repo}/tags/list" + (f"?n={page_size}" if page_size else "")
        while path:
            resp = self._ok(self.request("GET", path), 200, 404)
            if resp.status_code == 404:
                return out
            out += resp.json().get("tags") or []
            link = resp.headers.get("link")
            path = link.split(";")[0].strip("<> ") if link else None
        return out

    def catalog(self) -> list[str]:
        """Every repository (follows `Link` pagination: distribution serves at most 1000
        a page and refuses a larger `n`)."""
        out: list[str] = []
        path: str | None = "/v2/_catalog?n=1000"
        while path:
            resp = self._ok(self.request("GET", path), 200)
            out += resp.json().get("repositories") or []
            link = resp.headers.get("link")
            path = link.split(";")[0].strip("<> ") if link else None
        return out


# -- pure builders ---------------------------------------------------------------------------
def make_layer(size: int, seed: int | str, *, media_type: str = OCI_LAYER) -> Blob:
    """A gzip'd tar holding one file of `size` seeded random bytes (so gzip cannot shrink it):
    the blob is `size` plus ~1.5 KiB of tar/gzip overhead. Deterministic for a given seed."""
    payload = random.Random(f"layer:{seed}").randbytes(size)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        info = tarfile.TarInfo(f"data/{seed}.bin")
        info.size, info.mtime, info.mode = size, 0, 0o644
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = buf.getvalue()
    gz = gzip.compress(tar_bytes, compresslevel=1, mtime=0)
    return Blob.of(gz, media_type, diff_id=sha256(tar_bytes))


def image_config(
    layers: Sequence[Blob],
    *,
    platform: tuple[str, str] = ("linux", "amd64"),
    seed: int | str = 0,
    media_type: str = OCI_CONFIG,
) -> Blob:
    """An image config JSON whose rootfs.diff_ids match `layers`."""
    os_, arch = platform
    cfg = {
        "architecture": arch,
        "os": os_,
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": [f"HARNESS_SEED={seed}"], "Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [b.diff_id or b.digest for b in layers]},
        "history": [{"created_by": f"harness layer {i}"} for i in range(len(layers))],
    }
    return Blob.of(json.dumps(cfg, sort_keys=True).encode(), media_type)


def build_image(
    repo: str,
    tag: str | None,
    *,
    fmt: str = "oci",
    seed: int | str = 0,
    layer_sizes: Sequence[int] = (2048,),
    layers: Sequence[Blob] = (),
    platform: tuple[str, str] = ("linux", "amd64"),
    annotations: dict[str, str] | None = None,
) -> Image:
    """An image manifest: `fmt` "oci" (OCI image manifest) or "docker" (schema2).

    `layers` are used first (e.g. a shared base layer), then one fresh layer per `layer_sizes`.
    """
    docker = fmt == "docker"
    if fmt not in ("oci", "docker"):
        raise ValueError(f"fmt must be 'oci' or 'docker', not {fmt!r}")
    layer_type = DOCKER_LAYER if docker else OCI_LAYER
    own = [
        make_layer(size, f"{seed}/{platform[1]}/{i}", media_type=layer_type)
        for i, size in enumerate(layer_sizes)
    ]
    all_layers = [Blob(layer_type, b.digest, b.size, b.data, b.diff_id) for b in layers] + own
    config = image_config(all_layers, platform=platform, seed=seed,
                         media_type=DOCKER_CONFIG if docker else OCI_CONFIG)
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.descriptor(),
        "layers": [b.descriptor() for b in all_layers],
    }
    if annotations and not docker:
        doc["annotations"] = dict(annotations)
    raw = _dump(doc, fmt)
    return Image(repo, tag, media_type, sha256(raw), raw, config, tuple(all_layers),
                 platform=platform)


def build_index(
    repo: str,
    tag: str | None,
    *,
    fmt: str = "oci",
    seed: int | str = 0,
    platforms: Sequence[tuple[str, str]] = DEFAULT_PLATFORMS,
    layer_sizes: Sequence[int] = (2048,),
    layers: Sequence[Blob] = (),
) -> Image:
    """An OCI index ("oci") or Docker manifest list ("docker") over one image per platform."""
    children = tuple(
        build_image(repo, None, fmt=fmt, seed=seed, layer_sizes=layer_sizes, layers=layers,
                    platform=p)
        for p in platforms
    )
    media_type = DOCKER_LIST if fmt == "docker" else OCI_INDEX
    doc = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [c.descriptor() for c in children],
    }
    raw = _dump(doc, fmt)
    return Image(repo, tag, media_type, sha256(raw), raw, children=children)


def build_artifact(repo: str, tag: str | None, *, seed: int | str = 0, size: int = 1024) -> Image:
    """An OCI artifact shaped like a Helm chart (helm config + chart content layer)."""
    chart = make_layer(size, f"chart/{seed}", media_type=HELM_CHART)
    cfg = json.dumps({"name": f"chart-{seed}", "version": "0.1.0", "apiVersion": "v2"}).encode()
    config = Blob.of(cfg, HELM_CONFIG)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [chart.descriptor()],
        "annotations": {"org.opencontainers.image.title": f"chart-{seed}"},
    }
    raw = _dump(doc, "oci")
    return Image(repo, tag, OCI_MANIFEST, sha256(raw), raw, config, (chart,))


# -- pushing ---------------------------------------------------------------------------------
def push_blob(client: RegistryHTTP, repo: str, blob: Blob, *, skip_existing: bool = True) -> None:
    """Monolithic upload (POST, then PUT ?digest=), unless the blob is already there."""
    if skip_existing and client.blob_exists(repo, blob.digest):
        return
    client.upload_blob(repo, blob.data, blob.digest)


def push(client: RegistryHTTP, image: Image, *, tag: str | None = None) -> Image:
    """Push blobs, then children by digest, then the manifest by `tag` (default image.tag;
    by digest when both are None). Returns `image` (retagged if `tag` was given)."""
    if tag is not None:
        image = Image(image.repo, tag, image.media_type, image.digest, image.raw, image.config,
                      image.layers, image.children, image.platform)
    for blob in image.blobs:
        push_blob(client, image.repo, blob)
    for child in image.children:
        client.put_manifest(image.repo, child.digest, child.raw, child.media_type)
    digest = client.put_manifest(image.repo, image.tag or image.digest, image.raw,
                                 image.media_type)
    if digest != image.digest:
        raise RegistryError(f"registry computed {digest}, expected {image.digest}")
    return image


def push_image(client: RegistryHTTP, repo: str, tag: str | None, **kw: Any) -> Image:
    """`push(client, build_image(repo, tag, **kw))`; fmt="docker" for schema2."""
    return push(client, build_image(repo, tag, **kw))


def push_index(client: RegistryHTTP, repo: str, tag: str | None, **kw: Any) -> Image:
    """`push(client, build_index(repo, tag, **kw))`; fmt="docker" for a manifest list."""
    return push(client, build_index(repo, tag, **kw))


def push_artifact(client: RegistryHTTP, repo: str, tag: str | None, **kw: Any) -> Image:
    """`push(client, build_artifact(repo, tag, **kw))`."""
    return push(client, build_artifact(repo, tag, **kw))


# -- corpus ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Corpus:
    """A set of pushed images. `images` in push order; `base` is the layer they all share."""

    images: tuple[Image, ...]
    base: Blob

    @property
    def repos(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.repo for i in self.images))

    def tags(self, repo: str) -> tuple[str, ...]:
        return tuple(i.tag for i in self.images if i.repo == repo and i.tag)

    def get(self, repo: str, tag: str) -> Image:
        for i in reversed(self.images):
            if i.repo == repo and i.tag == tag:
                return i
        raise KeyError(f"{repo}:{tag}")

    @property
    def blobs(self) -> tuple[Blob, ...]:
        seen: dict[str, Blob] = {}
        for i in self.images:
            for b in i.blobs:
                seen.setdefault(b.digest, b)
        return tuple(seen.values())


def build_corpus(
    repos: Iterable[str] = ("corpus/alpha", "corpus/beta", "corpus/gamma"),
    tags: Sequence[str] = ("1.0", "1.1", "2.0", "latest"),
    *,
    seed: int | str = 0,
    layer_size: int = 4096,
    base_size: int = 8192,
) -> Corpus:
    """Build (not push) a small corpus: every image shares one base layer; per repo the
    formats rotate oci image / docker image / oci index / docker list; `latest` is the same
    manifest as the last version tag (two tags, one digest)."""
    base = make_layer(base_size, f"base/{seed}")
    kinds = ("oci", "docker", "oci-index", "docker-list")
    images: list[Image] = []
    for r, repo in enumerate(repos):
        versions = [t for t in tags if t != "latest"]
        last: Image | None = None
        for t, tag in enumerate(versions):
            kind = kinds[(r + t) % len(kinds)]
            fmt = kind.split("-")[0]
            s = f"{seed}/{repo}/{tag}"
            if kind.endswith(("index", "list")):
                last = build_index(repo, tag, fmt=fmt, seed=s, layer_sizes=(layer_size,),
                                   layers=(base,))
            else:
                last = build_image(repo, tag, fmt=fmt, seed=s, layer_sizes=(layer_size,),
                                   layers=(base,))
            images.append(last)
        if "latest" in tags and last is not None:
            images.append(last.with_repo(repo, "latest"))
    return Corpus(tuple(images), base)


def push_corpus(client: RegistryHTTP, corpus: Corpus) -> Corpus:
    """Push every image of `corpus` (shared blobs are uploaded once per repository)."""
    for image in corpus.images:
        push(client, image)
    return corpus
