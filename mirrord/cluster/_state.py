"""What is mirrored, from the state store joined with the configuration (the I/O edge).

A stored stream becomes a :class:`MirrorRecord` when it has mirrored at least one
image into the configured registry mirror and is still wanted: a stream of the
configuration file (it mirrors tags continuously), or one ``mirrord import-image``
created (continuous when scheduled, else digest-only: its tags were copied once).
A stream the file no longer names is left out, as oc-mirror writes only what its
current configuration mirrors; so is one recorded in another mirror (the
configuration moved; the next sync records the new one).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from mirrord.cluster._model import MirrorRecord, SignatureScope, check_location
from mirrord.config import Config
from mirrord.core.imagestream import ImageStream
from mirrord.core.reference import normalise_registry
from mirrord.errors import ClusterResourcesError, ConfigError
from mirrord.state import Store

log = logging.getLogger("mirrord.cluster")


@dataclass(frozen=True)
class Inputs:
    """The generator's inputs gathered from one or more configurations.

    ``known``: every stream name the configurations and stores know (for ``--stream``
    checks). ``notes``: streams left out, and why (for the command to print).
    """

    records: tuple[MirrorRecord, ...] = ()
    mirror_targets: tuple[str, ...] = ()
    signature_scopes: tuple[SignatureScope, ...] = ()
    known: frozenset[str] = frozenset()
    notes: tuple[str, ...] = field(default=(), compare=False)


def mirror_target(config: Config) -> str:
    """``host[:port][/prefix]`` of a registry mirror; ConfigError naming ``mirror`` when
    it is an OCI layout or a name the OpenShift API cannot hold (an IPv6 address)."""
    target = config.mirror
    file = str(config.path) if config.path else "<embedded default>"
    if target.kind != "registry" or not target.registry:
        raise ConfigError(
            f"the mirror is an OCI layout ({target}): cluster resources name a registry; "
            "copy the layout into a registry (skopeo copy, or a mirrord with a docker:// "
            "mirror reading it) and generate them there",
            file=file,
            key="mirror",
        )
    location = f"{target.registry}/{target.prefix}".rstrip("/")
    try:
        check_location(location, "the mirror")
    except ClusterResourcesError as error:
        raise ConfigError(str(error), file=file, key="mirror") from None
    return location


def lookaside_url(config: Config) -> str | None:
    """HOOK(signatures): the URL clients read mirrord's lookaside from (issue 15's
    ``/sigstore/``), once the configuration names one; None until then."""
    return None


def _insecure(config: Config, host: str) -> bool:
    """Clients need ``insecure = true``: plain HTTP, or TLS not verified."""
    registry = config.registry_config(host)
    return registry.insecure or not registry.tls_verify


def _record(
    config: Config, target: str, stream: ImageStream, configured: Collection[str]
) -> MirrorRecord | str:
    """The stream's record, or why it has none."""
    if stream.created_by == "config" and stream.name not in configured:
        return f"{stream.name}: no longer in the configuration"
    if not any(tag.items for tag in stream.tags):
        return f"{stream.name}: has mirrored no image yet"
    mirror = stream.docker_image_repository
    if not mirror.startswith(target + "/"):
        return f"{stream.name}: recorded in {mirror}, not under the mirror {target}; sync it"
    host, _, path = stream.source.partition("/")
    source = f"{normalise_registry(host)}/{path}"  # docker.io for index.docker.io & co
    try:
        return MirrorRecord(
            source=source,
            mirror=mirror,
            # created_by, not the run's streams: import-image and the daemon run with
            # the imported streams added to the configuration
            tag_mirror=stream.created_by == "config" or stream.scheduled,
            insecure=_insecure(config, target.split("/", 1)[0]),
            source_insecure=_insecure(config, host),
        )
    except ClusterResourcesError as error:
        return f"{stream.name}: {error}"


def _signatures(config: Config, name: str) -> bool:
    """Whether the stream copies cosign attachments (an import-image stream: the defaults)."""
    wanted = {s.name: s.signatures for s in config.streams}
    return wanted.get(name, config.defaults.signatures)


async def gather(config: Config, store: Store | None, names: Collection[str] = ()) -> Inputs:
    """The records of ``config``'s mirrored streams (only ``names`` when given).

    ``store`` None: no state yet, so nothing is mirrored. Raises ConfigError when the
    mirror is not a registry (see :func:`mirror_target`).
    """
    target = mirror_target(config)
    stored = await store.list_streams() if store is not None else []
    configured = {s.name for s in config.streams}
    known = frozenset(configured | {s.name for s in stored})
    records: list[MirrorRecord] = []
    notes: list[str] = []
    signatures = False
    for stream in stored:
        if names and stream.name not in names:
            continue
        record = _record(config, target, stream, configured)
        if isinstance(record, str):
            notes.append(record)
            continue
        records.append(record)
        signatures = signatures or _signatures(config, stream.name)
    scopes = (SignatureScope(target, lookaside=lookaside_url(config)),) if signatures else ()
    return Inputs(tuple(records), (target,), scopes, known, tuple(notes))


def combine(inputs: Iterable[Inputs]) -> Inputs:
    """Several configurations' inputs, in order (the first one's mirrors first)."""
    records: list[MirrorRecord] = []
    targets: list[str] = []
    scopes: list[SignatureScope] = []
    known: set[str] = set()
    notes: list[str] = []
    for part in inputs:
        records += [r for r in part.records if r not in records]
        targets += [t for t in part.mirror_targets if t not in targets]
        scopes += [s for s in part.signature_scopes if s not in scopes]
        known |= part.known
        notes += part.notes
    return Inputs(tuple(records), tuple(targets), tuple(scopes), frozenset(known), tuple(notes))


def unknown_names(inputs: Inputs, names: Sequence[str]) -> list[str]:
    return [n for n in names if n not in inputs.known]
