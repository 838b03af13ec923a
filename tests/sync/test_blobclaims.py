"""The copy engine's blob claims on a shared PostgreSQL state (sync/_blobclaims.py), with
real registries: a claim names the repository the blob goes into while it streams, and
is released however the stream ends: finished, failed (a corrupt source blob), or
cancelled mid-stream."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from harness.images import Image, push_image
from harness.postgres import PostgresCluster
from harness.registry import RegistryProcess
from harness.synctools import corrupt_blob, sync_setup

from mirrord.config import load_config
from mirrord.copy import Action, CopyEngine, CopyStats, TagPlan
from mirrord.errors import MirrordError
from mirrord.registry import RetryPolicy
from mirrord.state import Store, open_state
from mirrord.sync._blobclaims import StoreBlobClaims, shared_blobs
from mirrord.transports import ClientPool, Source, open_destination

pytestmark = pytest.mark.anyio
LAYER = 3 * 1024 * 1024


@dataclass
class Run:
    engine: CopyEngine
    source: Source
    plan: TagPlan
    store: Store
    claims: StoreBlobClaims
    layer: str


@asynccontextmanager
async def copying(
    tmp_path: Path, database: Any, source_host: str, mirror: RegistryProcess, image: Image
) -> AsyncIterator[Run]:
    """An engine copying ``image`` (``repo/app:1.0``) into ``mirror`` with blob claims."""
    password_file = tmp_path / "db-password"
    password_file.write_text(database.password + "\n", encoding="utf-8")
    setup = sync_setup(
        tmp_path, mirror=f"docker://{mirror.host}/m", streams=[], sources=[],
        settings={source_host: {"insecure": True}},
        extra={"database": database.url, "database_password_file": str(password_file)},
    )
    config = load_config(setup.path)
    async with AsyncExitStack() as stack:
        store = open_state(config, worker="w1")
        stack.push_async_callback(store.aclose)
        pool = await stack.enter_async_context(ClientPool(config))
        destination = await open_destination(config, pool)
        claims = shared_blobs(config, store, destination)
        assert isinstance(claims, StoreBlobClaims) and claims.mirror == destination.description
        source = await pool.client(source_host, image.repo)
        found = await source.head_manifest(image.repo, "1.0")
        plan = TagPlan(stream="app", tag="1.0", source_repository=image.repo,
                       mirror_repository="m/app", action=Action.COPY, source=found)
        engine = CopyEngine(destination, CopyStats(), shared=claims,
                            retry=RetryPolicy(attempts=1))
        layer = max(image.blobs, key=lambda b: b.size).digest
        yield Run(engine, source, plan, store, claims, layer)


def _push(source: RegistryProcess, repo: str) -> Image:
    with source.client() as client:
        return push_image(client, f"{repo}/app", "1.0", seed=repo, layer_sizes=(LAYER,))


async def test_a_finished_stream_released_its_claim_that_named_the_repository(
    tmp_path: Path, postgres: PostgresCluster, registry_factory: Any,
    fault_proxy_factory: Any, repo_name: str,
) -> None:
    source, mirror = registry_factory(), registry_factory()
    image = _push(source, repo_name)
    proxy = fault_proxy_factory(source)
    proxy.bandwidth = 1_000_000  # ~3 s: time to look at the claim while it streams
    database = postgres.create_database()
    try:
        async with copying(tmp_path, database, proxy.host, mirror, image) as run:
            seen = []

            async def watch() -> None:
                while not seen:
                    claim = await run.store.blob_claim(run.claims.mirror, run.layer)
                    if claim is not None:
                        seen.append(claim)
                    await anyio.sleep(0.05)

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                copied = await run.engine.copy_tag(run.source, run.plan)
            assert copied.digest == image.digest
            assert [(c.worker, c.repository) for c in seen] == [("w1", "m/app")]
            assert await run.store.blob_claim(run.claims.mirror, run.layer) is None
            assert run.engine.stats.blobs_copied == 2  # the layer and the config
    finally:
        postgres.drop_database(database.name)


async def test_a_failed_stream_releases_its_claim(
    tmp_path: Path, postgres: PostgresCluster, registry_factory: Any, repo_name: str
) -> None:
    source, mirror = registry_factory(), registry_factory()
    image = _push(source, repo_name)
    layer = max(image.blobs, key=lambda b: b.size).digest
    corrupt_blob(source, layer)  # its bytes no longer match its digest
    database = postgres.create_database()
    try:
        async with copying(tmp_path, database, source.host, mirror, image) as run:
            with pytest.raises(MirrordError, match=r"digest|sha256"):
                await run.engine.copy_tag(run.source, run.plan)
            assert await run.store.blob_claim(run.claims.mirror, layer) is None
            with mirror.client() as client:
                assert not client.blob_exists("m/app", layer)
    finally:
        postgres.drop_database(database.name)


async def test_a_stream_cancelled_mid_way_releases_its_claim(
    tmp_path: Path, postgres: PostgresCluster, registry_factory: Any,
    fault_proxy_factory: Any, repo_name: str,
) -> None:
    source, mirror = registry_factory(), registry_factory()
    image = _push(source, repo_name)
    proxy = fault_proxy_factory(source)
    proxy.bandwidth = 200_000  # ~15 s: cancelled long before the end
    database = postgres.create_database()
    try:
        async with copying(tmp_path, database, proxy.host, mirror, image) as run:
            with anyio.move_on_after(3) as scope:
                await run.engine.copy_tag(run.source, run.plan)
            assert scope.cancelled_caught
            assert await run.store.blob_claim(run.claims.mirror, run.layer) is None
    finally:
        postgres.drop_database(database.name)
