"""Reading what a registry sends, within bounds: sizes, a deadline, a minimum rate.

:func:`paced` enforces the minimum transfer rate on any stream of chunks: while
waiting for upstream bytes, each ``stall_timeout`` window of waiting must bring at
least ``min_transfer_rate * stall_timeout`` bytes, or the stream fails with a
:class:`~mirrord.errors.TransferTimeoutError`. Only time spent waiting for the
registry counts, so a slow consumer (the mirror being written) never fails the
upstream. :func:`read_bounded` reads a body into memory with that rule and a size cap
(checked against ``Content-Length`` before anything is read, then chunk by chunk).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import httpx

from mirrord.core.units import human_bytes
from mirrord.errors import LimitExceededError, RegistryError, TransferTimeoutError
from mirrord.registry._errors import error_from_exception
from mirrord.registry._options import LIMIT_KEYS, RegistryOptions


async def paced(
    chunks: AsyncIterator[bytes], options: RegistryOptions, registry: str, what: str
) -> AsyncIterator[bytes]:
    """``chunks``, failing when upstream stays below the minimum rate (module doc)."""
    try:
        async for chunk in _paced(chunks, options, registry, what):
            yield chunk
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:  # a read cut short by the deadline leaves it open
            with anyio.CancelScope(shield=True):
                await aclose()


async def _paced(
    chunks: AsyncIterator[bytes], options: RegistryOptions, registry: str, what: str
) -> AsyncIterator[bytes]:
    window = options.stall_timeout
    needed = options.min_transfer_rate * window
    waited, got = 0.0, 0
    while True:
        started = anyio.current_time()
        try:
            with anyio.fail_after(max(0.0, window - waited)):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise _too_slow(options, registry, what, got) from None
        except httpx.HTTPError as exc:
            raise error_from_exception(exc, registry, what) from exc
        waited += anyio.current_time() - started
        got += len(chunk)
        if got >= needed:  # this window is satisfied: the next one starts now
            waited, got = 0.0, 0
        yield chunk


def _too_slow(options: RegistryOptions, registry: str, what: str, got: int) -> TransferTimeoutError:
    return TransferTimeoutError(
        f"{what}: the body stalled or trickled: {got} bytes in {options.stall_timeout:g}s, "
        f"under the minimum of {human_bytes(options.min_transfer_rate)}/s "
        f"({LIMIT_KEYS['min_transfer_rate']}, {LIMIT_KEYS['stall_timeout']})",
        registry=registry,
    )


def content_length(response: httpx.Response, registry: str, what: str) -> int | None:
    """The ``Content-Length`` header as a number (None when absent); RegistryError
    when it is not a plain non-negative integer."""
    value = response.headers.get("content-length")
    if value is None:
        return None
    if not value.isascii() or not value.strip().isdigit() or len(value.strip()) > 18:
        raise RegistryError(f"{what}: invalid Content-Length {value[:40]!r}", registry=registry)
    return int(value)


async def read_bounded(
    response: httpx.Response,
    options: RegistryOptions,
    registry: str,
    what: str,
    *,
    limit: int,
    key: str = "",
    truncate: bool = False,
) -> bytes:
    """Read a streamed ``response``'s (decoded) body: at most ``limit`` bytes.

    Past ``limit``: LimitExceededError naming ``key`` (the setting that raises it), or,
    with ``truncate``, the first ``limit`` bytes (for error answers)."""
    # A HEAD's Content-Length is the size of what a GET would send, not of its own body.
    check = not truncate and response.request.method != "HEAD"
    declared = content_length(response, registry, what) if check else None
    if declared is not None and declared > limit:
        raise _too_large(what, registry, limit, key, f"its Content-Length is {declared} bytes")
    body = bytearray()
    async for chunk in paced(response.aiter_bytes(), options, registry, what):
        body += chunk
        if len(body) > limit:
            if truncate:
                return bytes(body[:limit])
            raise _too_large(what, registry, limit, key, f"its body grew past {limit} bytes")
    return bytes(body)


def _too_large(what: str, registry: str, limit: int, key: str, why: str) -> LimitExceededError:
    setting = f" ({key})" if key else ""
    return LimitExceededError(
        f"{registry}: {what}: {why}, over the limit of {human_bytes(limit)}{setting}; refused"
    )


def rebuilt(response: httpx.Response, body: bytes) -> httpx.Response:
    """A complete response with ``body`` (already decoded), for the JSON and error
    readers: what ``response`` said (its Content-Length too: a HEAD's size), with the
    body read within bounds."""
    headers = [
        (k, v)
        for k, v in response.headers.multi_items()
        if k.lower() not in ("content-encoding", "transfer-encoding")
    ]
    return httpx.Response(
        response.status_code, headers=headers, content=body, request=response.request
    )
