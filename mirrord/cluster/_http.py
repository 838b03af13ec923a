"""The daemon's ``/api/v1/cluster-resources`` body, as a plain function (no web framework).

``GET /api/v1/cluster-resources``: the IDMS, ITMS and ICSP objects as one ``v1``
``List`` (what ``oc apply -f`` takes), YAML or JSON by ``Accept`` (YAML by default).
``GET /api/v1/cluster-resources/{file}``: one generated file as written
(``registries.conf``, ``registries.d/mirrord.yaml``, ``idms-mirrord.yaml`` …).
"""

from __future__ import annotations

import json
from typing import NamedTuple

import yaml

from mirrord.cluster._model import ClusterResources
from mirrord.cluster._refresh import build
from mirrord.config import Config
from mirrord.errors import ClusterResourcesError, ConfigError
from mirrord.state import Store

YAML = "application/yaml"
JSON = "application/json"
TOML = "application/toml"
_YAML_TYPES = (YAML, "application/x-yaml", "text/yaml", "text/x-yaml")


class Rendered(NamedTuple):
    status: int
    body: bytes
    media_type: str


async def serve(
    config: Config, store: Store, accept: str = "", file: str | None = None
) -> Rendered:
    """The endpoint: the resources generated now from the state (what the last sync
    wrote to ``<state_dir>/cluster-resources``, unless a file was edited by hand).
    An OCI-layout mirror (or one the API cannot name) answers 409 with the reason."""
    try:
        resources, _ = await build([(config, store)])
    except (ConfigError, ClusterResourcesError) as error:
        return Rendered(409, json.dumps({"error": str(error)}).encode(), JSON)
    return render(resources, accept, file)


def render(resources: ClusterResources, accept: str = "", file: str | None = None) -> Rendered:
    """The response for ``Accept: accept`` (and ``file`` when one file is asked for)."""
    if file is not None:
        if file not in resources.files:
            message = {"error": f"no generated file {file!r}", "files": list(resources.files)}
            return Rendered(404, json.dumps(message).encode(), JSON)
        media_type = TOML if file.endswith(".conf") else YAML
        return Rendered(200, resources.files[file].encode(), f"{media_type}; charset=utf-8")
    chosen = negotiate(accept)
    if chosen is None:
        message = {"error": f"can answer {YAML} or {JSON}, not {accept!r}"}
        return Rendered(406, json.dumps(message).encode(), JSON)
    document = {"apiVersion": "v1", "kind": "List", "items": [dict(o) for o in resources.objects]}
    if chosen == JSON:
        return Rendered(200, json.dumps(document, indent=2).encode() + b"\n", JSON)
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False).encode()
    return Rendered(200, body, f"{YAML}; charset=utf-8")


def negotiate(accept: str) -> str | None:
    """YAML or JSON, the one ``accept`` weighs higher (YAML on a tie or no header);
    None when it accepts neither."""
    if not accept.strip():
        return YAML
    weights = {YAML: 0.0, JSON: 0.0}
    for part in accept.split(","):
        media_range, *params = (p.strip() for p in part.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = max(0.0, min(1.0, float(value)))
                except ValueError:
                    quality = 0.0
        media_range = media_range.lower()
        if media_range in _YAML_TYPES:
            weights[YAML] = max(weights[YAML], quality)
        elif media_range == JSON:
            weights[JSON] = max(weights[JSON], quality)
        elif media_range in ("*/*", "application/*"):
            weights[YAML] = max(weights[YAML], quality * 0.999)  # specific types win
            weights[JSON] = max(weights[JSON], quality * 0.998)
    best = max(weights, key=lambda k: weights[k])
    return best if weights[best] > 0 else None
