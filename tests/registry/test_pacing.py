"""A registry's pacing: AIMD on its concurrency, the shared 429 pause, Docker Hub's pull floor.

httpx.MockTransport stands in for the registry: distribution never answers 429 nor sends
`ratelimit-remaining` (the fault-proxy tests in tests/sync/test_faults.py do it for real).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import httpx
import pytest

from mirrord.errors import RateLimitedError
from mirrord.registry import PullFloor, RegistryClient, RegistryOptions, RegistryPacing
from mirrord.registry._ratelimit import parse_figure
from mirrord.registry._throttle import MAX_PAUSE, AdaptiveLimit, Throttle

MANIFEST = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",' \
    b'"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:' \
    + b"0" * 64 + b'","size":2},"layers":[]}'


def client_for(
    handler: Callable[[httpx.Request], httpx.Response], **options: object
) -> RegistryClient:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v2/":
            return httpx.Response(200, json={})
        return handler(request)

    return RegistryClient(
        "registry.example",
        transport=httpx.MockTransport(handle),
        options=RegistryOptions(**options),  # type: ignore[arg-type]
    )


@pytest.mark.anyio
async def test_aimd_halves_once_per_cooldown_and_recovers_one_slot_per_window() -> None:
    limiter = anyio.CapacityLimiter(8)
    adaptive = AdaptiveLimit(limiter, ceiling=8, cooldown=0.2)
    adaptive.slow_down("r")
    adaptive.slow_down("r")  # the same burst of 429s: one cut
    assert adaptive.limit == 4
    await anyio.sleep(0.25)
    adaptive.slow_down("r")
    assert adaptive.limit == 2 and adaptive.cuts == 2
    for _ in range(2):
        adaptive.success()
    assert adaptive.limit == 3  # +1 after `limit` successes
    for _ in range(3 + 4 + 5 + 6 + 7 + 50):
        adaptive.success()
    assert adaptive.limit == 8  # never above max_concurrency
    await anyio.sleep(0.25)
    for _ in range(10):
        adaptive.slow_down("r")
        await anyio.sleep(0.21)
    assert adaptive.limit == 1  # never below one


@pytest.mark.anyio
async def test_a_lowered_limit_holds_new_requests_while_old_ones_finish() -> None:
    limiter = anyio.CapacityLimiter(4)
    adaptive = AdaptiveLimit(limiter, ceiling=4)
    inside, peak = 0, 0

    async def request() -> None:
        nonlocal inside, peak
        async with limiter:
            inside += 1
            peak = max(peak, inside)
            await anyio.sleep(0.02)
            inside -= 1

    adaptive.slow_down("r")
    adaptive.slow_down("r")
    async with anyio.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(request)
    assert peak == 2


@pytest.mark.anyio
async def test_429_answers_pause_the_registry_and_lower_its_concurrency() -> None:
    answers = iter([429, 429, 200, 200, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        if status == 429:
            return httpx.Response(429, headers={"Retry-After": "0.2"}, json={"errors": []})
        return httpx.Response(200, json={"tags": ["a"]})

    async with client_for(handler, max_concurrency=6) as client:
        with pytest.raises(RateLimitedError) as caught:
            await client.list_tags("a/b")
        assert caught.value.retry_after == pytest.approx(0.2)
        assert client.pacing.adaptive.limit == 3
        started = anyio.current_time()
        with pytest.raises(RateLimitedError):
            await client.list_tags("a/b")  # waits out the pause, then a second 429
        assert anyio.current_time() - started >= 0.15
        assert client.pacing.adaptive.limit == 3  # within the cooldown: no second cut
        for _ in range(3):
            assert await client.list_tags("a/b") == ["a"]
        assert client.pacing.adaptive.limit == 4


def test_a_retry_after_pauses_at_most_max_pause() -> None:
    async def main() -> float:
        throttle = Throttle()
        throttle.pause(10_000)
        return throttle._paused_until - anyio.current_time()

    assert anyio.run(main) <= MAX_PAUSE


def test_ratelimit_figures_are_parsed_and_bounded() -> None:
    assert parse_figure("76;w=21600") == (76, 21600.0)
    assert parse_figure("76") == (76, None)
    assert parse_figure("100;w=21600, 200;w=86400") == (100, 21600.0)
    assert parse_figure("5;w=99999999") == (5, None)  # a window of years is not believed
    for bad in ("", "-1", "lots", "1e9", "12345678901;w=1", None):
        assert parse_figure(bad) is None


def test_below_the_floor_no_pull_starts_and_the_error_says_until_when() -> None:
    floor = PullFloor(floor=10)
    floor.observe("docker.io", {"ratelimit-remaining": "12;w=21600", "ratelimit-limit": "100"})
    floor.check("docker.io")  # 12 left: above the floor
    floor.observe("docker.io", {"ratelimit-remaining": "9;w=600"})
    with pytest.raises(RateLimitedError) as caught:
        floor.check("docker.io")
    error = caught.value
    assert error.temporary and 590 < (error.retry_after or 0) <= 600
    assert "9 pulls left of 100 in the 600s window, below ratelimit_min 10" in str(error)
    assert "no new manifest pulls until" in str(error) and "UTC" in str(error)
    sent_before = floor.seen_at - 0.01
    floor.observe("docker.io", {"ratelimit-remaining": "11;w=600"}, sent_at=sent_before)
    assert floor.remaining == 9  # an earlier request's answer, overtaken in flight
    floor.observe("docker.io", {"ratelimit-remaining": "40;w=600"}, sent_at=time.time())
    assert floor.remaining == 40  # a HEAD sent since says: room again
    floor.check("docker.io")
    floor.seen_at = time.time() - 601  # the window has passed since the low figure
    floor.observe("docker.io", {})
    floor.remaining = 1
    floor.check("docker.io")


def test_a_floor_of_zero_only_records() -> None:
    floor = PullFloor(floor=0)
    floor.observe("docker.io", {"ratelimit-remaining": "0;w=21600"})
    assert floor.remaining == 0
    floor.check("docker.io")


@pytest.mark.anyio
async def test_manifest_gets_stop_below_the_floor_while_heads_go_on() -> None:
    sent: list[str] = []
    remaining = [12]

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.method)
        if request.method == "GET":
            remaining[0] -= 1
        headers = {
            "ratelimit-limit": "100;w=21600",
            "ratelimit-remaining": f"{remaining[0]};w=21600",
            "content-type": "application/vnd.oci.image.manifest.v1+json",
            "docker-content-digest": "sha256:" + "1" * 64,
        }
        return httpx.Response(200, headers=headers, content=MANIFEST)

    async with client_for(handler, ratelimit_min=10) as client:
        await client.get_manifest("library/x", "a")  # 11 left
        await client.get_manifest("library/x", "b")  # 10 left
        await client.get_manifest("library/x", "c")  # 9 left: below the floor now
        with pytest.raises(RateLimitedError, match="below ratelimit_min 10"):
            await client.get_manifest("library/x", "d")
        assert sent.count("GET") == 3  # the fourth was never sent
        assert await client.head_manifest("library/x", "d") is not None  # HEADs are free
        remaining[0] = 50
        await client.head_manifest("library/x", "d")  # ... and report the room again
        await client.get_manifest("library/x", "d")
        assert sent.count("GET") == 4


def test_clients_of_one_registry_share_one_pacing() -> None:
    pacing = RegistryPacing.for_options(RegistryOptions(max_concurrency=4, ratelimit_min=3))
    assert pacing.adaptive.limit == 4 and pacing.pulls.floor == 3
    one = RegistryClient("r.example", pacing=pacing)
    two = RegistryClient("r.example", pacing=pacing)
    assert one.pacing is two.pacing
