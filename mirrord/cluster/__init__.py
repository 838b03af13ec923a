"""Cluster handoff: ImageDigestMirrorSet, ImageTagMirrorSet, ImageContentSourcePolicy,
a registries.conf drop-in and registries.d from what mirrord has mirrored.

The core is pure: :func:`generate` turns :class:`MirrorRecord` s (source repository →
mirror repository, digest-only or also tags) into documents. The edge reads the
state store and the configuration (:func:`build`), writes a directory atomically and
only when a file changed (:func:`write_files`), refreshes
``<state_dir>/cluster-resources/`` after a sync (:func:`refresh`), and renders the
daemon's ``/api/v1/cluster-resources`` body (:func:`render`).
"""

from __future__ import annotations

from mirrord.cluster._documents import (
    FILE_NAMES,
    ICSP_FILE,
    IDMS_FILE,
    ITMS_FILE,
    REGISTRIES_CONF_FILE,
    REGISTRIES_D_FILE,
)
from mirrord.cluster._files import Change, plan_changes, write_files
from mirrord.cluster._generate import generate
from mirrord.cluster._http import Rendered, render, serve
from mirrord.cluster._model import (
    ClusterResources,
    Entry,
    MirrorRecord,
    SignatureScope,
    resource_name,
)
from mirrord.cluster._refresh import build, default_directory, refresh
from mirrord.cluster._state import Inputs, gather, mirror_target
from mirrord.cluster._validate import check_mirror_set

__all__ = [
    "FILE_NAMES",
    "ICSP_FILE",
    "IDMS_FILE",
    "ITMS_FILE",
    "REGISTRIES_CONF_FILE",
    "REGISTRIES_D_FILE",
    "Change",
    "ClusterResources",
    "Entry",
    "Inputs",
    "MirrorRecord",
    "Rendered",
    "SignatureScope",
    "build",
    "check_mirror_set",
    "default_directory",
    "gather",
    "generate",
    "mirror_target",
    "plan_changes",
    "refresh",
    "render",
    "resource_name",
    "serve",
    "write_files",
]
