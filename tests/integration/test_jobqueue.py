"""The job queue's SQL against a real Postgres: transactional enqueue, exclusive claims,
lease fencing, delayed retries and the hand-over of a failed job's progress."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres import jobqueue
from servicecontrol_server.adapters.postgres.database import libpq_url
from servicecontrol_server.adapters.postgres.jobqueue import JOBS_CHANNEL, JobQueue, enqueue
from servicecontrol_server.application.ports import LeaseLost
from tests.support.postgres import pending_delete_operation


async def _enqueue(engine: AsyncEngine, n: int = 1, kind: str = "noop", **kwargs: Any) -> list[int]:
    ids = []
    async with engine.begin() as conn:
        for i in range(n):
            ids.append(await enqueue(conn, kind=kind, payload={"i": i}, max_attempts=3, **kwargs))
    return ids


async def _job_row(engine: AsyncEngine, job_id: int) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            (await conn.execute(text("SELECT * FROM jobs WHERE job_id = :id"), {"id": job_id}))
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


async def _expire(engine: AsyncEngine, job_id: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE jobs SET lease_expires_at = now() - interval '1 s' WHERE job_id = :id"),
            {"id": job_id},
        )


async def test_enqueue_is_visible_and_notified_only_after_commit(
    engine: AsyncEngine, database_url: str
) -> None:
    queue = JobQueue(engine)
    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as listener:
        await listener.execute(f"LISTEN {JOBS_CHANNEL}")
        notes = listener.notifies(timeout=10)

        operation_id = str(uuid.uuid4())
        async with engine.connect() as conn:
            await conn.begin()
            job_id = await enqueue(
                conn,
                kind="delete_service",
                payload={"force": True},
                max_attempts=4,
                operation_id=operation_id,
                service_id="svc-1",
                account_id="111122223333",
                progress={"step": 1},
            )
            # Uncommitted: no other transaction can see or claim it.
            assert await queue.claim("w", 10, 30) == []
            # A marker sent after the enqueue arrives first: the enqueue's own
            # notification is held back until its transaction commits.
            await listener.execute("SELECT pg_notify(%s, 'marker')", (JOBS_CHANNEL,))
            assert (await anext(notes)).payload == "marker"
            await conn.rollback()
        assert await _job_row(engine, job_id) is None
        assert await queue.claim("w", 10, 30) == []

        async with engine.begin() as conn:
            job_id = await enqueue(
                conn,
                kind="delete_service",
                payload={"force": True},
                max_attempts=4,
                operation_id=operation_id,
                service_id="svc-1",
                account_id="111122223333",
                progress={"step": 1},
            )
        # The rolled-back enqueue never notified; the committed one did.
        assert (await anext(notes)).payload == "delete_service"
        # The generator holds the connection while suspended; close it before the connection.
        await notes.aclose()

    [job] = await queue.claim("worker-a", 10, 30)
    assert job.job_id == job_id
    assert (job.kind, job.operation_id, job.service_id, job.account_id) == (
        "delete_service",
        operation_id,
        "svc-1",
        "111122223333",
    )
    assert job.payload == {"force": True}
    assert job.progress == {"step": 1}
    assert (job.attempts, job.max_attempts) == (1, 4)
    uuid.UUID(job.lease_token)
    row = await _job_row(engine, job_id)
    assert row is not None
    assert (row["state"], row["lease_owner"], row["attempts"]) == ("running", "worker-a", 1)
    async with engine.connect() as conn:
        remaining = (
            await conn.execute(
                text("SELECT extract(epoch FROM lease_expires_at - now()) FROM jobs")
            )
        ).scalar_one()
    assert 25 < remaining <= 30


async def test_concurrent_claimers_take_every_job_exactly_once(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO jobs (kind, max_attempts) "
                "SELECT 'bulk', 3 FROM generate_series(1, 300)"
            )
        )
    queue = JobQueue(engine)
    claimed: list[int] = []
    batch_sizes: list[int] = []
    start = asyncio.Event()

    async def claimer(n: int) -> None:
        await start.wait()
        while True:
            jobs = await queue.claim(f"claimer-{n}", 7, 30)
            if not jobs:
                return
            batch_sizes.append(len(jobs))
            claimed.extend(job.job_id for job in jobs)

    tasks = [asyncio.create_task(claimer(n)) for n in range(8)]
    start.set()
    await asyncio.gather(*tasks)

    counts = Counter(claimed)
    assert len(counts) == 300
    assert set(counts.values()) == {1}
    assert max(batch_sizes) <= 7
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("SELECT state, attempts, count(*) FROM jobs GROUP BY 1, 2"))
        ).all()
    assert [tuple(r) for r in rows] == [("running", 1, 300)]


async def test_claim_respects_limit_and_order(engine: AsyncEngine) -> None:
    ids = await _enqueue(engine, 5)
    queue = JobQueue(engine)
    first = await queue.claim("w", 2, 30)
    assert [j.job_id for j in first] == ids[:2]
    assert [j.job_id for j in await queue.claim("w", 10, 30)] == ids[2:]
    assert await queue.claim("w", 0, 30) == []


async def test_a_rescued_lease_fences_out_the_old_holder(engine: AsyncEngine) -> None:
    [job_id] = await _enqueue(engine)
    queue = JobQueue(engine)
    [old] = await queue.claim("old", 1, 30)

    # Not expired yet: nothing to rescue.
    assert await queue.rescue_expired() == 0
    await _expire(engine, job_id)
    assert await queue.rescue_expired() == 1
    row = await _job_row(engine, job_id)
    assert row is not None
    assert (row["state"], row["lease_token"], row["attempts"]) == ("queued", None, 1)
    assert "old" in row["last_error"]

    [new] = await queue.claim("new", 1, 30)
    assert new.job_id == job_id
    assert new.attempts == 2  # a rescue does not give the attempt back
    assert new.lease_token != old.lease_token

    assert await queue.heartbeat(job_id, old.lease_token, 30) is False
    with pytest.raises(LeaseLost):
        await queue.save_progress(job_id, old.lease_token, {"stale": True})
    with pytest.raises(LeaseLost):
        async with engine.begin() as conn:
            await jobqueue.complete(conn, job_id, old.lease_token)
    with pytest.raises(LeaseLost):
        async with engine.begin() as conn:
            await jobqueue.mark_failed(conn, job_id, old.lease_token, "stale")
    assert await queue.retry_later(job_id, old.lease_token, 0, "stale") is False
    assert await queue.release(job_id, old.lease_token) is False
    row = await _job_row(engine, job_id)
    assert row is not None
    assert (row["state"], row["lease_owner"], row["progress"]) == ("running", "new", {})

    assert await queue.heartbeat(job_id, new.lease_token, 30) is True
    await queue.save_progress(job_id, new.lease_token, {"a": 1})
    await queue.save_progress(job_id, new.lease_token, {"b": 2})
    row = await _job_row(engine, job_id)
    assert row is not None and row["progress"] == {"a": 1, "b": 2}
    async with engine.begin() as conn:
        await jobqueue.complete(conn, job_id, new.lease_token)
    assert await _job_row(engine, job_id) is None


async def test_rescue_is_bounded_and_safe_to_run_concurrently(engine: AsyncEngine) -> None:
    await _enqueue(engine, 40)
    queue = JobQueue(engine)
    assert len(await queue.claim("w", 40, 30)) == 40
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE jobs SET lease_expires_at = now() - interval '1 s'"))
    assert await queue.rescue_expired(limit=5) == 5
    totals = await asyncio.gather(*(queue.rescue_expired(limit=10) for _ in range(6)))
    assert sum(totals) == 35
    assert max(totals) <= 10
    async with engine.connect() as conn:
        states = (await conn.execute(text("SELECT DISTINCT state FROM jobs"))).scalars().all()
    assert states == ["queued"]


async def test_complete_rolls_back_with_the_callers_transaction(engine: AsyncEngine) -> None:
    [job_id] = await _enqueue(engine)
    queue = JobQueue(engine)
    [job] = await queue.claim("w", 1, 30)
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await jobqueue.complete(conn, job_id, job.lease_token)
            raise RuntimeError("the handler's final write failed")
    row = await _job_row(engine, job_id)
    assert row is not None and row["state"] == "running"


async def test_retry_later_delays_the_next_claim(engine: AsyncEngine) -> None:
    queue = JobQueue(engine)
    assert await queue.seconds_until_next() is None
    [job_id] = await _enqueue(engine)
    assert await queue.seconds_until_next() == 0
    [job] = await queue.claim("w", 1, 30)
    assert await queue.retry_later(job_id, job.lease_token, 3600, "OBJECT_STORE_UNAVAILABLE: x")

    row = await _job_row(engine, job_id)
    assert row is not None
    assert (row["state"], row["lease_token"], row["lease_owner"]) == ("queued", None, None)
    assert row["last_error"] == "OBJECT_STORE_UNAVAILABLE: x"
    assert await queue.claim("w", 1, 30) == []
    due = await queue.seconds_until_next()
    assert due is not None and 3590 < due <= 3600

    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE jobs SET run_at = now() - interval '1 second' WHERE job_id = :id"),
            {"id": job_id},
        )
    assert await queue.seconds_until_next() == 0
    [again] = await queue.claim("w", 1, 30)
    assert (again.job_id, again.attempts) == (job_id, 2)


async def test_release_requeues_at_once_and_gives_the_attempt_back(engine: AsyncEngine) -> None:
    [job_id] = await _enqueue(engine)
    queue = JobQueue(engine)
    [job] = await queue.claim("w", 1, 30)
    assert await queue.release(job_id, job.lease_token) is True
    [again] = await queue.claim("other", 1, 30)
    assert (again.job_id, again.attempts) == (job_id, 1)


async def test_take_failed_progress_hands_over_once(engine: AsyncEngine) -> None:
    queue = JobQueue(engine)
    [failed_id] = await _enqueue(engine, kind="delete_service", service_id="svc-1")
    [job] = await queue.claim("w", 1, 30)
    await queue.save_progress(failed_id, job.lease_token, {"image_objects": 3})
    async with engine.begin() as conn:
        await jobqueue.mark_failed(conn, failed_id, job.lease_token, "COMPUTE_UNAVAILABLE: down")
    row = await _job_row(engine, failed_id)
    assert row is not None
    assert (row["state"], row["lease_token"], row["last_error"]) == (
        "failed",
        None,
        "COMPUTE_UNAVAILABLE: down",
    )
    # Failed jobs are never claimed again.
    assert await queue.claim("w", 1, 30) == []

    # Neighbours that must not be taken: another service, another kind, a live job.
    [other_service] = await _enqueue(engine, kind="delete_service", service_id="svc-2")
    [other_kind] = await _enqueue(engine, kind="pause_service", service_id="svc-1")
    for job in await queue.claim("w", 2, 30):
        async with engine.begin() as conn:
            await jobqueue.mark_failed(conn, job.job_id, job.lease_token, "x")
    [queued] = await _enqueue(engine, kind="delete_service", service_id="svc-1")

    async with engine.begin() as conn:
        assert await jobqueue.take_failed_progress(conn, "delete_service", "svc-1") == {
            "image_objects": 3
        }
    async with engine.begin() as conn:
        assert await jobqueue.take_failed_progress(conn, "delete_service", "svc-1") is None
    assert await _job_row(engine, failed_id) is None
    for kept in (other_service, other_kind, queued):
        assert await _job_row(engine, kept) is not None


async def test_take_failed_progress_rolls_back_with_the_caller(engine: AsyncEngine) -> None:
    queue = JobQueue(engine)
    [job_id] = await _enqueue(engine, kind="delete_service", service_id="svc-1")
    [job] = await queue.claim("w", 1, 30)
    await queue.save_progress(job_id, job.lease_token, {"done": ["a"]})
    async with engine.begin() as conn:
        await jobqueue.mark_failed(conn, job_id, job.lease_token, "x")
    async with engine.connect() as conn:
        await conn.begin()
        assert await jobqueue.take_failed_progress(conn, "delete_service", "svc-1") == {
            "done": ["a"]
        }
        await conn.rollback()
    async with engine.begin() as conn:
        assert await jobqueue.take_failed_progress(conn, "delete_service", "svc-1") == {
            "done": ["a"]
        }


async def _operation_step(engine: AsyncEngine, operation_id: str) -> tuple[Any, ...]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT status, current_step, attempt FROM operations"
                    " WHERE operation_id = CAST(:id AS uuid)"
                ),
                {"id": operation_id},
            )
        ).one()
    return tuple(row)


async def test_step_markers_and_saves_at_a_step_are_fenced_by_the_lease(
    engine: AsyncEngine,
) -> None:
    """A marker is one statement on the job's operation, a save at a step marks it in the
    save's own statement; a worker that lost the lease changes neither row."""
    operation_id = await pending_delete_operation(engine)
    [job_id] = await _enqueue(engine, kind="delete_service", operation_id=operation_id)
    queue = JobQueue(engine)
    [old] = await queue.claim("old", 1, 30)

    await queue.mark_step(job_id, old.lease_token, "stop_compute", old.attempts)
    assert await _operation_step(engine, operation_id) == ("IN_PROGRESS", "stop_compute", 1)
    await queue.save_progress(job_id, old.lease_token, {"n": 1}, ("delete_image_copy", 1))
    assert await _operation_step(engine, operation_id) == ("IN_PROGRESS", "delete_image_copy", 1)
    row = await _job_row(engine, job_id)
    assert row is not None and row["progress"] == {"n": 1}

    await _expire(engine, job_id)
    assert await queue.rescue_expired() == 1
    [new] = await queue.claim("new", 1, 30)
    with pytest.raises(LeaseLost):
        await queue.mark_step(job_id, old.lease_token, "stale", old.attempts)
    with pytest.raises(LeaseLost):
        await queue.save_progress(job_id, old.lease_token, {"n": 9}, ("stale", 1))
    assert await _operation_step(engine, operation_id) == ("IN_PROGRESS", "delete_image_copy", 1)
    row = await _job_row(engine, job_id)
    assert row is not None and row["progress"] == {"n": 1}

    await queue.mark_step(job_id, new.lease_token, "delete_configuration", new.attempts)
    assert await _operation_step(engine, operation_id) == (
        "IN_PROGRESS",
        "delete_configuration",
        2,
    )
