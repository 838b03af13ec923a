"""Distribution-spec client: challenges, auth, verbs, error mapping, pacing and retries."""

from __future__ import annotations

from mirrord.registry._auth import RegistryAuth, Token
from mirrord.registry._challenge import Challenge, parse_challenges, request_scopes
from mirrord.registry._client import RegistryClient
from mirrord.registry._errors import parse_retry_after
from mirrord.registry._options import RegistryOptions
from mirrord.registry._ratelimit import PullFloor
from mirrord.registry._retry import (
    DEFAULT_RETRY,
    Condition,
    RetryPolicies,
    RetryPolicy,
    condition,
    retrying,
)
from mirrord.registry._throttle import RegistryPacing
from mirrord.registry._tls import prepare_ssl_context

__all__ = [
    "DEFAULT_RETRY",
    "Challenge",
    "Condition",
    "PullFloor",
    "RegistryAuth",
    "RegistryClient",
    "RegistryOptions",
    "RegistryPacing",
    "RetryPolicies",
    "RetryPolicy",
    "Token",
    "condition",
    "parse_challenges",
    "parse_retry_after",
    "prepare_ssl_context",
    "request_scopes",
    "retrying",
]
