"""Plan (pure) and engine (executes): the copy of images from a source into the mirror."""

from __future__ import annotations

from mirrord.copy._engine import (
    CopiedImage,
    CopyEngine,
    CopyStats,
    GetManifest,
    TagGate,
    select_platform,
)
from mirrord.copy._limits import check_manifest, index_level
from mirrord.copy._plan import Action, Imported, StreamPlan, TagPlan, decide
from mirrord.copy._shared import SharedBlobs
from mirrord.copy._verify import verified_chunks

__all__ = [
    "Action",
    "CopiedImage",
    "CopyEngine",
    "CopyStats",
    "GetManifest",
    "Imported",
    "SharedBlobs",
    "StreamPlan",
    "TagGate",
    "TagPlan",
    "check_manifest",
    "decide",
    "index_level",
    "select_platform",
    "verified_chunks",
]
