"""The store contract for job runs, the notification outbox and pruner conditions: the
same results on SQLite and PostgreSQL (see test_store.py)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from harness.storetools import Backend

from mirrord.errors import StateError
from mirrord.state import ReceiverStatus, Store

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def digest(n: int) -> str:
    return f"sha256:{n:064x}"


# -- job runs --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_jobs_finish_list_and_trim(store: Store) -> None:
    ids: dict[str, list[int]] = {"Succeeded": [], "Failed": []}
    for n, status in enumerate(["Succeeded"] * 5 + ["Failed"] * 4 + ["Succeeded"]):
        job = await store.start_job("sync", "ubi9/ubi", now=T0 + timedelta(minutes=n))
        await store.finish_job(job, status, {"copied": n}, f"run {n}")
        ids[status].append(job)
    running = await store.start_job("sync")
    prune = [await store.start_job("prune") for _ in range(5)]
    for job in prune:
        await store.finish_job(job, "Succeeded")
    newest = (await store.list_jobs(limit=1, kind="sync"))[0]
    assert (newest.id, newest.status, newest.finished) == (running, "Running", None)
    done = (await store.list_jobs(limit=2, kind="sync"))[1]
    assert (done.counts, done.message, done.pid) == ({"copied": 9}, "run 9", os.getpid())
    assert done.started == T0 + timedelta(minutes=9)

    assert await store.trim_jobs("sync", successful_limit=3, failed_limit=2) == 3 + 2
    left = await store.list_jobs(limit=100, kind="sync")
    assert [j.id for j in left if j.status == "Succeeded"] == ids["Succeeded"][::-1][:3]
    assert [j.id for j in left if j.status == "Failed"] == ids["Failed"][::-1][:2]
    assert [j.id for j in left if j.status == "Running"] == [running]
    assert len(await store.list_jobs(limit=100, kind="prune")) == 5  # other kind untouched
    assert await store.trim_jobs("sync", successful_limit=3, failed_limit=2) == 0

    with pytest.raises(StateError, match="not running"):
        await store.finish_job(ids["Failed"][-1], "Succeeded")
    with pytest.raises(ValueError, match="kind"):
        await store.start_job("backup")
    assert await store.abandon_running_jobs("mirrord was killed") == 1
    abandoned = (await store.list_jobs(limit=1, kind="sync"))[0]
    assert (abandoned.status, abandoned.message) == ("Failed", "mirrord was killed")


@pytest.mark.anyio
async def test_jobs_record_the_worker_that_ran_them(backend: Backend) -> None:
    one, two = backend.open(worker="db1:100"), backend.open(worker="db2:200")
    first = await one.start_job("sync", "a", now=T0)
    second = await two.start_job("prune", now=T0)
    await one.finish_job(first, "Succeeded")
    jobs = {j.id: j for j in await two.list_jobs()}
    assert (jobs[first].worker, jobs[first].status) == ("db1:100", "Succeeded")
    assert (jobs[second].worker, jobs[second].status) == ("db2:200", "Running")
    assert jobs[first].pid == jobs[second].pid == os.getpid()


# -- notification outbox ---------------------------------------------------------------


@pytest.mark.anyio
async def test_outbox_retry_bookkeeping(store: Store) -> None:
    payload = {"stream": "ubi9/ubi", "tag": "9.4", "image": digest(1)}
    first = await store.enqueue_event(payload, "webhook[0]", now=T0)
    second = await store.enqueue_event({"n": 2}, "command[0]", now=T0 + timedelta(seconds=1))
    due = await store.due_events(T0 + timedelta(seconds=5))
    assert [e.id for e in due] == [first, second]
    assert due[0].payload == payload
    assert (due[0].attempts, due[0].last_error, due[0].delivered) == (0, None, None)
    assert await store.due_events(T0 - timedelta(seconds=1)) == []

    retry_at = T0 + timedelta(minutes=1)
    await store.mark_failed(first, 1, retry_at, "HTTP 503 from hooks.example.internal")
    assert [e.id for e in await store.due_events(T0 + timedelta(seconds=5))] == [second]
    retried = await store.due_events(retry_at)
    assert [e.id for e in retried] == [second, first] or [e.id for e in retried] == [first, second]
    event = next(e for e in retried if e.id == first)
    assert (event.attempts, event.next_attempt) == (1, retry_at)
    assert event.last_error == "HTTP 503 from hooks.example.internal"
    assert [e.id for e in await store.failed_events()] == [first]
    assert await store.receiver_statuses() == [
        ReceiverStatus("command[0]", pending=1),
        ReceiverStatus(
            "webhook[0]", pending=1, retrying=1, last_error="HTTP 503 from hooks.example.internal"
        ),
    ]

    await store.mark_delivered(second, now=T0 + timedelta(seconds=6))
    await store.mark_failed(first, 5, None, "gave up after 5 attempts")  # dead letter
    assert await store.due_events(T0 + timedelta(days=365)) == []
    [dead] = await store.failed_events()
    assert dead.dead
    assert (dead.id, dead.attempts, dead.last_error) == (first, 5, "gave up after 5 attempts")
    assert await store.receiver_statuses() == [
        ReceiverStatus("command[0]", delivered=1, last_delivered=T0 + timedelta(seconds=6)),
        ReceiverStatus("webhook[0]", given_up=1, last_error="gave up after 5 attempts"),
    ]
    with pytest.raises(StateError, match="not pending"):
        await store.mark_delivered(second)
    assert await store.purge_delivered(T0 + timedelta(seconds=5)) == 0
    assert await store.purge_delivered(T0 + timedelta(seconds=7)) == 1


# -- pruner conditions -----------------------------------------------------------------


@pytest.mark.anyio
async def test_pruner_condition_transition_time_changes_only_on_flip(store: Store) -> None:
    c1 = await store.set_pruner_condition("pruner", "Scheduled", "True", "Scheduled", now=T0)
    assert c1.last_transition_time == T0
    c2 = await store.set_pruner_condition(
        "pruner", "Scheduled", "True", "Scheduled", "next at midnight", now=T0 + timedelta(hours=1)
    )
    assert (c2.last_transition_time, c2.message) == (T0, "next at midnight")
    flip = T0 + timedelta(hours=2)
    c3 = await store.set_pruner_condition("pruner", "Scheduled", "False", "Suspended", now=flip)
    assert c3.last_transition_time == flip
    await store.set_pruner_condition("pruner", "Available", "True", now=T0)
    await store.set_pruner_condition("other", "Failed", "True", now=T0)
    conditions = await store.pruner_conditions("pruner")
    assert [(c.type, c.status, c.reason) for c in conditions] == [
        ("Available", "True", ""),
        ("Scheduled", "False", "Suspended"),
    ]
    assert conditions[1].last_transition_time == flip
