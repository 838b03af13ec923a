"""Helpers for tests that drive the stream commands (`import-image`, `tag`, `delete`,
`describe`, `prune`) through the CLI against the harness registries, and read back what
the state recorded."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import anyio
from click.testing import CliRunner, Result

from harness.registry import RegistryProcess
from harness.synctools import Setup, sync_setup
from mirrord.cli import main
from mirrord.config import load_config
from mirrord.core.imagestream import ImageStream
from mirrord.state import open_store


def run(setup: Setup, *args: str) -> Result:
    """`mirrord ARGS… --config PATH` in this process."""
    return CliRunner().invoke(main, [*args, "--config", str(setup.path)])


def stored(setup: Setup, name: str) -> ImageStream | None:
    """The stream the state holds under `name` (None: none)."""

    async def read() -> ImageStream | None:
        async with open_store(setup.state_dir) as store:
            return await store.get_stream(name)

    return anyio.run(read)


def stored_stream(setup: Setup, name: str) -> ImageStream:
    """The stream the state holds under `name`, asserting there is one."""
    found = stored(setup, name)
    assert found is not None, f"no stream {name!r} in the state"
    return found


def mirror_repo(setup: Setup, name: str) -> str:
    """The mirror repository of stream `name` (the mirror's prefix, then the name)."""
    return f"{load_config(setup.path).mirror.prefix}/{name}"


def stream_setup(
    tmp_path: Path,
    source: RegistryProcess,
    mirror: RegistryProcess,
    *,
    prefix: str,
    streams: list[dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> Setup:
    """A config mirroring `streams` from `source` into a fresh `prefix-XXXXXXXX` of the
    `mirror` registry (so tests sharing the registry never see each other's repos)."""
    return sync_setup(
        tmp_path,
        mirror=f"docker://{mirror.host}/{prefix}-{uuid.uuid4().hex[:8]}",
        streams=streams,
        sources=[source],
        extra=extra,
    )
