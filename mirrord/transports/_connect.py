"""Open registry clients and the mirror destination from the configuration.

One client per (registry, credential) is shared by every stream of a run, so
connections, tokens and the per-registry concurrency limit are shared too.
Credential lookup blocks (files, the keyring), so it runs in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio

from mirrord.config import DEFAULT_REGISTRY, Config, RegistryConfig
from mirrord.credentials import Credential, resolve_credential
from mirrord.registry import (
    RegistryClient,
    RegistryOptions,
    RegistryPacing,
    RetryPolicies,
    RetryPolicy,
    prepare_ssl_context,
)
from mirrord.transports._base import Destination
from mirrord.transports._ocilayout import OCILayoutDestination
from mirrord.transports._registry import RegistryDestination

RequestHook = Callable[[str, str, str, int], None]
"""``(registry, method, path, status)`` after each answer (status 0: none came)."""


def registry_options(config: Config, registry: str) -> RegistryOptions:
    """How to reach ``registry`` under ``config``: its ``registries:`` entry, the
    ``limits:``, and the hosts trusted with credentials as token realms (every host
    configured under ``registries:``)."""
    settings: RegistryConfig = config.registry_config(registry)
    limits = config.limits
    return RegistryOptions(
        insecure=settings.insecure,
        tls_verify=settings.tls_verify,
        ca_file=settings.ca_file,
        max_concurrency=settings.max_concurrency,
        rate=settings.rate,
        http2=settings.http2,
        monolithic_max=settings.monolithic_max,
        trusted_hosts=frozenset(config.registries) - {DEFAULT_REGISTRY},
        max_manifest_size=limits.max_manifest_size,
        max_tag_pages=limits.max_tag_pages,
        max_tags=limits.max_upstream_tags,
        request_timeout=settings.request_timeout,
        stall_timeout=settings.stall_timeout,
        min_transfer_rate=settings.min_transfer_rate,
        retry_budget=settings.retry_budget,
        outage_budget=settings.outage_budget,
        ratelimit_min=settings.ratelimit_min,
    )


def prepare_tls(config: Config) -> None:
    """Start building the TLS contexts of the registries a run of ``config`` reaches first
    (the mirror's, every stream's source), each in a thread of its own, while the caller
    goes on (see :func:`mirrord.registry.prepare_ssl_context`); the clients made later use
    them. Registries whose TLS inputs are the same share one build."""
    hosts = [s.source_registry for s in config.streams]
    if config.mirror.registry is not None:
        hosts.insert(0, config.mirror.registry)
    for host in dict.fromkeys(hosts):
        prepare_ssl_context(host, registry_options(config, host))


def retry_policy(settings: RegistryConfig) -> RetryPolicy:
    return RetryPolicy(budget=settings.retry_budget, outage_budget=settings.outage_budget)


def retry_policies(config: Config) -> RetryPolicies:
    """Each configured registry's retry policy; the ``default`` entry's for the others."""
    return RetryPolicies(
        default=retry_policy(config.registry_config(DEFAULT_REGISTRY)),
        registries={
            host: retry_policy(settings)
            for host, settings in config.registries.items()
            if host != DEFAULT_REGISTRY
        },
    )


async def find_credential(config: Config, registry: str, repository: str) -> Credential | None:
    settings = config.registry_config(registry)
    return await anyio.to_thread.run_sync(
        lambda: resolve_credential(registry, repository, auth_file=settings.auth_file)
    )


class ClientPool:
    """Registry clients of one run, keyed by registry and credential; closed together."""

    def __init__(
        self,
        config: Config,
        on_request: RequestHook | None = None,
        options_override: Callable[[str, RegistryOptions], RegistryOptions] | None = None,
    ) -> None:
        self.config = config
        self._on_request = on_request
        self._override = options_override
        self._clients: dict[tuple[str, str, str], RegistryClient] = {}
        self._pacing: dict[str, RegistryPacing] = {}
        self._lock = anyio.Lock()

    async def client(self, registry: str, repository: str = "") -> RegistryClient:
        credential = await find_credential(self.config, registry, repository)
        key = (
            registry,
            credential.source if credential else "",
            credential.username if credential else "",
        )
        async with self._lock:
            if key not in self._clients:
                options = registry_options(self.config, registry)
                if self._override is not None:
                    options = self._override(registry, options)
                if registry not in self._pacing:
                    self._pacing[registry] = RegistryPacing.for_options(options)
                self._clients[key] = RegistryClient(
                    registry,
                    credential=credential,
                    options=options,
                    on_request=self._hook_for(registry),
                    pacing=self._pacing[registry],
                )
            return self._clients[key]

    def clients(self) -> list[RegistryClient]:
        """The clients opened so far (for metrics: each has its ``throttle``)."""
        return list(self._clients.values())

    def pacings(self) -> dict[str, RegistryPacing]:
        """Each registry's pacing (limits, throttle, pull allowance), shared by its clients."""
        return dict(self._pacing)

    @property
    def retry(self) -> RetryPolicies:
        """The retry policy of every registry, as the configuration sets them."""
        return retry_policies(self.config)

    def _hook_for(self, registry: str) -> Callable[[str, str, int], None] | None:
        hook = self._on_request
        if hook is None:
            return None
        return lambda method, path, status: hook(registry, method, path, status)

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()

    async def __aenter__(self) -> ClientPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def open_destination(config: Config, pool: ClientPool) -> Destination:
    """The mirror: a registry under its prefix, or the OCI layout directory."""
    mirror = config.mirror
    if mirror.kind == "oci":
        assert mirror.path is not None
        return OCILayoutDestination(mirror.path, config.limits.max_manifest_size)
    assert mirror.registry is not None
    client = await pool.client(mirror.registry, mirror.prefix)
    return RegistryDestination(client, mirror.prefix)
