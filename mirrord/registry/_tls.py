"""TLS settings per registry: verification on by default, extra CAs from config and certs.d.

CA and client-certificate files are read only when they are regular files of at most
:data:`MAX_PEM_FILE` bytes: a ``ca_file: /dev/zero`` (or a FIFO) is a clear TLSError,
never a read that does not end.

Trust starts from the system's store (where an enterprise CA is usually installed), as
containers/image does; certifi's bundle is loaded only when the system has none (a slim
container image without ``ca-certificates``). Loading both parsed about the same Mozilla
set twice: ~25 ms more per context, on the path to a run's first request (issue 17).

Building a context costs tens of milliseconds of CPU (the trust store is parsed each
time), so contexts are shared: registries whose TLS inputs are the same content (the CA
file and every file of the certificate directories that apply, read and hashed: a few
kilobytes) get one context. A file changed on disk gives a new key, so a
daemon's next run trusts what it says now (the system's trust store is read once per
process).

Building a context is mostly OpenSSL parsing PEM bundles, which it does without the GIL:
:func:`prepare_ssl_context` starts a build in a thread of its own as soon as the caller
knows which registries a run will reach (``mirrord sync``, right after its configuration
is read), so the build overlaps the imports and the state's opening that come before the
first request; :func:`ssl_context` then waits for that build instead of starting its own.
The result is an entry of the same per-process cache, keyed by the same file contents.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import stat
import threading
from concurrent.futures import Future
from pathlib import Path

import certifi

from mirrord.core.reference import DOCKER_HUB, DOCKER_HUB_API_HOST
from mirrord.errors import TLSError
from mirrord.registry._options import CERTS_DIRS, RegistryOptions

MAX_PEM_FILE = 1 << 20  # a bundle of a few hundred certificates
_CACHE_SIZE = 32  # distinct TLS settings kept; the oldest is dropped beyond

_Key = tuple[object, ...]
_contexts: dict[_Key, ssl.SSLContext] = {}
_building: dict[_Key, Future[ssl.SSLContext]] = {}  # prepare_ssl_context's, until done
_lock = threading.Lock()  # both dicts: a prepare thread fills them too

__all__ = ["CERTS_DIRS", "RegistryOptions", "prepare_ssl_context", "ssl_context"]


def ssl_context(host: str, options: RegistryOptions) -> ssl.SSLContext | bool:
    """The ``verify`` argument for httpx: a context with every CA that applies (shared with
    every registry whose TLS inputs are the same, unchanged files). A build
    :func:`prepare_ssl_context` started for the same inputs is waited for (its TLSError,
    if it failed, raised here)."""
    if not options.tls_verify:
        return False
    ca_file, present = _inputs(host, options)
    key = _cache_key(host, ca_file, present)
    with _lock:
        cached, building = _contexts.get(key), _building.get(key)
    if cached is not None:
        return cached
    if building is not None:
        # Blocks the caller at most for the rest of a build it would otherwise do whole.
        return building.result()
    context = _build(host, ca_file, present)
    with _lock:
        _store(key, context)
    return context


def prepare_ssl_context(registry: str, options: RegistryOptions) -> None:
    """Start building, in a daemon thread, the context a client of ``registry`` (as
    configured: ``docker.io`` is reached at its API host) will ask :func:`ssl_context`
    for; nothing for plain HTTP, an unverified registry, or inputs already built or being
    built. Never raises: a CA file that cannot be read is left to :func:`ssl_context`,
    which raises the TLSError where the client is made."""
    if options.insecure or not options.tls_verify:
        return
    host = DOCKER_HUB_API_HOST if registry == DOCKER_HUB else registry
    try:
        ca_file, present = _inputs(host, options)
        key = _cache_key(host, ca_file, present)
    except TLSError:
        return  # ssl_context raises it again, where the run can report it
    with _lock:
        if key in _contexts or key in _building:
            return
        future: Future[ssl.SSLContext] = Future()
        _building[key] = future
    threading.Thread(
        target=_build_into, args=(future, key, host, ca_file, present),
        name=f"mirrord-tls-{host}", daemon=True,
    ).start()


def _build_into(
    future: Future[ssl.SSLContext], key: _Key, host: str, ca_file: Path | None,
    present: list[Path],
) -> None:
    try:
        context = _build(host, ca_file, present)
    except BaseException as exc:  # noqa: BLE001 - handed to the waiter (else it waits forever)
        with _lock:
            _building.pop(key, None)
        future.set_exception(exc)
        return
    with _lock:
        _store(key, context)
        _building.pop(key, None)
    future.set_result(context)


def _inputs(host: str, options: RegistryOptions) -> tuple[Path | None, list[Path]]:
    """The CA file and the certificate directories that exist for ``host``."""
    ca_file = Path(options.ca_file) if options.ca_file else None
    directories = [base / host for base in options.certs_dirs]
    if options.cert_dir is not None:
        directories.append(options.cert_dir)
    return ca_file, [d for d in directories if d.is_dir()]


def _build(host: str, ca_file: Path | None, present: list[Path]) -> ssl.SSLContext:
    context = ssl.create_default_context()
    # No CA loaded: no system store, or one that is only a hashed directory (read lazily,
    # so not counted); certifi's bundle then, as before.
    if not context.cert_store_stats()["x509_ca"]:
        context.load_verify_locations(cafile=certifi.where())
    if ca_file is not None:
        _load_ca(context, ca_file, host, "ca_file")
    for directory in present:
        _load_directory(context, directory, host)
    return context


def _store(key: _Key, context: ssl.SSLContext) -> None:
    """Keep ``context`` under ``key`` (the caller holds ``_lock``)."""
    if len(_contexts) >= _CACHE_SIZE:
        _contexts.pop(next(iter(_contexts)))
    _contexts[key] = context


def _cache_key(host: str, ca_file: Path | None, directories: list[Path]) -> _Key:
    """What a context is built from: the content of every file it would read (a file
    replaced on disk, even in the same second and at the same size, is a new key)."""
    parts: list[object] = [_digest(ca_file, host, "ca_file") if ca_file is not None else None]
    for directory in directories:
        files = [(ca, "CA") for ca in sorted(directory.glob("*.crt"))]
        for cert in sorted(directory.glob("*.cert")):
            if cert.with_suffix(".key").exists():
                files += [(cert, "client certificate"), (cert.with_suffix(".key"), "client key")]
        parts.append((str(directory), *((f.name, _digest(f, host, what)) for f, what in files)))
    return tuple(parts)


def _digest(path: Path, host: str, what: str) -> bytes:
    return hashlib.sha256(_read_pem(path, host, what)).digest()


def _load_directory(context: ssl.SSLContext, directory: Path, host: str) -> None:
    """``*.crt`` CAs and ``*.cert``/``*.key`` client pairs, as containers/image reads them."""
    for ca in sorted(directory.glob("*.crt")):
        _load_ca(context, ca, host, "CA")
    for cert in sorted(directory.glob("*.cert")):
        key = cert.with_suffix(".key")
        if key.exists():
            _check_regular(cert, host, "client certificate")
            _check_regular(key, host, "client key")
            try:
                context.load_cert_chain(str(cert), str(key))
            except (OSError, ssl.SSLError) as exc:
                raise TLSError(
                    f"cannot load client certificate {cert}: {exc}", registry=host
                ) from exc


def _load_ca(context: ssl.SSLContext, path: Path, host: str, what: str) -> None:
    data = _read_pem(path, host, what)
    try:
        context.load_verify_locations(cadata=data.decode("ascii", errors="replace"))
    except (ValueError, ssl.SSLError) as exc:
        raise TLSError(f"cannot load {what} {path}: {exc}", registry=host) from exc


def _read_pem(path: Path, host: str, what: str) -> bytes:
    """The bytes of a regular file of at most MAX_PEM_FILE bytes; else TLSError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, ValueError) as exc:
        raise TLSError(f"cannot read {what} {path}: {exc}", registry=host) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # before fdopen: a directory fails it
        os.close(fd)
        raise TLSError(f"{what} {path} is not a regular file", registry=host)
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_PEM_FILE + 1)
    if len(data) > MAX_PEM_FILE:
        raise TLSError(f"{what} {path} is larger than {MAX_PEM_FILE} bytes", registry=host)
    return data


def _check_regular(path: Path, host: str, what: str) -> None:
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError) as exc:
        raise TLSError(f"cannot read {what} {path}: {exc}", registry=host) from None
    if not stat.S_ISREG(mode):
        raise TLSError(f"{what} {path} is not a regular file", registry=host)
