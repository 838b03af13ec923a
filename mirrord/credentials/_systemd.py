"""systemd credentials: pull secrets passed with ``LoadCredential=`` / ``SetCredential=``.

systemd puts each credential in a file under ``$CREDENTIALS_DIRECTORY``, named
by the credential (``LoadCredential=pull-secret:/etc/mirrord/pull-secret.json``
gives ``$CREDENTIALS_DIRECTORY/pull-secret``). Every file there that is a JSON
object with an ``auths`` object is an auth file; the others (an API token, a
webhook key) belong to someone else and are skipped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from mirrord.credentials._authfile import AuthDocument, parse_auth_document, read_secret_file
from mirrord.errors import CredentialError

log = logging.getLogger(__name__)

#: A pull secret is a few KiB; anything much larger is some other credential.
MAX_CREDENTIAL_SIZE = 1 << 20


def systemd_auth_documents(directory: Path) -> Iterator[AuthDocument]:
    """The auth files among the credentials in ``directory``, by name.

    A missing directory yields nothing. A file that looks like an auth file
    (a JSON object with ``auths``) but is malformed is a CredentialError.
    """
    try:
        with os.scandir(directory) as entries:
            names = sorted(entry.name for entry in entries if entry.is_file())
    except (FileNotFoundError, NotADirectoryError):
        log.debug("systemd credentials directory %s: not found", directory)
        return
    except OSError as exc:
        raise CredentialError(
            f"systemd credentials directory {directory}: cannot list: {exc.strerror}"
        ) from None
    for name in names:
        document = _read_credential(directory / name, f"systemd credential {name}")
        if document is not None:
            yield document


def _read_credential(path: Path, origin: str) -> AuthDocument | None:
    try:
        if path.stat().st_size > MAX_CREDENTIAL_SIZE or not path.is_file():
            log.debug("%s: larger than a pull secret, or no file; skipped", origin)
            return None
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CredentialError(f"{origin}: cannot read: {exc.strerror}") from None
    raw = read_secret_file(path, origin, MAX_CREDENTIAL_SIZE)
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # not JSON (or not UTF-8): another credential
        log.debug("%s: not JSON; not an auth file", origin)
        return None
    if not isinstance(data, dict) or "auths" not in data:
        log.debug("%s: no 'auths' object; not an auth file", origin)
        return None
    return parse_auth_document(data, origin)
