"""``registries.d/mirrord.yaml`` for clients: where the mirror's signatures are.

containers-registries.d(5): clients (podman, CRI-O, skopeo) look up the *mirror* reference
they pull from (the most specific ``docker:`` key matching host/namespace/repo) and read its
``lookaside`` (simple signing) and ``use-sigstore-attachments`` (cosign ``.sig`` tags).
Each entry also carries the pre-5.22 spelling ``sigstore`` of ``lookaside``, so older
containers/image versions (RHEL 8) find it too; newer ones prefer ``lookaside``.

The document is byte-stable: the same entries in any order give the same text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from mirrord.errors import ConfigError

from ._layout import check_lookaside_url

_SCOPE = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
)
_HEADER = ("# Written by mirrord: where the mirror's image signatures are\n"
           "# (containers-registries.d(5)). Install as /etc/containers/registries.d/mirrord.yaml;\n"
           "# regenerated on every sync.\n")


@dataclass(frozen=True)
class RegistriesDEntry:
    """One mirror scope (``host[:port][/prefix]``, as clients pull from it) and what to
    tell clients about it: the lookaside base URL (``http://mirror:8080/sigstore``) and/or
    that cosign attachments are mirrored next to the images."""

    scope: str
    lookaside: str | None = None
    use_sigstore_attachments: bool = False


def registries_d_document(entries: Iterable[RegistriesDEntry]) -> str:
    """The YAML text. Identical duplicate entries collapse; two different entries for one
    scope, an invalid scope or URL, or an entry saying nothing raise :class:`ConfigError`."""
    merged: dict[str, RegistriesDEntry] = {}
    for entry in entries:
        key = f"registries.d docker[{entry.scope!r}]"
        if not _SCOPE.fullmatch(entry.scope):
            raise ConfigError("not a host[:port][/namespace] scope", key=key)
        if entry.lookaside is None and not entry.use_sigstore_attachments:
            raise ConfigError("an entry needs a lookaside or use-sigstore-attachments", key=key)
        if entry.lookaside is not None:
            check_lookaside_url(entry.lookaside, key=key)
        previous = merged.setdefault(entry.scope, entry)
        if previous != entry:
            raise ConfigError(f"two different settings: {previous} and {entry}", key=key)
    docker: dict[str, dict[str, object]] = {}
    for scope in sorted(merged):
        entry = merged[scope]
        section: dict[str, object] = {}
        if entry.lookaside is not None:
            url = entry.lookaside.rstrip("/")
            section["lookaside"] = url
            section["sigstore"] = url
        if entry.use_sigstore_attachments:
            section["use-sigstore-attachments"] = True
        docker[scope] = section
    body = yaml.safe_dump({"docker": docker}, default_flow_style=False, sort_keys=True)
    return _HEADER + body
