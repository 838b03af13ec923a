"""Plan (pure) and engine (executes): the copy of images from a source into the mirror."""

from __future__ import annotations

from mirrord.copy._engine import CopyEngine, select_platform
from mirrord.copy._limits import check_manifest, index_level
from mirrord.copy._plan import Action, Imported, StreamPlan, TagPlan, decide
from mirrord.copy._types import CopiedImage, CopyStats, GetManifest, PushedManifest, TagGate
from mirrord.copy._verify import verified_chunks

__all__ = [
    "Action",
    "CopiedImage",
    "CopyEngine",
    "CopyStats",
    "GetManifest",
    "Imported",
    "PushedManifest",
    "StreamPlan",
    "TagGate",
    "TagPlan",
    "check_manifest",
    "decide",
    "index_level",
    "select_platform",
    "verified_chunks",
]
