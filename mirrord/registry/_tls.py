"""TLS settings per registry: verification on by default, extra CAs from config and certs.d.

CA and client-certificate files are read only when they are regular files of at most
:data:`MAX_PEM_FILE` bytes: a ``ca_file: /dev/zero`` (or a FIFO) is a clear TLSError,
never a read that does not end.
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

import certifi

from mirrord.errors import TLSError
from mirrord.registry._options import CERTS_DIRS, RegistryOptions

MAX_PEM_FILE = 1 << 20  # a bundle of a few hundred certificates

__all__ = ["CERTS_DIRS", "RegistryOptions", "ssl_context"]


def ssl_context(host: str, options: RegistryOptions) -> ssl.SSLContext | bool:
    """The ``verify`` argument for httpx: a context with every CA that applies."""
    if not options.tls_verify:
        return False
    # The system's trust store (where an enterprise CA is usually installed), plus certifi.
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi.where())
    if options.ca_file:
        _load_ca(context, Path(options.ca_file), host, "ca_file")
    for base in options.certs_dirs:
        directory = base / host
        if not directory.is_dir():
            continue
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
    return context


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
