"""Stream claims of daemons sharing one PostgreSQL database (issue 16): one worker syncs
a stream at a time, renews while it runs, keeps it for the rest of a scheduled period,
and a dead worker's claim lapses."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import anyio
import pytest
from harness.postgres import PostgresCluster
from harness.storetools import Backend

from mirrord.daemon._claim import hold_after, lease_name, stream_claim

pytestmark = pytest.mark.anyio


@pytest.fixture
def shared(postgres: PostgresCluster, tmp_path: Path) -> Iterator[Backend]:
    database = postgres.create_database()
    password_file = tmp_path / "db-password"
    password_file.write_text(database.password + "\n", encoding="utf-8")
    text = f"database: {database.url}\ndatabase_password_file: {password_file}\n"
    made = Backend("postgresql", tmp_path, text, database)
    yield made
    made.close()
    postgres.drop_database(database.name)


async def test_one_worker_holds_a_stream_and_the_other_skips_it(shared: Backend) -> None:
    a, b = shared.open(worker="a:1"), shared.open(worker="b:2")
    async with stream_claim(a, "app", 30) as got_a:
        assert got_a
        async with stream_claim(b, "app", 30) as got_b:
            assert not got_b
        async with stream_claim(b, "other", 30) as got_other:
            assert got_other  # another stream is free
    assert await b.leases() == []  # released after the run (no hold)
    async with stream_claim(b, "app", 30) as got_b:
        assert got_b


async def test_the_holder_renews_while_its_run_outlasts_the_ttl(shared: Backend) -> None:
    a, b = shared.open(worker="a:1"), shared.open(worker="b:2")
    async with stream_claim(a, "app", 0.9) as got:
        assert got
        for _ in range(4):  # 2 s: more than twice the TTL
            await anyio.sleep(0.5)
            assert not await b.claim_lease(lease_name("app"), "b:2", 30)


async def test_a_scheduled_run_keeps_the_stream_for_the_rest_of_its_period(
    shared: Backend,
) -> None:
    a, b = shared.open(worker="a:1"), shared.open(worker="b:2")
    async with stream_claim(a, "app", 30, hold=1.0):
        pass
    [kept] = await b.leases()
    assert (kept.name, kept.worker) == ("stream/app", "a:1")
    async with stream_claim(b, "app", 30) as got:
        assert not got  # the same due time, fired a little later elsewhere
    await anyio.sleep(1.2)
    async with stream_claim(b, "app", 30) as got:
        assert got  # the next due time is anyone's


async def test_a_dead_workers_claim_lapses_and_another_takes_the_stream(
    shared: Backend,
) -> None:
    a, b = shared.open(worker="a:1"), shared.open(worker="b:2")
    assert await a.claim_lease(lease_name("app"), "a:1", 0.8)
    a.close()  # killed: it renews no more and releases nothing
    async with stream_claim(b, "app", 30) as got:
        assert not got
    await anyio.sleep(1.0)
    async with stream_claim(b, "app", 30) as got:
        assert got


def test_the_hold_after_a_run_leaves_the_next_due_time_free() -> None:
    now = datetime(2026, 1, 1, 12, 0).astimezone()
    assert hold_after("15m", "scheduled", now) == pytest.approx(900 * 0.9 - 90)
    assert hold_after("6h", "scheduled", now) == pytest.approx(6 * 3600 * 0.9 - 300)
    assert 0 < hold_after("*/10 * * * *", "scheduled", now) < 600
    assert hold_after("15m", "triggered", now) == 0.0
    assert hold_after("15m", "catch-up", now) == pytest.approx(900 * 0.9 - 90)
