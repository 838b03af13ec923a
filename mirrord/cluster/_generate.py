"""Records in, documents out: the pure core of ``mirrord cluster-resources``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from mirrord.cluster._documents import (
    ICSP_FILE,
    IDMS_FILE,
    ITMS_FILE,
    REGISTRIES_CONF_FILE,
    REGISTRIES_D_FILE,
    mirror_set,
    registries_conf,
    registries_d,
    yaml_text,
)
from mirrord.cluster._model import ClusterResources, MirrorRecord, SignatureScope, check_name
from mirrord.cluster._scope import complete, digest_entries, tag_entries
from mirrord.cluster._validate import check_mirror_set


def generate(
    records: Sequence[MirrorRecord],
    *,
    name: str,
    mirror_targets: Iterable[str] = (),
    per_repository: bool = False,
    signature_scopes: Iterable[SignatureScope] = (),
) -> ClusterResources:
    """The cluster resources describing ``records``.

    ``records`` in priority order (a source's mirrors are listed as they first appear);
    the same records give the same bytes. ``name`` is every object's ``metadata.name``
    (see :func:`resource_name`); ``mirror_targets`` go into an annotation so an
    object tells which mirrord wrote it. IDMS and ICSP list every digest mirror; ITMS
    only the records with ``tag_mirror``; a document without entries is left out, as
    is registries.d without ``signature_scopes``. Raises ClusterResourcesError when a
    document would not pass the OpenShift API's validation.
    """
    check_name(name)
    digest, tag = complete(
        digest_entries(records, per_repository), tag_entries(records, per_repository)
    )
    targets = ",".join(sorted(set(mirror_targets)))
    files: dict[str, str] = {}
    objects = []
    for file, entries in ((IDMS_FILE, digest), (ITMS_FILE, tag), (ICSP_FILE, digest)):
        if not entries:
            continue
        document = mirror_set(file, name, entries, targets)
        check_mirror_set(document)
        objects.append(document)
        files[file] = yaml_text(file, document)
    if digest or tag:
        files[REGISTRIES_CONF_FILE] = registries_conf(digest, tag, records)
    signatures = registries_d(signature_scopes)
    if signatures is not None:
        files[REGISTRIES_D_FILE] = signatures
    return ClusterResources(
        name=name, digest_mirrors=digest, tag_mirrors=tag, files=files, objects=tuple(objects)
    )
