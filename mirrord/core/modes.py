"""Import mode and reference policy: OpenShift's two per-tag import settings. Pure.

One enum each; their values are OpenShift's spellings, which the configuration,
the command line (case-insensitively), the state and the ``image.openshift.io/v1``
documents all use. Being :class:`~enum.StrEnum` members, they compare equal to
those strings and serialise as them.
"""

from __future__ import annotations

import enum
from typing import Self


class _Choice(enum.StrEnum):
    @classmethod
    def parse(cls, text: str) -> Self:
        """The member spelled ``text`` in any case; ValueError naming the choices."""
        for member in cls:
            if text.lower() == member.value.lower():
                return member
        choices = ", ".join(m.value for m in cls)
        raise ValueError(f"expected one of {choices}, got {text!r}")


class ImportMode(_Choice):
    """``PreserveOriginal`` copies an index whole; ``Legacy`` one platform of it."""

    PRESERVE_ORIGINAL = "PreserveOriginal"
    LEGACY = "Legacy"


class ReferencePolicy(_Choice):
    """``Source`` records the upstream reference in tag history, ``Local`` the mirror's."""

    SOURCE = "Source"
    LOCAL = "Local"
