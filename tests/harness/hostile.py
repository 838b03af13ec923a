"""A programmable hostile registry on loopback (issue 10): what a real registry cannot do.

    with HostileRegistry() as reg:        # or the `hostile_registry` fixture (fresh per test)
        reg.url, reg.host                 # "http://127.0.0.1:PORT", "127.0.0.1:PORT"
        reg.repository                    # "hostile/app" (the only repository it knows)
        reg.image, reg.doc                # the valid OCI image (images.Image) every tag serves
        reg.reference("latest")           # "127.0.0.1:PORT/hostile/app:latest"
        reg.path("manifests", tag)        # "/v2/hostile/app/manifests/<tag, %-encoded>"

Honest by default: `GET /v2/`, `/v2/_catalog`, `tags/list` (n/last pagination), manifests
HEAD/GET by tag or digest, blobs HEAD/GET, so skopeo or mirrord can copy `reg.image`.
Everything below is a knob; `reg.reset()` puts all of them back (and cuts open connections).

Tag lists and pagination (`reg.behave(...)`, fields of `Behaviour`):
    reg.behave(tags=WEIRD_TAGS)               # every listed tag resolves to reg.image, also
                                              # odd names, when the client can send the path
    reg.behave(tags=GeneratedTags(1_000_000)) # lazy, streamed as one chunked JSON document
    reg.behave(page_size=1)                   # server-side page cap: one Link per tag
    reg.behave(page_size=10, link_base=reg.catcher.url)   # Link to another host:port
    reg.behave(page_size=10, pagination="loop")      # Link always back to the first page
    reg.behave(pagination="endless")                 # fresh tags and a Link, forever

Documents (hostile_images.py), served by tag and by digest (children and aliases too):
    reg.serve_tag("big", huge_manifest(200 * MiB, reg.image))
    reg.serve_tag("wide", many_layers(100_000, reg.image))
    reg.serve_tag("deep", nested_index(reg.doc, depth=50))
    reg.serve_tag("loop", cyclic_index(reg.doc))

Faults (faults.py; route names or regexes over the decoded path; `times`, `fraction`):
    reg.on("manifests", Headers({"Docker-Content-Digest": BAD_DIGESTS["foo"]}))
    reg.on("manifests", Headers({"Docker-Content-Digest": None}))           # missing header
    reg.on("manifests", Headers({"Content-Type": OCI_INDEX}), methods="HEAD") # HEAD/GET differ
    reg.on(f"/blobs/{reg.layer.digest}$", Corrupt("flip" | "longer" | "shorter"))
    reg.on("blobs", Trickle(interval=2.0)) / Stall() / Stall(seconds=3) / Endless()
    reg.on("blobs", Redirect())               # 307 to the catcher, which serves the blob
    reg.on("manifests", Status(429, retry_after=1), times=3) / Status(503) / Status(401)
    reg.on("blobs", Reset(after_bytes=100))   # RST mid-body; Reset() resets before answering

TLS: `HostileRegistry(tls=True)` serves both over HTTPS (`reg.ca_file`, `reg.ssl_context()`);
`catcher_tls=True` only the catcher (a foreign realm over HTTPS, the registry over HTTP).

Auth: `behave(auth="basic")` demands `users` (default harness ALICE) by Basic;
`behave(auth="bearer")` sends a Bearer challenge whose realm is this server's `/token`, or
`behave(realm=reg.catcher.realm)` the catcher's; the token endpoints (both servers) want
Basic credentials unless `token_requires_auth=False`, and the registry accepts any token
either issued. `catcher_challenge="basic"|"bearer"` makes the catcher answer 401 to requests
without credentials (a lure for clients that only send credentials when asked).

The catcher (`reg.catcher`) is a second server that serves the same content honestly (no
faults, no auth) and records everything; test with `reg.catcher.log.assert_no_credentials()`.
Request logs: `reg.log` / `reg.catcher.log` (reqlog.RequestLog): `count`, `select`,
`assert_no_request`, `authorizations()`. `reg.errors` holds exceptions raised inside the fake
itself (the fixture fails the test if there are any).
"""

from __future__ import annotations

import json
import shutil
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from . import ALICE
from ._hostile_auth import Auth
from ._hostile_server import HarnessHTTPServer, Request, Response
from ._hostile_tags import tags_page
from .faults import Action, Rule, RuleSet
from .hostile_images import Doc
from .images import Blob, Image, build_image
from .reqlog import RequestLog
from .tls import self_signed

__all__ = ["Behaviour", "Catcher", "HostileRegistry"]


@dataclass(frozen=True)
class Behaviour:
    """The tag-list, pagination and auth knobs (`HostileRegistry.behave(**fields)`)."""

    tags: Sequence[str] = ("1.0", "latest")
    page_size: int | None = None  # server-side cap on a page (None: the client's `n`, or all)
    pagination: Literal["honest", "loop", "endless"] = "honest"
    link_base: str | None = None  # "http://host:port" put before each Link (None: relative)
    auth: Literal["none", "basic", "bearer"] = "none"
    realm: str | None = None  # Bearer realm (None: this server's /token)
    token_requires_auth: bool = True
    catcher_challenge: Literal["none", "basic", "bearer"] = "none"


class Catcher:
    """The second server: honest content, a full request log (headers included)."""

    def __init__(self, tls: bool) -> None:
        self.log = RequestLog("catcher")
        self.scheme = "https" if tls else "http"
        self._server: HarnessHTTPServer | None = None

    @property
    def port(self) -> int:
        return self._server.port if self._server else 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def authorizations(self) -> list[str]:
        return self.log.authorizations()


class HostileRegistry:
    """See the module docstring. `users`: the Basic credentials it accepts; `seed`: the RNG
    behind `fraction` rules. `tls`: serve HTTPS (both servers; `catcher_tls` overrides it for
    the catcher) with a self-signed certificate, `ca_file`, written to `directory` (default:
    a temporary directory removed at `stop()`)."""

    def __init__(self, repository: str = "hostile/app", *,
                 users: Mapping[str, str] | None = None, seed: int = 0, tls: bool = False,
                 catcher_tls: bool | None = None, directory: Path | None = None) -> None:
        self.repository = repository
        self.tls = tls
        self.ca_file: Path | None = None
        self._directory = directory
        self._own_directory: Path | None = None
        self.auth = Auth(dict(users) if users is not None else {ALICE.username: ALICE.password},
                         repository)
        self.image: Image = build_image(repository, "latest", seed="hostile",
                                        layer_sizes=(2048, 1024))
        self.doc = Doc.from_image(self.image)
        self.rules = RuleSet(seed)
        self.log = RequestLog("hostile")
        self.catcher = Catcher(tls if catcher_tls is None else catcher_tls)
        self.errors: list[BaseException] = []
        self.behaviour = Behaviour()
        self._lock = threading.Lock()
        self._tags: dict[str, Doc] = {}
        self._by_digest: dict[str, Doc] = {}
        self._unmeasured: list[Doc] = []
        self._docs: list[Doc] = []
        self._server: HarnessHTTPServer | None = None
        self.serve(self.doc)

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self._server.port if self._server else 0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}"

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What to pass as httpx `verify=` to trust these servers (True without TLS)."""
        return ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else True

    def reference(self, tag: str) -> str:
        return f"{self.host}/{self.repository}:{tag}"

    def path(self, kind: str, ref: str = "") -> str:
        """`/v2/<repository>/<kind>/<ref>` with `ref` percent-encoded (dot segments too,
        which URL normalisation would collapse), so any odd tag name reaches the fake."""
        quoted = urllib.parse.quote(ref, safe="")
        if ref in (".", ".."):
            quoted = quoted.replace(".", "%2E")
        return f"/v2/{self.repository}/{kind}/{quoted}"

    @property
    def config(self) -> Blob:
        assert self.image.config is not None
        return self.image.config

    @property
    def layer(self) -> Blob:
        """The image's first layer."""
        return self.image.layers[0]

    def _tls_context(self) -> ssl.SSLContext:
        if self.ca_file is None:
            if self._directory is None:
                self._own_directory = Path(tempfile.mkdtemp(prefix="hostile-tls-"))
            directory = self._directory or self._own_directory
            assert directory is not None
            pair = self_signed(directory, "hostile")
            self.ca_file = pair.cert_path
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.ca_file, self.ca_file.with_suffix(".key"))
        return ctx

    def start(self) -> HostileRegistry:
        if self._server is None:
            tls = self._tls_context() if self.tls or self.catcher.scheme == "https" else None
            self._server = HarnessHTTPServer(self, "hostile", tls if self.tls else None)
            self.catcher._server = HarnessHTTPServer(
                self, "catcher", tls if self.catcher.scheme == "https" else None)
            self._server.start()
            self.catcher._server.start()
        return self

    def stop(self) -> None:
        """Stop both servers: cut every connection and wait for the handlers."""
        for server in (self._server, self.catcher._server):
            if server is not None:
                server.stop()
        self._server = self.catcher._server = None
        if self._own_directory is not None:
            shutil.rmtree(self._own_directory, ignore_errors=True)
            self._own_directory = self.ca_file = None

    def __enter__(self) -> HostileRegistry:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def interrupt(self) -> None:
        """Wake every stalled or trickling answer and cut every open connection."""
        for server in (self._server, self.catcher._server):
            if server is not None:
                server.interrupt()

    def reset(self) -> None:
        """Back to honest: default behaviour, no rules, default tags, empty logs."""
        self.interrupt()
        self.rules.clear()
        self.behaviour = Behaviour()
        with self._lock:
            self._tags.clear()
            self._by_digest.clear()
            self._unmeasured.clear()
            self._docs.clear()
        self.serve(self.doc)
        self.auth.reset()
        self.log.clear()
        self.catcher.log.clear()
        self.errors.clear()

    # -- knobs -----------------------------------------------------------------------------
    def behave(self, **changes: Any) -> Behaviour:
        """Change `Behaviour` fields (unknown names raise TypeError); returns the new one."""
        self.behaviour = replace(self.behaviour, **changes)
        return self.behaviour

    def on(self, route: str, action: Action, *, methods: str | Iterable[str] | None = None,
           times: int | None = None, fraction: float | None = None) -> Rule:
        """Add a fault rule (faults.py); returns the `Rule` (see `rule.hits`)."""
        return self.rules.add(route, action, methods=methods, times=times, fraction=fraction)

    def serve(self, doc: Doc) -> Doc:
        """Serve `doc` and its children by digest (and by their aliases)."""
        with self._lock:
            for d in doc.walk():
                self._docs.append(d)
                for alias in d.aliases:
                    self._by_digest[alias] = d
                if d.measured:
                    self._by_digest[d.digest] = d
                else:
                    self._unmeasured.append(d)
        return doc

    def serve_tag(self, tag: str, doc: Doc, *, listed: bool = True) -> Doc:
        """Serve `doc` under `tag`; add the tag to a plain tag list unless `listed=False`."""
        self.serve(doc)
        with self._lock:
            self._tags[tag] = doc
        tags = self.behaviour.tags
        if listed and isinstance(tags, tuple | list) and tag not in tags:
            self.behave(tags=(*tags, tag))
        return doc

    def authorizations(self) -> list[str]:
        return self.log.authorizations()

    # -- the server's side (App protocol) ----------------------------------------------------
    def log_for(self, role: str) -> RequestLog:
        return self.log if role == "hostile" else self.catcher.log

    def actions_for(self, role: str, method: str, path: str) -> list[Action]:
        return self.rules.match(method, path) if role == "hostile" else []

    def redirect_base(self) -> str:
        return self.catcher.url

    def answer(self, req: Request) -> Response:
        if req.path.startswith("/token"):
            return self.auth.token(req, self.behaviour.token_requires_auth)
        b = self.behaviour
        if req.role == "catcher":
            denied = self.auth.lure(req, b.catcher_challenge, self.catcher.realm)
        else:
            denied = self.auth.check(req, b.auth, b.realm or self.realm)
        if denied is not None:
            return denied
        if req.raw_path in ("/v2", "/v2/"):
            return Response.json(200, b"{}", {"Docker-Distribution-API-Version": "registry/2.0"})
        if req.raw_path == "/v2/_catalog":
            return Response.json(200, json.dumps({"repositories": [self.repository]}).encode())
        prefix = f"/v2/{self.repository}/"
        if not req.raw_path.startswith(prefix):
            return Response.error(404, "NAME_UNKNOWN", "repository name not known to registry")
        kind, _, rest = req.raw_path[len(prefix):].partition("/")
        ref = urllib.parse.unquote(rest)
        if req.method not in ("GET", "HEAD"):
            return Response.error(405, "UNSUPPORTED", "this registry is read-only")
        if kind == "tags" and rest == "list":
            return self._tags_page(req)
        if kind == "manifests":
            return self._manifest(ref)
        if kind == "blobs":
            return self._blob(ref)
        return Response.error(404, "NOT_FOUND", "no such route")

    # -- content -----------------------------------------------------------------------------
    def _find(self, ref: str) -> tuple[Doc, str] | None:
        """(document, digest to report) for a tag or digest."""
        with self._lock:
            if ref not in self._by_digest and ref.startswith("sha256:") and self._unmeasured:
                for d in self._unmeasured:  # measured once, on the first digest miss
                    self._by_digest.setdefault(d.digest, d)
                self._unmeasured.clear()
            if ref in self._by_digest:
                return self._by_digest[ref], ref
            doc = self._tags.get(ref)
        if doc is None and ref in self.behaviour.tags:
            doc = self.doc
        return (doc, doc.digest) if doc is not None else None

    def _manifest(self, ref: str) -> Response:
        found = self._find(ref)
        if found is None:
            return Response.error(404, "MANIFEST_UNKNOWN", "manifest unknown")
        doc, digest = found
        headers = {"Content-Type": doc.media_type, "Docker-Content-Digest": digest}
        return Response(200, headers, doc.chunks(), doc.size)

    def _blob(self, digest: str) -> Response:
        with self._lock:
            docs = list(self._docs)
        for doc in docs:
            data = doc.blob(digest)
            if data is not None:
                headers = {"Content-Type": "application/octet-stream",
                           "Docker-Content-Digest": digest}
                return Response(200, headers, (data,), len(data))
        return Response.error(404, "BLOB_UNKNOWN", "blob unknown to registry")

    def _tags_page(self, req: Request) -> Response:
        return tags_page(self.behaviour, self.repository, req)
