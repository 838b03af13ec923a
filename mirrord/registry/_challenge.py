"""``WWW-Authenticate`` challenges (RFC 7235, distribution ``token.md``) and token scopes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

_PARAM = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_QUOTED_PAIR = re.compile(r"\\(.)")
# Greedy name, anchored on a whole API route: a repository may itself have path components
# named "tags", "blobs" or "manifests" (team/tags/app).
_REPOSITORY_PATH = re.compile(
    r"^/v2/(?P<name>.+)/(?:manifests/[^/]+|tags/list|blobs/uploads/[^/]*|blobs/[^/]+"
    r"|referrers/[^/]+)/?$"
)


@dataclass(frozen=True, slots=True)
class Challenge:
    """One parsed challenge: ``scheme`` is ``basic`` or ``bearer`` (lower-cased)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")

    @property
    def service(self) -> str:
        return self.params.get("service", "")

    @property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.params.get("scope", "").split())


def parse_challenges(header: str) -> list[Challenge]:
    """Parse every challenge in a ``WWW-Authenticate`` header value."""
    challenges: list[Challenge] = []
    # A new challenge starts with a scheme token not followed by "=".
    for match in re.finditer(r"(?:^|,)\s*([A-Za-z][A-Za-z0-9_-]*)\s+(?=[^=,\s]+\s*=)", header):
        start = match.end()
        following = re.search(r",\s*[A-Za-z][A-Za-z0-9_-]*\s+[^=,\s]+\s*=", header[start:])
        end = start + following.start() if following else len(header)
        # finditer, not findall: findall reports an unmatched group as "", not None.
        params = {
            m.group(1).lower(): (
                _QUOTED_PAIR.sub(r"\1", m.group(2)) if m.group(2) is not None else m.group(3)
            )
            for m in _PARAM.finditer(header[start:end])
        }
        challenges.append(Challenge(match.group(1).lower(), params))
    if not challenges and header.strip():
        challenges.append(Challenge(header.strip().split()[0].lower()))
    return challenges


def merge_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """One scope per resource with the union of its actions, actions and scopes sorted.

    ``repository:a:pull,push`` and a challenge's ``repository:a:push,pull`` are the
    same grant (``token-scope.md``: actions are a set); cached tokens are keyed by
    this form, so a replacement token lands where the refused one was.
    """
    actions: dict[str, set[str]] = {}
    for scope in scopes:
        resource, _, granted = scope.rpartition(":")
        if not resource:  # not type:name:actions; keep it as it is
            actions.setdefault(scope, set())
            continue
        actions.setdefault(resource, set()).update(a for a in granted.split(",") if a)
    return tuple(
        sorted(f"{resource}:{','.join(sorted(acts))}" if acts else resource
               for resource, acts in actions.items())
    )


def request_scopes(method: str, url: str) -> tuple[str, ...]:
    """The token scopes a request needs, derived from its method and path.

    ``token-scope.md``: reads need ``pull``; uploads and manifest pushes
    ``pull,push``; deletes ``delete``; a cross-repository mount also needs
    ``pull`` on the ``from`` repository.
    """
    parts = urlsplit(url)
    match = _REPOSITORY_PATH.match(parts.path)
    if not match:
        return ()
    name = match.group("name")
    if method in ("GET", "HEAD"):
        return (f"repository:{name}:pull",)
    if method == "DELETE":
        return (f"repository:{name}:delete",)
    scopes = [f"repository:{name}:pull,push"]
    source = parse_qs(parts.query).get("from")
    if source and source[0] != name:
        scopes.append(f"repository:{source[0]}:pull")
    return tuple(scopes)
