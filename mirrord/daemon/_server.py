"""The daemon's HTTP endpoints (Starlette, served by uvicorn).

``/healthz``  the process is alive (200).
``/readyz``   the config is loaded, the state store answers, the mirror is reachable
              (200, else 503 naming the failing check).
``/metrics``  Prometheus text format.
``/api/v1/streams``, ``/api/v1/streams/{name}``  the image streams (``describe`` data).
``/api/v1/jobs``  recent runs (``?limit=N&kind=sync|prune``); ``/api/v1/jobs/{id}`` one.
``/api/v1/notifications``  each receiver's outbox and the failed deliveries.
``/api/v1/cluster-resources[/FILE]``  the IDMS/ITMS/ICSP objects (YAML or JSON by
              ``Accept``), or one generated file as written.
``POST /api/v1/streams/{name}/sync``  run a stream now; needs ``Authorization: Bearer
              <token>``, the token read from ``server.token_file`` (or the systemd
              credential ``api-token``). Without a configured token it is refused.
              202 with the id of a Queued job (``Location: /api/v1/jobs/ID``) that the
              stream's next run takes over (Running, then Succeeded or Failed).

Errors are ``{"error": {"reason", "message"}}``, the shape of the CLI's ``-o json``
errors, with Kubernetes' reasons (NotFound, MethodNotAllowed, ...); a method an
endpoint does not take is 405 with ``Allow``.

The listening socket is bound before the daemon reports ready (port 0 picks a
free port; the log names the address). The daemon owns the signals, not uvicorn.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import anyio
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mirrord.cluster import serve as serve_cluster_resources
from mirrord.config import Config
from mirrord.core.imagestream import ImageStream, rfc3339
from mirrord.core.openshift import to_openshift
from mirrord.core.units import camel_case
from mirrord.daemon._metrics import Metrics
from mirrord.errors import CredentialError, ListenError, MirrordError
from mirrord.notify import status_document
from mirrord.signatures import LookasideDir
from mirrord.state import JOB_KINDS, JobRun, Store

log = logging.getLogger("mirrord.server")

TOKEN_CREDENTIAL = "api-token"  # LoadCredential=api-token:/etc/mirrord/api.token
MAX_TOKEN_FILE = 4096
MAX_JOBS = 200


class DaemonView(Protocol):
    """What the endpoints need of the daemon."""

    metrics: Metrics

    @property
    def config(self) -> Config: ...

    @property
    def store(self) -> Store: ...

    @property
    def stopping(self) -> bool: ...

    async def readiness(self) -> dict[str, str]:
        """Each check (config, state, mirror) → "ok" or what is wrong."""
        ...

    async def trigger(self, name: str) -> int | None:
        """Queue a run of stream ``name``: the id of its Queued job; None when there is
        no such stream."""
        ...

    def annotations(self, name: str) -> dict[str, str]:
        """Scheduling facts about a stream (schedule, next run)."""
        ...


def token_path(config: Config) -> Path | None:
    """``server.token_file``, else the systemd credential ``api-token`` when present."""
    if config.server.token_file is not None:
        return config.server.token_file
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if directory and (Path(directory) / TOKEN_CREDENTIAL).is_file():
        return Path(directory) / TOKEN_CREDENTIAL
    return None


def _read_token(path: Path) -> str:
    with open(path, "rb") as file:
        raw = file.read(MAX_TOKEN_FILE + 1)
    if len(raw) > MAX_TOKEN_FILE:
        raise CredentialError(f"token file {path} is larger than {MAX_TOKEN_FILE} bytes")
    return raw.decode("utf-8").strip()


REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    503: "ServiceUnavailable",
}


def _error(status: int, message: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    """The CLI's error document: ``{"error": {"reason": …, "message": …}}``."""
    document = {"error": {"reason": REASONS.get(status, "InternalError"), "message": message}}
    return JSONResponse(document, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 (no such endpoint) and 405 (a method it does not take)."""
    assert isinstance(exc, HTTPException)
    return _error(exc.status_code, exc.detail, exc.headers)


def job_dict(job: JobRun) -> dict[str, Any]:
    """A job as the API shows it; counts camelCase (jobs recorded before 0.2 had
    snake_case keys). A Queued job has not started: ``started`` is null."""
    queued = job.status == "Queued"
    return {
        "id": job.id,
        "kind": job.kind,
        "stream": job.stream,
        "status": job.status,
        "started": None if queued else rfc3339(job.started),
        "finished": rfc3339(job.finished) if job.finished else None,
        "counts": {camel_case(k): v for k, v in job.counts.items()},
        "message": job.message,
        "worker": job.worker,  # host:pid or worker_name: which daemon of a fleet ran it
    }


class _API:
    """The endpoints' handlers over one daemon."""

    def __init__(self, daemon: DaemonView) -> None:
        self.daemon = daemon

    def stream_dict(self, stream: ImageStream) -> dict[str, Any]:
        out = to_openshift(stream)
        extra = self.daemon.annotations(stream.name)
        if extra:
            out["metadata"]["annotations"] = {**out["metadata"].get("annotations", {}), **extra}
        return out

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        checks = await self.daemon.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    async def metrics(self, request: Request) -> Response:
        return Response(self.daemon.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def streams(self, request: Request) -> Response:
        items = [self.stream_dict(s) for s in await self.daemon.store.list_streams()]
        return JSONResponse(
            {"apiVersion": "image.openshift.io/v1", "kind": "ImageStreamList", "items": items}
        )

    async def stream(self, request: Request) -> Response:
        name = request.path_params["name"]
        found = await self.daemon.store.get_stream(name)
        if found is None:
            return _error(404, f"no image stream {name!r}")
        return JSONResponse(self.stream_dict(found))

    async def jobs(self, request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", "20"))
        except ValueError:
            return _error(400, "limit must be a number")
        if limit < 1:
            return _error(400, "limit must be a positive number")
        kind = request.query_params.get("kind") or None
        if kind is not None and kind not in JOB_KINDS:
            return _error(400, f"kind must be one of {', '.join(JOB_KINDS)}")
        found = await self.daemon.store.list_jobs(limit=min(limit, MAX_JOBS), kind=kind)
        return JSONResponse({"items": [job_dict(j) for j in found]})

    async def job(self, request: Request) -> Response:
        job_id = request.path_params["id"]
        found = await self.daemon.store.get_job(job_id)
        if found is None:
            return _error(404, f"no job {job_id} (unknown, or trimmed from the history)")
        return JSONResponse(job_dict(found))

    async def notifications(self, request: Request) -> Response:
        config = self.daemon.config
        return JSONResponse(await status_document(self.daemon.store, config.notifications))

    async def cluster_resources(self, request: Request) -> Response:
        daemon, accept = self.daemon, request.headers.get("accept", "")
        file = request.path_params.get("file")
        rendered = await serve_cluster_resources(daemon.config, daemon.store, accept, file)
        return Response(rendered.body, status_code=rendered.status, media_type=rendered.media_type)

    async def sigstore(self, request: Request) -> Response:
        """The mirror's lookaside (``lookaside_dir``) for clients' registries.d:
        ``GET /sigstore/<repository>@sha256=<hex>/signature-N``."""
        store = LookasideDir(self.daemon.config.signature_dir)
        try:
            blob = await store.serve(request.path_params["file"])
        except MirrordError as exc:
            log.error("cannot serve a signature: %s", exc)
            return _error(500, "the signature cannot be read")
        if blob is None:
            return _error(404, "no such signature")
        return Response(blob, media_type="application/octet-stream")

    async def trigger(self, request: Request) -> Response:
        name = request.path_params["name"]
        if request.method != "POST":
            return _error(405, "a sync is started with POST", {"Allow": "POST"})
        client = request.client.host if request.client else "?"
        authorization = request.headers.get("authorization", "")
        refused = await _check_token(self.daemon.config, authorization)
        if refused is not None:
            status, message = refused
            log.warning("refused a sync request for %s from %s: %s", name, client, message)
            challenge = {"WWW-Authenticate": 'Bearer realm="mirrord"'} if status == 401 else None
            return _error(status, message, challenge)
        if self.daemon.stopping:
            return _error(503, "the daemon is stopping")
        job = await self.daemon.trigger(name)
        if job is None and await self.daemon.store.get_stream(name) is not None:
            return _error(409, f"the image stream {name!r} has no tags a sync imports (its "
                          "tags were pointed with mirrord tag, which a sync leaves alone)")
        if job is None:
            return _error(404, f"no image stream {name!r}")
        log.info("sync of %s requested by %s: job %d", name, client, job)
        return JSONResponse(
            {"stream": name, "status": "Queued", "job": job},
            status_code=202,
            headers={"Location": f"/api/v1/jobs/{job}"},
        )


def create_app(daemon: DaemonView) -> Starlette:
    """The ASGI application over ``daemon``."""
    api = _API(daemon)
    return Starlette(
        routes=[
            Route("/healthz", api.healthz),
            Route("/readyz", api.readyz),
            Route("/metrics", api.metrics),
            Route("/api/v1/streams", api.streams),
            # Every method, so a GET is answered 405 rather than taken for a stream name.
            Route("/api/v1/streams/{name:path}/sync", api.trigger, methods=_ANY_METHOD),
            Route("/api/v1/streams/{name:path}", api.stream),
            Route("/api/v1/jobs", api.jobs),
            Route("/api/v1/jobs/{id:int}", api.job),
            Route("/api/v1/notifications", api.notifications),
            Route("/api/v1/cluster-resources", api.cluster_resources),
            Route("/api/v1/cluster-resources/{file:path}", api.cluster_resources),
            Route("/sigstore/{file:path}", api.sigstore),
        ],
        exception_handlers={HTTPException: _http_error},
    )


_ANY_METHOD = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def _check_token(config: Config, authorization: str) -> tuple[int, str] | None:
    """None when ``authorization`` carries the configured token; else (status, why)."""
    path = token_path(config)
    if path is None:
        return 403, "triggers are disabled: set server.token_file"
    try:
        expected = await anyio.to_thread.run_sync(_read_token, path)
    except (OSError, UnicodeDecodeError, MirrordError) as exc:
        log.error("cannot read the API token file %s: %s", path, exc)
        return 503, "the API token file cannot be read"
    if not expected:
        log.error("the API token file %s is empty", path)
        return 503, "the API token file is empty"
    scheme, _, given = authorization.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return 401, "a bearer token is required"
    if not hmac.compare_digest(given.strip().encode(), expected.encode()):
        return 401, "invalid token"
    return None


# --- serving -------------------------------------------------------------------------


def bind(listen: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6; port 0 picks one)."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        family = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((host, int(port)), family=family, backlog=128)
    except OSError as exc:
        raise ListenError(f"server.listen {listen}: cannot listen: {exc.strerror or exc}") from exc
    sock.set_inheritable(False)
    return sock


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the daemon handles SIGTERM and SIGHUP itself


class HTTPServer:
    """uvicorn on a socket bound up front; :meth:`shutdown` makes :meth:`serve` return."""

    def __init__(self, daemon: DaemonView, listen: str) -> None:
        self.socket = bind(listen)
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
        config = uvicorn.Config(
            create_app(daemon),
            log_config=None,
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        self._server = _Server(config)

    @property
    def address(self) -> str:
        host, port = self.socket.getsockname()[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    async def serve(self) -> None:
        await self._server.serve(sockets=[self.socket])

    def shutdown(self) -> None:
        self._server.should_exit = True
