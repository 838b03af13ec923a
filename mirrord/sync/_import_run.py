"""Running ``import-image``: resolve the request, record it, and sync it as one job."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import anyio

from mirrord.config import Config
from mirrord.core.imagestream import ImageStream
from mirrord.registry import RegistryOptions
from mirrord.state import Store, open_state, state_exists
from mirrord.sync._import_image import ImportPlan, ImportRequest, Refusal, parse_target, resolve
from mirrord.sync._recorder import stream_spec
from mirrord.sync._result import SyncResult
from mirrord.sync._run import plan_once, sync_once
from mirrord.transports import ClientPool, open_destination


@dataclass
class ImportOutcome:
    """What ``import-image`` did, for printing."""

    plan: ImportPlan
    result: SyncResult
    stream: ImageStream | None
    """As stored after the run (None after a dry run of a stream not yet stored)."""


def _insecure_source(registry: str) -> Callable[[str, RegistryOptions], RegistryOptions]:
    """Plain HTTP for ``registry`` in this run (``--insecure``)."""

    def override(host: str, options: RegistryOptions) -> RegistryOptions:
        return dataclasses.replace(options, insecure=True) if host == registry else options

    return override


async def _open_for(config: Config, dry_run: bool) -> Store | None:
    """The store; for a dry run only when it exists (a dry run creates nothing)."""
    if dry_run and not state_exists(config):
        return None
    return await anyio.to_thread.run_sync(open_state, config)


async def import_image(
    config: Config,
    request: ImportRequest,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    result: SyncResult | None = None,
) -> ImportOutcome | Refusal:
    """Resolve ``request``, record it, and run it as one recorded sync (``should_stop``
    and ``result`` as for :func:`~mirrord.sync.sync_once`)."""
    target = parse_target(request)
    if isinstance(target, Refusal):
        return target
    async with AsyncExitStack() as stack:
        store = await _open_for(config, request.dry_run)
        if store is not None:
            stack.push_async_callback(store.aclose)
            if not request.dry_run:
                await stack.enter_async_context(store.acquire_run_lock(wait=request.wait))
                await store.abandon_running_jobs()
        stored = await store.get_stream(target.name) if store is not None else None
        plan = resolve(config, request, target, stored)
        if isinstance(plan, Refusal):
            return plan
        others = tuple(s for s in config.streams if s.name != plan.stream.name)
        run_config = dataclasses.replace(config, streams=(*others, plan.stream))
        override = _insecure_source(plan.stream.source_registry) if request.insecure else None
        pool = await stack.enter_async_context(ClientPool(run_config, options_override=override))
        if request.dry_run:
            result = await plan_once(run_config, store, pool, [plan.stream])
            return ImportOutcome(plan, result, stored)
        assert store is not None
        await _record_request(run_config, store, pool, plan, stored)
        result = await sync_once(
            run_config,
            store,
            pool,
            [plan.stream],
            complete=plan.complete,
            result=result,
            should_stop=should_stop,
        )
        return ImportOutcome(plan, result, await store.get_stream(plan.stream.name))


async def _record_request(
    config: Config, store: Store, pool: ClientPool, plan: ImportPlan, stored: ImageStream | None
) -> None:
    """Store the stream's spec; an import of an existing stream is a new generation."""
    destination = await open_destination(config, pool)
    updated = await store.upsert_stream(stream_spec(config, plan.stream, destination))
    if stored is not None and updated.generation == stored.generation:
        await store.bump_generation(plan.stream.name)
