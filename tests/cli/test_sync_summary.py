"""The summary of `mirrord sync`: warnings and the counts of attached artifacts, in text
and in the `-o json` document."""

from __future__ import annotations

import io

from mirrord.cli._sync_output import print_summary, summary
from mirrord.copy import Action, TagPlan
from mirrord.sync import SyncResult


def test_the_text_summary_names_warnings_and_counts_attached_artifacts() -> None:
    result = SyncResult()
    plan = TagPlan("app", "1.0", "org/app", "m/app", Action.COPY)
    result.warn(plan, "SignaturesNotCopied", "signatures of q.io/org/app:1.0@sha256:ab not "
                "copied: HTTP 500")
    result.stats.referrers_copied = 3
    result.stats.signatures_verified = 1
    out = io.StringIO()
    print_summary(result, "text", out)
    text = out.getvalue()
    assert "WARNING app:1.0: [SignaturesNotCopied] signatures of q.io/org/app:1.0@" in text
    assert "signatures: 0 copied, 1 verified, 0 rejected; referrers: 3 copied" in text
    assert result.ok  # a warning does not fail the run
    document = summary(result)
    assert document["referrers"] == {"copied": 3}
    assert document["warnings"] == [{"stream": "app", "tag": "1.0",
                                     "reason": "SignaturesNotCopied",
                                     "message": "signatures of q.io/org/app:1.0@sha256:ab not "
                                                "copied: HTTP 500"}]
    quiet = io.StringIO()
    print_summary(SyncResult(), "text", quiet)
    assert "referrers" not in quiet.getvalue() and "WARNING" not in quiet.getvalue()
