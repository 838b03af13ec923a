"""What an upstream lists, checked: the valid tags of a listing."""

from __future__ import annotations

import logging

from mirrord.config import StreamConfig
from mirrord.core.reference import escaped
from mirrord.core.selection import split_invalid, wanted_invalid

log = logging.getLogger("mirrord.sync")


def valid_tags(stream: StreamConfig, listed: list[str]) -> tuple[list[str], tuple[str, ...]]:
    """The listed tags that are valid, and the invalid ones the stream would select.

    Every invalid one is skipped with a warning naming it escaped (``repr``); it never
    reaches a URL, a file name or the state."""
    valid, invalid = split_invalid(listed)
    if invalid:
        shown = ", ".join(escaped(t, 80) for t in invalid[:10])
        more = f" and {len(invalid) - 10} more" if len(invalid) > 10 else ""
        log.warning(
            "stream %s: %s lists %d tags that are not valid tag names; skipped: %s%s",
            stream.name,
            stream.source,
            len(invalid),
            shown,
            more,
        )
    return valid, wanted_invalid(invalid, stream)
