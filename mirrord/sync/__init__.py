"""One run: config → tag selection → plan → copy → record → notify.

:func:`sync_once` runs the selected streams as one recorded job (what ``mirrord
sync`` and each daemon run do); :func:`plan_once` is the dry run. :func:`import_image`
is ``mirrord import-image``: it resolves a request the way ``oc import-image`` does
(:func:`resolve`), records it, and syncs it. Nothing here prints: callers render the
:class:`SyncResult`.
"""

from __future__ import annotations

from mirrord.sync._checks import check_buildable
from mirrord.sync._import_image import (
    ImportPlan,
    ImportRequest,
    Refusal,
    parse_target,
    resolve,
    stored_streams,
)
from mirrord.sync._import_run import ImportOutcome, import_image
from mirrord.sync._recorder import ImportedStream, mirror_repository_name, stream_spec
from mirrord.sync._result import Failure, SyncResult, TagResult
from mirrord.sync._run import plan_once, sync_once
from mirrord.sync._streamclaim import LeaseWatcher, hold_streams, lease_name, stream_claim
from mirrord.sync._streams import Deletion, delete_streams, runnable, with_stored
from mirrord.sync._syncer import Syncer
from mirrord.sync._tag import TagOutcome, run_tag

__all__ = [
    "Deletion",
    "Failure",
    "ImportOutcome",
    "ImportPlan",
    "ImportRequest",
    "ImportedStream",
    "LeaseWatcher",
    "Refusal",
    "SyncResult",
    "Syncer",
    "TagOutcome",
    "TagResult",
    "check_buildable",
    "delete_streams",
    "hold_streams",
    "import_image",
    "lease_name",
    "mirror_repository_name",
    "parse_target",
    "plan_once",
    "resolve",
    "run_tag",
    "runnable",
    "stored_streams",
    "stream_claim",
    "stream_spec",
    "sync_once",
    "with_stored",
]
