"""Delivering one notification: a webhook POST or a command fed on stdin.

Both raise :class:`~mirrord.NotifyError` with a message safe to store and log:
a webhook's URL shows only as its origin, and neither the URL's path, query or
userinfo nor the signing secret ever appears in it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import hmac
import os
import signal
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import anyio.abc
import httpx

from mirrord.config import NotificationConfig
from mirrord.errors import NotifyError

EVENTS_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
SIGNATURE_HEADER = "X-Mirrord-Signature"

_STDERR_TAIL = 4096  # bytes of a command's stderr kept for the failure message
_DRAIN_GRACE = 1.0  # seconds to wait for stderr EOF after a command exited


def sign(key: bytes, body: bytes) -> str:
    """The ``X-Mirrord-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


# -- webhooks ----------------------------------------------------------------------------


def _origin(url: str) -> str:
    """``scheme://host[:port]``: what a message may say about a webhook URL."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}"


def describe_receiver(receiver: NotificationConfig) -> str:
    if receiver.url is not None:
        return f"POST {_origin(receiver.url)}"
    return Path(receiver.command[0]).name if receiver.command else "?"


def _redact(text: str, url: str, secret: bytes | None) -> str:
    """``text`` without the URL's path, query, fragment or userinfo, nor the secret."""
    parts = urlsplit(url)
    pieces = [url, parts.query, parts.fragment, parts.username or "", parts.password or ""]
    if parts.path not in ("", "/"):
        pieces.append(parts.path)
    if secret:
        pieces.append(secret.decode("utf-8", "replace"))
    for piece in sorted(pieces, key=len, reverse=True):
        if len(piece) >= 3:
            text = text.replace(piece, "***")
    return text


MAX_SECRET_FILE = 64 << 10  # an HMAC key is some dozen bytes


async def _read_secret(rid: str, path: Path) -> bytes:
    try:
        key = (await anyio.to_thread.run_sync(_read_small, path)).rstrip(b"\r\n")
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise NotifyError(f"{rid}: cannot read secret file {path}: {why}") from None
    if not key:
        raise NotifyError(f"{rid}: secret file {path} is empty")
    return key


def _read_small(path: Path) -> bytes:
    """A regular file's bytes (never a FIFO or device), at most MAX_SECRET_FILE."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    with os.fdopen(fd, "rb") as file:
        data = file.read(MAX_SECRET_FILE + 1)
    if len(data) > MAX_SECRET_FILE:
        raise OSError(errno.EFBIG, f"larger than {MAX_SECRET_FILE >> 10} KiB")
    return data


async def post_event(
    client: httpx.AsyncClient,
    rid: str,
    url: str,
    secret_file: Path | None,
    body: bytes,
    timeout: float,
) -> None:
    headers = {"Content-Type": EVENTS_MEDIA_TYPE}
    secret = None
    if secret_file is not None:
        secret = await _read_secret(rid, secret_file)
        headers[SIGNATURE_HEADER] = sign(secret, body)
    origin = _origin(url)
    try:
        with anyio.fail_after(timeout):
            async with client.stream("POST", url, content=body, headers=headers) as response:
                status, phrase = response.status_code, response.reason_phrase
    except TimeoutError:
        raise NotifyError(f"{rid}: no answer from {origin} within {timeout:g}s") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        detail = _redact(str(exc), url, secret) or "no detail"
        raise NotifyError(f"{rid}: {origin}: {type(exc).__name__}: {detail}") from None
    if not 200 <= status < 300:
        raise NotifyError(f"{rid}: {origin} answered HTTP {status} {phrase}".rstrip())


# -- commands ----------------------------------------------------------------------------


def _kill_group(pid: int) -> None:
    """SIGKILL the command's process group (it runs in its own session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, signal.SIGKILL)


async def _feed(stdin: anyio.abc.ByteSendStream, body: bytes) -> None:
    try:
        await stdin.send(body)
        await stdin.aclose()
    except (anyio.BrokenResourceError, anyio.ClosedResourceError):
        pass  # the command exited without reading its input: its exit status decides


async def _drain(stderr: anyio.abc.ByteReceiveStream, tail: bytearray, done: anyio.Event) -> None:
    async for chunk in stderr:
        tail.extend(chunk)
        del tail[:-_STDERR_TAIL]
    done.set()


async def _exit_status(command: Sequence[str], body: bytes, tail: bytearray) -> int:
    process = await anyio.open_process(
        list(command),
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    async with process:
        try:
            async with anyio.create_task_group() as tg:
                done = anyio.Event()
                if process.stdin is not None:
                    tg.start_soon(_feed, process.stdin, body)
                if process.stderr is not None:
                    tg.start_soon(_drain, process.stderr, tail, done)
                code = await process.wait()
                with anyio.move_on_after(_DRAIN_GRACE):  # a background child may keep it open
                    await done.wait()
                tg.cancel_scope.cancel()
        except BaseException:
            _kill_group(process.pid)
            raise
    return code


def _stderr_summary(tail: bytearray) -> str:
    lines = bytes(tail).decode("utf-8", "replace").strip().splitlines()
    return " | ".join(line.strip() for line in lines[-5:] if line.strip())[-500:]


async def run_command(rid: str, command: Sequence[str], body: bytes, timeout: float) -> None:
    name = Path(command[0]).name
    tail = bytearray()
    try:
        with anyio.fail_after(timeout):
            code = await _exit_status(command, body, tail)
    except TimeoutError:
        raise NotifyError(f"{rid}: {name} did not finish within {timeout:g}s (killed)") from None
    except OSError as exc:
        raise NotifyError(f"{rid}: cannot run {command[0]}: {exc.strerror or exc}") from None
    if code != 0:
        stderr = _stderr_summary(tail)
        status = f"signal {-code}" if code < 0 else f"status {code}"
        raise NotifyError(f"{rid}: {name} exited with {status}" + (f": {stderr}" if stderr else ""))
