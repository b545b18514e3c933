"""The queue's batched statements against a real Postgres: completions and lease
extensions for many jobs at once, each fenced by its own token; completing and claiming in
one statement; and the queue's own connections, held while a worker runs, which replace
themselves after a broken connection."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres.database import libpq_url
from servicecontrol_server.adapters.postgres.jobqueue import JobQueue, enqueue


async def _enqueue(engine: AsyncEngine, n: int) -> list[int]:
    async with engine.begin() as conn:
        return [await enqueue(conn, kind="k", payload={"i": i}, max_attempts=3) for i in range(n)]


async def _rows(engine: AsyncEngine) -> dict[int, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM jobs"))).mappings().all()
    return {int(r["job_id"]): dict(r) for r in rows}


async def _steal(engine: AsyncEngine, job_id: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE jobs SET lease_token = gen_random_uuid() WHERE job_id = :id"),
            {"id": job_id},
        )


@pytest.mark.parametrize("pinned", [False, True])
async def test_complete_many_deletes_only_the_jobs_still_leased(
    engine: AsyncEngine, pinned: bool
) -> None:
    ids = await _enqueue(engine, 4)
    queue = JobQueue(engine)
    async with queue.connected() if pinned else _nothing():
        jobs = await queue.claim("w", 4, 30)
        await _steal(engine, ids[1])
        stranger = (ids[3], str(uuid.uuid4()))
        done = await queue.complete_many(
            [(j.job_id, j.lease_token) for j in jobs if j.job_id != ids[3]] + [stranger]
        )
    assert done == {ids[0], ids[2]}
    assert sorted(await _rows(engine)) == [ids[1], ids[3]]


async def test_heartbeat_many_extends_only_the_leases_still_held(engine: AsyncEngine) -> None:
    ids = await _enqueue(engine, 3)
    queue = JobQueue(engine)
    async with queue.connected():
        jobs = await queue.claim("w", 3, 1)
        await _steal(engine, ids[2])
        held = await queue.heartbeat_many([(j.job_id, j.lease_token) for j in jobs], 600)
    assert held == {ids[0], ids[1]}
    async with engine.connect() as conn:
        left = dict(
            (
                await conn.execute(
                    text(
                        "SELECT job_id, extract(epoch FROM lease_expires_at - now())::float8"
                        " FROM jobs"
                    )
                )
            ).all()
        )
    assert left[ids[0]] > 500 and left[ids[1]] > 500
    assert left[ids[2]] < 2


@pytest.mark.parametrize("pinned", [False, True])
async def test_complete_and_claim_is_one_fenced_statement(
    engine: AsyncEngine, pinned: bool
) -> None:
    ids = await _enqueue(engine, 6)
    queue = JobQueue(engine)
    async with queue.connected() if pinned else _nothing():
        first = await queue.claim("w", 2, 30)
        await _steal(engine, ids[1])
        done, claimed = await queue.complete_and_claim(
            [(j.job_id, j.lease_token) for j in first], "w", 3, 30
        )
        assert done == {ids[0]}
        assert [j.job_id for j in claimed] == ids[2:5]
        assert {j.attempts for j in claimed} == {1}
        # Nothing to claim: the completions still come back.
        done, claimed = await queue.complete_and_claim(
            [(j.job_id, j.lease_token) for j in claimed], "w", 0, 30
        )
        assert done == set(ids[2:5])
        assert claimed == []
        # Nothing to complete: a plain claim.
        done, claimed = await queue.complete_and_claim([], "w", 5, 30)
    assert done == set()
    assert [j.job_id for j in claimed] == [ids[5]]
    rows = await _rows(engine)
    assert sorted(rows) == [ids[1], ids[5]]
    assert {r["state"] for r in rows.values()} == {"running"}


async def test_held_connections_are_replaced_after_they_break(
    engine: AsyncEngine, database_url: str
) -> None:
    ids = await _enqueue(engine, 2)
    queue = JobQueue(engine)
    async with queue.connected():
        [job] = await queue.claim("w", 1, 30)
        async with await psycopg.AsyncConnection.connect(
            libpq_url(database_url), autocommit=True
        ) as admin:
            killed = await (
                await admin.execute(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM"
                    " pg_stat_activity WHERE datname = current_database()"
                    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                    " AND application_name = '') AS t"
                )
            ).fetchone()
        assert killed is not None and killed[0] >= 1
        # The call that meets the broken connection fails like any outage ...
        with pytest.raises(psycopg.OperationalError):
            for _ in range(2):
                await queue.claim("w", 1, 30)
                await queue.heartbeat(job.job_id, job.lease_token, 30)
        # ... and the next one reconnects.
        [second] = await queue.claim("w", 1, 30)
        assert second.job_id == ids[1]
        assert await queue.complete_many([(job.job_id, job.lease_token)]) == {job.job_id}
    # Leaving connected() closes the queue's own connections.
    assert queue._conns == {}


class _nothing:
    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None


@pytest.mark.parametrize("pinned", [False, True])
async def test_a_claimed_job_carries_its_payload_and_progress_exactly(
    engine: AsyncEngine, pinned: bool
) -> None:
    payload = {
        "name": 'café ☕ "quoted" \\ back',
        "nested": {"list": [1, 2.5, None, True, "ü"], "empty": {}},
        "_trace": {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
        "_spared_attempts": 2,
    }
    progress = {"deleted": 12, "digests": ["a1", "b2"], "step": "ß"}
    async with engine.begin() as conn:
        job_id = await enqueue(conn, kind="k", payload=payload, progress=progress, max_attempts=3)
        other = await enqueue(conn, kind="k", payload={}, max_attempts=3)
    queue = JobQueue(engine)
    async with queue.connected() if pinned else _nothing():
        first, second = await queue.claim("w", 2, 30)
        # Several ids and tokens in one statement, each still fenced by its own token.
        await _steal(engine, other)
        assert await queue.heartbeat_many(
            [(first.job_id, first.lease_token), (second.job_id, second.lease_token)], 30
        ) == {job_id}
    assert first.job_id == job_id
    assert first.payload == {"name": payload["name"], "nested": payload["nested"]}
    assert first.trace_context == payload["_trace"]
    assert first.spared_attempts == 2
    assert first.progress == progress
    assert (second.payload, second.progress, second.trace_context) == ({}, {}, {})
    assert isinstance(first.job_id, int) and isinstance(first.lease_token, str)
