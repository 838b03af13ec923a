"""The credential lookup chain: where mirrord looks for a registry's credential.

In order, first hit wins:

1. the registry's configured ``auth_file``;
2. ``$REGISTRY_AUTH_FILE``;
3. ``$XDG_RUNTIME_DIR/containers/auth.json`` (podman's own file; without
   ``$XDG_RUNTIME_DIR``, ``/run/containers/<uid>/auth.json`` as podman uses then);
4. ``~/.config/containers/auth.json``;
5. ``$DOCKER_CONFIG/config.json``, or ``~/.docker/config.json``;
6. systemd credentials: each auth file in ``$CREDENTIALS_DIRECTORY``, by name;
7. the keyring entry written by ``mirrord login``;
8. nothing: anonymous.

The configured ``auth_file`` must exist: a missing one stops the lookup with a
CredentialError naming it, rather than going on anonymously. The other files
may be absent and are skipped; ``$REGISTRY_AUTH_FILE`` too, as containers/image
reads it (the container image sets it to a pull secret that a mirror of public
images does not need). A malformed file stops the lookup with a CredentialError
naming it. Every call may block (file and D-Bus I/O): async callers use
``anyio.to_thread.run_sync``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from mirrord.credentials._authfile import read_auth_file
from mirrord.credentials._authwrite import default_auth_file
from mirrord.credentials._credential import Credential, LookupStep, registry_host
from mirrord.credentials._keyring import KEYRING_SOURCE, keyring_lookup
from mirrord.credentials._systemd import systemd_auth_documents
from mirrord.errors import CredentialError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Probe:
    step: LookupStep
    credential: Credential | None = None
    error: CredentialError | None = None


def resolve_credential(
    registry: str,
    repository: str = "",
    *,
    auth_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    use_keyring: bool = True,
) -> Credential | None:
    """The credential for ``registry`` (host[:port]) and ``repository``; None: anonymous.

    ``env`` defaults to ``os.environ`` (``HOME`` included, so tests can
    isolate). Raises CredentialError for a source that exists but is malformed
    or unreadable.
    """
    for probe in _walk(registry, repository, auth_file, env, use_keyring):
        if probe.error is not None:
            raise probe.error
        if probe.credential is not None:
            log.debug("credentials for %s: %s", registry, probe.step)
            return probe.credential
    log.debug("credentials for %s: none found; anonymous", registry)
    return None


def describe_lookup(
    registry: str,
    repository: str = "",
    *,
    auth_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    use_keyring: bool = True,
) -> tuple[LookupStep, ...]:
    """The sources :func:`resolve_credential` consults, each with its outcome.

    Stops at the source that answers (a credential, or an error). Meant for
    messages such as "no credentials for quay.io (looked in: …)"; it never
    holds a secret and never raises for a malformed source.
    """
    steps: list[LookupStep] = []
    for probe in _walk(registry, repository, auth_file, env, use_keyring):
        if probe.error is not None:
            steps.append(LookupStep(probe.step.source, f"error: {probe.error}"))
            break
        steps.append(probe.step)
        if probe.credential is not None:
            break
    return tuple(steps)


def auth_file_sources(env: Mapping[str, str] | None = None) -> list[tuple[str, Path]]:
    """Sources 2 to 5 (the files besides a configured ``auth_file``) as
    ``(description, path)``, in lookup order; unset ones left out."""
    environ: Mapping[str, str] = os.environ if env is None else env
    sources: list[tuple[str, Path]] = []
    if value := environ.get("REGISTRY_AUTH_FILE"):
        sources.append((f"$REGISTRY_AUTH_FILE ({value})", Path(value)))
    if environ.get("XDG_RUNTIME_DIR") or env is None:
        path = default_auth_file(env)
        sources.append((f"auth file {path}", path))
    home = _home(environ, fallback=env is None)
    if home is not None:
        path = home / ".config" / "containers" / "auth.json"
        sources.append((f"auth file {path}", path))
    if value := environ.get("DOCKER_CONFIG"):
        path = Path(value, "config.json")
        sources.append((f"docker config {path}", path))
    elif home is not None:
        path = home / ".docker" / "config.json"
        sources.append((f"docker config {path}", path))
    return sources


def _walk(
    registry: str,
    repository: str,
    auth_file: Path | None,
    env: Mapping[str, str] | None,
    use_keyring: bool,
) -> Iterator[_Probe]:
    host = registry_host(registry)
    environ: Mapping[str, str] = os.environ if env is None else env
    if auth_file is not None:  # named on purpose: it must exist
        yield _probe_file(Path(auth_file), f"auth file {auth_file}", host, repository, True)
    for source, path in auth_file_sources(env):
        yield _probe_file(path, source, host, repository)
    if directory := environ.get("CREDENTIALS_DIRECTORY"):
        yield from _probe_systemd(Path(directory), host, repository)
    if use_keyring:
        credential, outcome = keyring_lookup(host, repository)
        yield _Probe(LookupStep(KEYRING_SOURCE, outcome), credential)


def _probe_file(
    path: Path, source: str, host: str, repository: str, required: bool = False
) -> _Probe:
    try:
        document = read_auth_file(path, source)
        if document is None and required:
            return _Probe(LookupStep(source, "not found"), error=_missing(path, host))
        if document is None:
            return _Probe(LookupStep(source, "not found"))
        credential, outcome = document.find(host, repository)
    except CredentialError as exc:
        return _Probe(LookupStep(source, "malformed"), error=exc)
    return _Probe(LookupStep(source, outcome), credential)


def _missing(path: Path, host: str) -> CredentialError:
    return CredentialError(
        f"auth_file {path} for {host} (from the configuration) does not exist; "
        "create it, or remove auth_file from the registry's entry"
    )


def _probe_systemd(directory: Path, host: str, repository: str) -> Iterator[_Probe]:
    label = f"systemd credentials ({directory})"
    found = False
    try:
        for document in systemd_auth_documents(directory):
            found = True
            credential, outcome = document.find(host, repository)
            yield _Probe(LookupStep(document.origin, outcome), credential)
    except CredentialError as exc:
        yield _Probe(LookupStep(label, "malformed"), error=exc)
        return
    if not found:
        yield _Probe(LookupStep(label, "no auth file"))


def _home(environ: Mapping[str, str], *, fallback: bool) -> Path | None:
    """``$HOME``; for the real environment, the password database when it is unset."""
    if home := environ.get("HOME"):
        return Path(home)
    if not fallback:
        return None
    try:
        return Path.home()
    except RuntimeError:
        return None
