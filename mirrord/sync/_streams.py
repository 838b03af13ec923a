"""Every stream a command may name: the configured ones and those the state holds.

A stream created by ``mirrord import-image`` (or ``mirrord tag``) lives only in the
state; ``mirrord sync --stream NAME``, a daemon trigger and ``delete`` reach it like a
configured one (:func:`delete_streams` forgets one). :func:`runnable` builds the run's
configuration: the file's streams followed by the stored ones, as StreamConfigs
(:func:`~mirrord.sync.stored_streams`).
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass

import anyio

from mirrord.config import Config, StreamConfig
from mirrord.core.imagestream import ImageStream
from mirrord.errors import ConfigError
from mirrord.state import open_state, state_exists
from mirrord.sync._import_image import stored_streams


def with_stored(
    config: Config, stored: Sequence[ImageStream], *, scheduled_only: bool = False
) -> Config:
    """``config`` with the stored import-image streams after its own (only those marked
    ``--scheduled`` with ``scheduled_only``, what a run of everything covers)."""
    wanted = [s for s in stored if s.scheduled or not scheduled_only]
    extra = stored_streams(config, wanted)
    return dataclasses.replace(config, streams=(*config.streams, *extra)) if extra else config


def runnable(
    config: Config, stored: Sequence[ImageStream], names: Sequence[str] = ()
) -> tuple[Config, list[StreamConfig]]:
    """The run's configuration and the streams ``names`` selects; without names every
    configured stream and every scheduled stored one (what the daemon schedules).

    ConfigError for a name that is neither configured nor stored, with a "did you
    mean" over both, or for a stored stream with nothing to import.
    """
    if not names:
        run_config = with_stored(config, stored, scheduled_only=True)
        return run_config, list(run_config.streams)
    run_config = with_stored(config, stored)
    known = [s.name for s in run_config.streams]
    file = str(config.path) if config.path else "<embedded default>"
    for name in names:
        if name in known:
            continue
        if any(s.name == name for s in stored):
            raise ConfigError(
                f"the image stream {name!r} has no tags to import (its tags were pointed "
                "elsewhere with `mirrord tag`, or it has none yet)",
                file=file,
            )
        hint = difflib.get_close_matches(name, known, n=1)
        extra = f"; did you mean {hint[0]!r}?" if hint else f" (there are: {', '.join(known)})"
        raise ConfigError(
            f"no stream named {name!r} in the configuration or the state{extra}", file=file
        )
    return run_config, [run_config.stream(name) for name in names]


@dataclass(frozen=True)
class Deletion:
    """One stream ``mirrord delete`` named: what the state held of it (``found``), its
    tags and tag events, and whether the configuration still defines it (its next
    sync recreates it)."""

    name: str
    found: bool
    tags: int = 0
    events: int = 0
    configured: bool = False
    deleted: bool = False


async def delete_streams(
    config: Config, names: Sequence[str], *, confirm: bool, wait: bool = False
) -> list[Deletion]:
    """Forget the streams ``names`` and their history (``confirm``; else only say what
    would go). The images stay in the mirror, recorded as orphaned for the pruner
    (:meth:`~mirrord.state.Store.delete_stream`). Takes the run lock, as a sync does; a
    dry run only reads (and creates no state)."""
    configured = {s.name for s in config.streams}
    if not state_exists(config):
        return [Deletion(n, False, configured=n in configured) for n in names]
    async with AsyncExitStack() as stack:
        store = await anyio.to_thread.run_sync(open_state, config)
        stack.push_async_callback(store.aclose)
        if confirm:
            await stack.enter_async_context(store.acquire_run_lock(wait=wait))
        out = []
        for name in names:
            stream = await store.get_stream(name)
            if stream is None:
                out.append(Deletion(name, False, configured=name in configured))
                continue
            events = sum(len(t.items) for t in stream.tags)
            deleted = confirm and await store.delete_stream(name)
            out.append(Deletion(name, True, len(stream.tags), events, name in configured, deleted))
        if any(d.deleted for d in out):
            from mirrord.cluster import refresh as refresh_cluster_resources

            await refresh_cluster_resources(config, store)
        return out
