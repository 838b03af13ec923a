"""mirrord's RegistryOptions for a harness registry (the one harness module besides
synctools that imports mirrord: it says how mirrord reaches what the harness runs)."""

from __future__ import annotations

from typing import Any

from mirrord.registry import RegistryOptions

from .registry import RegistryProcess


def options_for(reg: RegistryProcess, **kw: Any) -> RegistryOptions:
    """How to reach a harness registry: plain HTTP, or https trusting its own CA. Its
    token server (plain HTTP, another port) is trusted with credentials, as a host
    configured under `registries:` would be."""
    if reg.token_server is not None:
        kw.setdefault("trusted_hosts", frozenset({reg.token_server.host}))
    if reg.ca_file is None:
        kw.setdefault("insecure", True)
    else:
        kw.setdefault("ca_file", reg.ca_file)
    return RegistryOptions(**kw)
