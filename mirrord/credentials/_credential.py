"""The credential value type and the registry/key names the sources share."""

from __future__ import annotations

from dataclasses import dataclass, field

from mirrord.core.reference import normalise_registry
from mirrord.errors import CredentialError

#: The user name Docker uses for an identity (refresh) token.
TOKEN_USERNAME = "<token>"


@dataclass(frozen=True, slots=True)
class Credential:
    """A user name and secret for one registry, and where it came from.

    ``source`` names the origin for humans and error messages
    (``auth file /etc/mirrord/pull-secret.json``, ``keyring``…), never the
    secret. ``identity_token`` is an auth.json ``identitytoken``: a refresh
    token for the registry's OAuth2 token endpoint. When an entry has only
    that token, ``username`` is ``<token>`` and ``password`` the token, as
    Docker does. Neither secret shows in ``repr`` or ``str``.
    """

    username: str
    password: str = field(repr=False)
    source: str
    identity_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class LookupStep:
    """One source the lookup consulted and what it found (never a secret)."""

    source: str
    outcome: str

    def __str__(self) -> str:
        return f"{self.source}: {self.outcome}"


def normalise_auth_key(key: str) -> str:
    """An ``auths`` key in canonical form: ``host[:port][/path]``.

    A key with a scheme is Docker's legacy form (``https://index.docker.io/v1/``):
    only its host counts. Docker Hub's aliases become ``docker.io``.
    """
    text = key.strip()
    if "://" in text:
        text = text.split("://", 1)[1].split("/", 1)[0]
    text = text.strip("/")
    host, sep, path = text.partition("/")
    return normalise_registry(host) + sep + path


def registry_host(registry: str) -> str:
    """``registry`` as a canonical host[:port]; a path or an empty name is refused."""
    host = normalise_auth_key(registry)
    if not host or "/" in host:
        raise CredentialError(f"expected a registry host[:port], got {registry!r}")
    return host


def candidate_keys(registry: str, repository: str = "") -> list[str]:
    """The ``auths`` keys to try for a repository, most specific first.

    ``quay.io`` + ``ns/repo`` gives ``quay.io/ns/repo``, ``quay.io/ns``,
    ``quay.io``. A one-part Docker Hub repository gains ``library/``.
    """
    key = normalise_auth_key(registry)
    host, _, prefix = key.partition("/")
    parts = [p for p in f"{prefix}/{repository}".split("/") if p]
    if host == "docker.io" and len(parts) == 1:
        parts.insert(0, "library")
    keys = ["/".join([host, *parts[:n]]) for n in range(len(parts), 0, -1)]
    keys.append(host)
    return keys
