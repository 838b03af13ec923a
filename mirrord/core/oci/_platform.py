"""Platforms (``os/architecture[/variant]``) as found in an index's descriptors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mirrord.errors import ManifestError

# Variants a platform without one is taken to mean (containerd's normalisation).
_DEFAULT_VARIANTS = {"arm64": "v8", "arm": "v7"}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise ManifestError(f"invalid platform {text!r}: expected os/arch[/variant]")
        return cls(*parts)

    @classmethod
    def from_json(cls, data: Any) -> Platform | None:
        if not isinstance(data, dict):
            return None
        return cls(
            str(data.get("os", "")), str(data.get("architecture", "")), str(data.get("variant", ""))
        )

    def matches(self, other: Platform) -> bool:
        """True when ``other`` (from an index) satisfies this requested platform."""
        if (self.os, self.architecture) != (other.os, other.architecture):
            return False
        wanted = self.variant or _DEFAULT_VARIANTS.get(self.architecture, "")
        offered = other.variant or _DEFAULT_VARIANTS.get(other.architecture, "")
        return not wanted or wanted == offered

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)
