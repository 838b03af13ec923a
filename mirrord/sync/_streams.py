"""Every stream a command may name: the configured ones and those the state holds.

A stream created by ``mirrord import-image`` (or ``mirrord tag``) lives only in the
state; ``mirrord sync --stream NAME``, a daemon trigger and ``delete`` reach it like a
configured one. :func:`runnable` builds the run's configuration: the file's streams
followed by the stored ones, as StreamConfigs (:func:`~mirrord.sync.stored_streams`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from mirrord.config import Config, StreamConfig
from mirrord.core.imagestream import ImageStream
from mirrord.errors import ConfigError
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
    known = {s.name for s in run_config.streams}
    for name in names:
        if name not in known and any(s.name == name for s in stored):
            raise ConfigError(
                f"the image stream {name!r} has no tags to import (its tags were pointed "
                "elsewhere with `mirrord tag`, or it has none yet)"
            )
    return run_config, [run_config.stream(name) for name in names]
