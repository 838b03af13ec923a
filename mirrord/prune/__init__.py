"""The pruner: OpenShift's ImagePruner (``oc adm prune images``) for mirrord's mirror.

:func:`plan_prune` decides which tag revisions go (pure); :func:`run_prune` runs a
prune (a dry run unless confirmed) and records it as a ``prune`` job with the
pruner's status conditions. The rules are in :mod:`._run`'s docstring.
"""

from __future__ import annotations

from mirrord.prune._orphans import (
    KEPT_CONFIGURED,
    KEPT_ELSEWHERE,
    KEPT_SHARED,
    OrphanDecision,
    OrphanPlan,
)
from mirrord.prune._plan import (
    KEPT_CURRENT,
    KEPT_IN_USE,
    KEPT_PINNED,
    KEPT_REFERENCED,
    KEPT_RETAINED,
    KEPT_REVISIONS,
    KEPT_YOUNG,
    PruneOverrides,
    PrunePlan,
    PruneSettings,
    Revision,
    closure,
    plan_prune,
)
from mirrord.prune._run import (
    DELETES_DISABLED,
    PRUNER,
    PruneResult,
    run_prune,
    update_schedule_condition,
)

__all__ = [
    "DELETES_DISABLED",
    "KEPT_CONFIGURED",
    "KEPT_CURRENT",
    "KEPT_ELSEWHERE",
    "KEPT_IN_USE",
    "KEPT_PINNED",
    "KEPT_REFERENCED",
    "KEPT_RETAINED",
    "KEPT_REVISIONS",
    "KEPT_SHARED",
    "KEPT_YOUNG",
    "PRUNER",
    "OrphanDecision",
    "OrphanPlan",
    "PruneOverrides",
    "PrunePlan",
    "PruneResult",
    "PruneSettings",
    "Revision",
    "closure",
    "plan_prune",
    "run_prune",
    "update_schedule_condition",
]
