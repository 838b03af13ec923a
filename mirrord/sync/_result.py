"""What a run did: per tag, per stream, and the run's counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from mirrord.copy import CopiedImage, CopyStats, StreamPlan, TagPlan
from mirrord.core.units import human_bytes
from mirrord.errors import InvalidNameError, MirrordError
from mirrord.notify import DeliveryCounts


@dataclass(frozen=True, slots=True)
class TagResult:
    """The outcome for one tag: ``copied``, ``unchanged``, ``failed`` or ``planned``."""

    plan: TagPlan
    outcome: str
    image: CopiedImage | None = None
    error: MirrordError | None = None


@dataclass
class SyncResult:
    """Everything one run did, for the summary, the state store and notifications."""

    plans: list[StreamPlan] = field(default_factory=list)
    results: list[TagResult] = field(default_factory=list)
    stats: CopyStats = field(default_factory=CopyStats)
    seconds: float = 0.0
    dry_run: bool = False
    # Copies not started because a stop was requested (the next run does them).
    skipped: int = 0
    # Copies cut short when the stop's grace period ran out (their tags are unchanged).
    cut: int = 0
    # The signal that stopped the run ("SIGTERM"), set by the command that caught it.
    interrupted: str = ""
    # Notification deliveries at the end of the run (None: no receiver configured).
    notifications: DeliveryCounts | None = None
    # A dry run's tags recorded in the state but gone upstream, per stream, and whether
    # the stream deletes them from the mirror (delete_removed_tags).
    gone_upstream: dict[str, tuple[tuple[str, ...], bool]] = field(default_factory=dict)
    # A dry run's tags the run would follow after the stream's own (``mirrord tag
    # --alias``/``--scheduled``), per stream: (tag, policy, what it follows).
    followed: dict[str, tuple[tuple[str, str, str], ...]] = field(default_factory=dict)
    # The blobs of the images to copy, digest -> size, each once however many images
    # share it (a run streams it once, mounts it elsewhere): a dry run's, or a run's
    # sized before copying (estimate_bytes).
    planned_blobs: dict[str, int] = field(default_factory=dict)
    # What the run did without but did not fail for: signatures a lookaside could not give
    # (no policy needed them), referrers skipped. Named in the summary; ``ok`` unaffected.
    warnings: list[Failure] = field(default_factory=list)

    def warn(self, plan: TagPlan, reason: str, message: str) -> None:
        """Record a warning about ``plan``'s tag (the gates' ``warn`` hook)."""
        self.warnings.append(Failure(plan.stream, plan.tag, reason, message))

    @property
    def planned_bytes(self) -> int:
        """A dry run's bytes to copy, a shared blob counted once."""
        return sum(self.planned_blobs.values())

    @property
    def planned_referrers(self) -> int:
        """A dry run's referrers to copy (each tag's; one shared by two tags counts twice)."""
        return sum(r.plan.referrers_to_copy or 0 for r in self.results)

    @property
    def failed(self) -> list[TagResult]:
        return [r for r in self.results if r.outcome == "failed"]

    @property
    def stream_errors(self) -> list[StreamPlan]:
        return [p for p in self.plans if p.error is not None]

    @property
    def invalid_tags(self) -> list[tuple[str, str]]:
        """``(stream, tag)`` for each invalid upstream tag a stream would have selected."""
        return [(p.stream, tag) for p in self.plans for tag in p.invalid]

    @property
    def ok(self) -> bool:
        return (
            not self.failed
            and not self.stream_errors
            and not self.skipped
            and not self.invalid_tags
            and not self.cut
            and not self.interrupted
        )

    @property
    def failed_count(self) -> int:
        """Images that failed (an invalid upstream tag counts as one), a stream that failed
        as a whole counting as one."""
        return self.stats.images_failed + len(self.stream_errors) + len(self.invalid_tags)

    @property
    def planned_count(self) -> int:
        """A dry run's images to copy."""
        return sum(1 for r in self.results if r.outcome == "planned")

    def failures(self) -> list[Failure]:
        """Each failed tag, then each stream that failed as a whole, then each invalid
        upstream tag a stream would have selected."""
        tags = [
            Failure(r.plan.stream, r.plan.tag, _reason(r.error), str(r.error)) for r in self.failed
        ]
        streams = [
            Failure(p.stream, "", _reason(p.error), str(p.error)) for p in self.stream_errors
        ]
        # The stream, not the tag, is named: an invalid name is never a key anywhere.
        invalid = [
            Failure(
                stream,
                "",
                "InvalidName",
                str(InvalidNameError(tag, "is listed upstream but is not a valid tag; skipped")),
            )
            for stream, tag in self.invalid_tags
        ]
        return tags + streams + invalid

    def summary_line(self) -> str:
        """``images: 12 copied, 40 unchanged, 0 failed; blobs: …; 412.3 MiB in 9.8s``."""
        s = self.stats
        if self.dry_run:
            return (
                f"dry run: images: {self.planned_count} to copy, {s.images_unchanged} "
                f"unchanged, {self.failed_count} failed; nothing was changed "
                f"({self.seconds:.1f}s)"
            )
        return (
            f"images: {s.images_copied} copied, {s.images_unchanged} unchanged, "
            f"{self.failed_count} failed; blobs: {s.blobs_copied} copied, {s.blobs_mounted} "
            f"mounted, {s.blobs_present} present; {human_bytes(s.bytes_copied)} in "
            f"{self.seconds:.1f}s"
        )


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed tag (``tag`` empty: the stream failed as a whole), and why."""

    stream: str
    tag: str
    reason: str
    message: str

    @property
    def where(self) -> str:
        return f"{self.stream}:{self.tag}" if self.tag else self.stream


def _reason(error: MirrordError | None) -> str:
    return error.reason if error is not None else ""
