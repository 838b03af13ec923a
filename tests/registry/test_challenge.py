"""Unit tests: WWW-Authenticate challenges, token scopes, Retry-After, token lifetimes."""

from __future__ import annotations

import email.utils
import time

import pytest

from mirrord.registry import Challenge, Token, parse_challenges, parse_retry_after, request_scopes
from mirrord.registry._challenge import merge_scopes


def test_docker_hub_bearer_challenge() -> None:
    header = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
              'scope="repository:library/nginx:pull"')
    (challenge,) = parse_challenges(header)
    assert challenge.scheme == "bearer"
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.service == "registry.docker.io"
    assert challenge.scopes == ("repository:library/nginx:pull",)


def test_basic_challenge_with_a_space_in_the_realm() -> None:
    (challenge,) = parse_challenges('Basic realm="Registry Realm"')
    assert (challenge.scheme, challenge.realm) == ("basic", "Registry Realm")


def test_several_challenges_in_one_header() -> None:
    header = ('Basic realm="basic realm", Bearer realm="https://t.example/token",'
              'service="svc",scope="repository:a/b:pull repository:c:pull,push",'
              'error="insufficient_scope"')
    basic, bearer = parse_challenges(header)
    assert (basic.scheme, basic.realm) == ("basic", "basic realm")
    assert bearer.scheme == "bearer"
    assert bearer.scopes == ("repository:a/b:pull", "repository:c:pull,push")
    assert bearer.params["error"] == "insufficient_scope"


def test_scheme_and_parameter_names_are_case_insensitive() -> None:
    (challenge,) = parse_challenges('BEARER Realm="https://x/token", Service=svc')
    assert (challenge.scheme, challenge.realm, challenge.service) == (
        "bearer", "https://x/token", "svc")


def test_unquoted_values_and_escaped_quotes() -> None:
    (challenge,) = parse_challenges(r'Bearer realm=https://x/token,service="a \"b\""')
    assert challenge.realm == "https://x/token"
    assert challenge.service == 'a "b"'


def test_scheme_without_parameters() -> None:
    assert parse_challenges("Basic") == [Challenge("basic")]
    assert parse_challenges("") == []


@pytest.mark.parametrize(("method", "url", "scopes"), [
    ("GET", "https://r/v2/", ()),
    ("GET", "https://r/v2/_catalog?n=10", ()),
    ("GET", "https://r/v2/a/b/manifests/v1", ("repository:a/b:pull",)),
    ("HEAD", "https://r/v2/a/blobs/sha256:00", ("repository:a:pull",)),
    ("GET", "https://r/v2/a/b/tags/list?n=2&last=x", ("repository:a/b:pull",)),
    ("GET", "https://r/v2/a/referrers/sha256:00", ("repository:a:pull",)),
    ("PUT", "https://r/v2/a/manifests/v1", ("repository:a:pull,push",)),
    ("POST", "https://r/v2/a/blobs/uploads/", ("repository:a:pull,push",)),
    ("PATCH", "https://r/v2/a/blobs/uploads/0f1e?_state=x", ("repository:a:pull,push",)),
    ("PUT", "https://r/v2/a/blobs/uploads/0f1e?digest=sha256:00", ("repository:a:pull,push",)),
    ("DELETE", "https://r/v2/a/manifests/sha256:00", ("repository:a:delete",)),
    ("POST", "https://r/v2/t/b/blobs/uploads/?mount=sha256:00&from=s/c",
     ("repository:t/b:pull,push", "repository:s/c:pull")),
    ("POST", "https://r/v2/t/blobs/uploads/?mount=sha256:00&from=t", ("repository:t:pull,push",)),
    # path components that are also API words belong to the repository name
    ("GET", "https://r/v2/team/tags/app/manifests/v1", ("repository:team/tags/app:pull",)),
    ("GET", "https://r/v2/x/blobs/manifests/tags/list", ("repository:x/blobs/manifests:pull",)),
    ("POST", "https://r/v2/x/blobs/uploads/blobs/uploads/",
     ("repository:x/blobs/uploads:pull,push",)),
])
def test_request_scopes(method: str, url: str, scopes: tuple[str, ...]) -> None:
    assert request_scopes(method, url) == scopes


def test_merge_scopes_unions_actions_per_resource() -> None:
    assert merge_scopes(["repository:a/b:push,pull", "repository:a/b:pull"]) == (
        "repository:a/b:pull,push",
    )
    assert merge_scopes(["repository:z:pull", "repository:a:pull,push", "registry:catalog:*"]) == (
        "registry:catalog:*",
        "repository:a:pull,push",
        "repository:z:pull",
    )
    assert merge_scopes(["repository:a:delete", "repository:a:pull,push"]) == (
        "repository:a:delete,pull,push",
    )
    assert merge_scopes([]) == ()


def test_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("30") == 30.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after("soon") is None
    later = parse_retry_after(email.utils.formatdate(time.time() + 60, usegmt=True))
    assert later is not None and 55 < later <= 60
    assert parse_retry_after(email.utils.formatdate(time.time() - 60, usegmt=True)) == 0.0


@pytest.mark.parametrize(("lifetime", "refresh_after"), [
    (300, 270.0),  # 30 s early at most
    (60, 48.0),    # 20 % early
    (5, 4.0),      # at least a second early
    (1, 0.0),
])
def test_tokens_refresh_before_they_expire(lifetime: float, refresh_after: float) -> None:
    token = Token.issued("t", lifetime, now=1000.0)
    assert token.expires_at == 1000.0 + lifetime
    assert token.refresh_at == pytest.approx(1000.0 + refresh_after)
