"""The `tags/list` route of the hostile registry: n/last pagination, a server-side page cap,
Link headers that stay, leave (another origin), loop or never end, lazy tag lists streamed."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from ._hostile_server import Request, Response
from .hostile_images import GeneratedTags

if TYPE_CHECKING:
    from .hostile import Behaviour

__all__ = ["tags_page"]

_JSON_BATCH = 10_000
_ENDLESS_PREFIX = "endless-"


def tags_page(b: Behaviour, repository: str, req: Request) -> Response:
    """One page of the tag list as `b` says (the catcher: honest, relative Links)."""
    hostile = req.role == "hostile"
    listing: Sequence[str] = b.tags
    n = _int_param(req.query, "n")
    caps = [c for c in (n, b.page_size if hostile else None) if c is not None]
    limit = min(caps) if caps else None
    last = req.query.get("last", [None])[0]
    if hostile and b.pagination == "endless":
        page_no = _endless_page(last) + 1
        page: Sequence[str] = GeneratedTags(limit or 100, f"{_ENDLESS_PREFIX}{page_no:09d}-")
        more = True
    else:
        start = 0 if last is None else (listing.index(last) + 1 if last in listing
                                        else len(listing))
        stop = len(listing) if limit is None else start + limit
        page, more = listing[start:stop], stop < len(listing)
    headers = {"Content-Type": "application/json"}
    if more or (hostile and b.pagination == "loop"):
        base = (b.link_base or "") if hostile else ""
        route = f"/v2/{repository}/tags/list"
        if hostile and b.pagination == "loop":
            target = route + (f"?n={limit}" if limit is not None else "")
        else:
            query = {"n": str(limit if limit is not None else len(page)),
                     "last": page[-1] if len(page) else ""}
            target = route + "?" + urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
        headers["Link"] = f'<{base}{target}>; rel="next"'
    return Response(200, headers, _tag_json(repository, page), None)


def _int_param(query: dict[str, list[str]], name: str) -> int | None:
    try:
        value = int(query[name][0])
    except (KeyError, IndexError, ValueError):
        return None
    return value if value >= 0 else None


def _endless_page(last: str | None) -> int:
    if last and last.startswith(_ENDLESS_PREFIX):
        digits = last[len(_ENDLESS_PREFIX):].partition("-")[0]
        if digits.isdigit():
            return int(digits)
    return -1


def _tag_json(repository: str, tags: Sequence[str]) -> Iterator[bytes]:
    """`{"name": ..., "tags": [...]}` in batches (lazy tag lists are never materialised)."""
    yield b'{"name":' + json.dumps(repository).encode() + b',"tags":['
    for i in range(0, len(tags), _JSON_BATCH):
        text = json.dumps(list(tags[i : i + _JSON_BATCH]), ensure_ascii=False,
                          separators=(",", ":"))[1:-1]
        yield (b"," if i else b"") + text.encode("utf-8", "surrogatepass")
    yield b"]}"
