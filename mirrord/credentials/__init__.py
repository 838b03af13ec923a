"""Where registry credentials come from, and ``mirrord login`` / ``logout``.

:func:`resolve_credential` walks the lookup chain (auth files, systemd
credentials, the keyring; see :mod:`mirrord.credentials._chain`) and returns
the first :class:`Credential`, or None for anonymous access.
:func:`describe_lookup` says which sources were consulted, for messages.
The keyring functions and the chain block: async code calls them through
``anyio.to_thread.run_sync``. :func:`login`, :func:`logout` and
:func:`logout_all` are async and do that themselves; they write auth files the
way ``podman login`` does (:func:`set_auth_entry`). No secret ever appears in a
repr, log line or error.
"""

from __future__ import annotations

from mirrord.credentials._authfile import AuthDocument, parse_auth_document, read_auth_file
from mirrord.credentials._authwrite import (
    default_auth_file,
    login_key,
    remove_all_auth_entries,
    remove_auth_entry,
    set_auth_entry,
)
from mirrord.credentials._chain import auth_file_sources, describe_lookup, resolve_credential
from mirrord.credentials._credential import (
    TOKEN_USERNAME,
    Credential,
    LookupStep,
    candidate_keys,
    normalise_auth_key,
    registry_host,
)
from mirrord.credentials._keyring import (
    delete_credential,
    keyring_credential,
    keyring_service,
    store_credential,
)
from mirrord.credentials._login import Stored, login, logout, logout_all

__all__ = [
    "TOKEN_USERNAME",
    "AuthDocument",
    "Credential",
    "LookupStep",
    "Stored",
    "auth_file_sources",
    "candidate_keys",
    "default_auth_file",
    "delete_credential",
    "describe_lookup",
    "keyring_credential",
    "keyring_service",
    "login",
    "login_key",
    "logout",
    "logout_all",
    "normalise_auth_key",
    "parse_auth_document",
    "read_auth_file",
    "registry_host",
    "remove_all_auth_entries",
    "remove_auth_entry",
    "resolve_credential",
    "set_auth_entry",
    "store_credential",
]
