"""Gather, generate, write: what the command and every sync run do."""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from pathlib import Path

import anyio

from mirrord.cluster._files import CLUSTER_RESOURCES_DIR, Change, write_files
from mirrord.cluster._generate import generate
from mirrord.cluster._model import ClusterResources, resource_name
from mirrord.cluster._state import Inputs, combine, gather
from mirrord.config import Config
from mirrord.errors import ClusterResourcesError, ConfigError
from mirrord.state import Store

log = logging.getLogger("mirrord.cluster")
# One refresh at a time in a process: the daemon runs streams in parallel, and a run
# that gathered earlier must not write after one that gathered later (stale files, and
# a changed-event for each flip). A thread lock, as it outlives any one event loop.
_REFRESH_LOCK = threading.Lock()


def default_directory(config: Config) -> Path:
    """``<state_dir>/cluster-resources``: what every sync refreshes."""
    return config.state_dir / CLUSTER_RESOURCES_DIR


async def build(
    sources: Sequence[tuple[Config, Store | None]],
    *,
    names: Collection[str] = (),
    per_repository: bool = False,
) -> tuple[ClusterResources, Inputs]:
    """The resources for one or more (configuration, its store) pairs, merged in order.

    Raises ConfigError for a mirror that is not a registry (or cannot be named), and
    ClusterResourcesError if a document would not pass the OpenShift API's checks.
    """
    inputs = combine([await gather(config, store, names) for config, store in sources])
    resources = generate(
        inputs.records,
        name=resource_name(inputs.mirror_targets),
        mirror_targets=inputs.mirror_targets,
        per_repository=per_repository,
        signature_scopes=inputs.signature_scopes,
    )
    return resources, inputs


async def refresh(config: Config, store: Store) -> list[Change]:
    """Bring ``<state_dir>/cluster-resources/`` up to date; the files that changed.

    Call after each sync run (the daemon's too). An OCI-layout mirror has nothing to
    describe: no file is touched and the list is empty. A failure is logged and
    leaves the old files; it never fails the sync (the images are in the mirror).
    A non-empty result is the ``cluster-resources.changed`` notification.
    """
    if config.mirror.kind != "registry":
        return []
    directory = default_directory(config)
    with anyio.CancelScope(shield=True):  # once acquired, always released below
        await anyio.to_thread.run_sync(_REFRESH_LOCK.acquire)
    try:
        resources, inputs = await build([(config, store)])
        changes = await anyio.to_thread.run_sync(write_files, resources.files, directory)
    except (ClusterResourcesError, ConfigError) as error:
        log.warning("cluster resources in %s not refreshed: %s", directory, error)
        return []
    finally:
        _REFRESH_LOCK.release()
    for note in inputs.notes:
        log.debug("cluster resources: %s", note)
    if changes:
        log.info(
            "cluster resources changed in %s: %s",
            directory,
            ", ".join(f"{c.name} ({c.action})" for c in changes),
        )
    return changes
