"""TLS settings per registry: verification on by default, extra CAs from config and certs.d."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import certifi

from mirrord.errors import TLSError

CERTS_DIRS = (Path("/etc/containers/certs.d"), Path("/etc/docker/certs.d"))


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """How to reach one registry.

    ``insecure`` speaks plain HTTP; ``tls_verify=False`` keeps HTTPS but skips
    verification; ``ca_file`` and ``<certs_dir>/<host>/*.crt`` add CAs, and a
    ``*.cert``/``*.key`` pair there is a client certificate (as containers/image does).
    ``cert_dir`` is one such directory given directly (``login --cert-dir``).
    ``rate`` paces requests (per second); ``chunk_size`` forces chunked (PATCH)
    uploads in pieces of that many bytes.
    """

    insecure: bool = False
    tls_verify: bool = True
    ca_file: Path | None = None
    max_concurrency: int = 6
    rate: float | None = None
    chunk_size: int = 0
    timeout: float = 60.0
    certs_dirs: tuple[Path, ...] = CERTS_DIRS
    cert_dir: Path | None = None


def ssl_context(host: str, options: RegistryOptions) -> ssl.SSLContext | bool:
    """The ``verify`` argument for httpx: a context with every CA that applies."""
    if not options.tls_verify:
        return False
    # The system's trust store (where an enterprise CA is usually installed), plus certifi.
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi.where())
    if options.ca_file:
        try:
            context.load_verify_locations(cafile=str(options.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise TLSError(f"cannot load ca_file {options.ca_file}: {exc}", registry=host) from exc
    directories = [base / host for base in options.certs_dirs]
    if options.cert_dir is not None:
        directories.append(options.cert_dir)
    for directory in directories:
        if directory.is_dir():
            _load_directory(context, directory, host)
    return context


def _load_directory(context: ssl.SSLContext, directory: Path, host: str) -> None:
    """``*.crt`` CAs and ``*.cert``/``*.key`` client pairs, as containers/image reads them."""
    try:
        for ca in sorted(directory.glob("*.crt")):
            context.load_verify_locations(cafile=str(ca))
        for cert in sorted(directory.glob("*.cert")):
            key = cert.with_suffix(".key")
            if key.exists():
                context.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        message = f"cannot load the certificates in {directory}: {exc}"
        raise TLSError(message, registry=host) from exc
