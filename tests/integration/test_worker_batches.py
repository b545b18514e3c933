"""The worker's batching against a real Postgres: jobs whose handler returns are completed
in batches that travel with the next claim, each fenced by its own lease; one heartbeat
statement extends every running lease; a stopping worker still completes what finished."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres.jobqueue import JobQueue
from servicecontrol_server.application.ports import ClaimedJob, JobContext
from tests.integration.test_worker import Handler, add_job, job_row, make_worker, no_jobs, running
from tests.support.waiting import wait_until


class CountingQueue(JobQueue):
    """The real queue, recording how many jobs each batched statement carried."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.completion_batches: list[int] = []
        self.heartbeat_batches: list[int] = []
        self.before_completion: Any = None
        self.with_claims = 0

    async def complete_and_claim(
        self, leases: Sequence[tuple[int, str]], owner: str, limit: int, lease_seconds: float
    ) -> tuple[set[int], list[ClaimedJob]]:
        if leases:
            self.completion_batches.append(len(leases))
            self.with_claims += 1
            if self.before_completion is not None:
                await self.before_completion(leases)
        return await super().complete_and_claim(leases, owner, limit, lease_seconds)

    async def complete_many(self, leases: Sequence[tuple[int, str]]) -> set[int]:
        self.completion_batches.append(len(leases))
        return await super().complete_many(leases)

    async def heartbeat_many(
        self, leases: Sequence[tuple[int, str]], lease_seconds: float
    ) -> set[int]:
        self.heartbeat_batches.append(len(leases))
        return await super().heartbeat_many(leases, lease_seconds)


def with_queue(engine: AsyncEngine, queue: JobQueue, handlers: dict[str, Any], **kw: Any) -> Any:
    worker = make_worker(engine, handlers, **kw)
    worker.queue = queue
    return worker


async def test_finished_jobs_are_completed_in_batches_with_the_next_claim(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO jobs (kind, max_attempts) SELECT 'bare', 3 FROM generate_series(1, 60)"
            )
        )
    handler = Handler()
    queue = CountingQueue(engine)
    worker = with_queue(engine, queue, {"bare": handler}, concurrency=10)
    async with running(worker):
        await wait_until(lambda: no_jobs(engine), timeout=20)
    assert len(handler.runs) == 60
    assert len({job_id for job_id, _ in handler.runs}) == 60
    assert sum(queue.completion_batches) == 60
    # Ten slots that finish together are completed together, not one statement each.
    assert max(queue.completion_batches) > 1
    assert len(queue.completion_batches) < 60


async def test_a_batched_completion_is_fenced_job_by_job(engine: AsyncEngine) -> None:
    ids = [await add_job(engine, "bare") for _ in range(3)]
    queue = CountingQueue(engine)
    stolen: list[int] = []

    async def steal_one(leases: Sequence[tuple[int, str]]) -> None:
        if not stolen:
            stolen.append(leases[0][0])
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "UPDATE jobs SET lease_token = gen_random_uuid(), lease_owner = 'thief'"
                        " WHERE job_id = :id"
                    ),
                    {"id": leases[0][0]},
                )

    queue.before_completion = steal_one
    outcomes: list[tuple[str, str]] = []
    worker = with_queue(
        engine,
        queue,
        {"bare": Handler()},
        concurrency=3,
        on_outcome=lambda kind, outcome, _: outcomes.append((kind, outcome)),
    )
    async with running(worker):
        await wait_until(lambda: len(outcomes) == 3, timeout=10)
    assert sorted(o for _, o in outcomes) == ["lease_lost", "succeeded", "succeeded"]
    for job_id in ids:
        row = await job_row(engine, job_id)
        if job_id in stolen:
            assert row is not None and row["lease_owner"] == "thief"
        else:
            assert row is None


async def test_one_heartbeat_extends_every_running_lease(engine: AsyncEngine) -> None:
    gate = asyncio.Event()

    async def hold(ctx: JobContext) -> None:
        await gate.wait()

    ids = [await add_job(engine, "hold") for _ in range(4)]
    queue = CountingQueue(engine)
    worker = with_queue(
        engine,
        queue,
        {"hold": Handler(hold)},
        concurrency=4,
        lease_seconds=2,
        heartbeat_seconds=0.1,
    )
    async with running(worker):
        await wait_until(lambda: worker.running_jobs == 4, timeout=10)
        await wait_until(lambda: 4 in queue.heartbeat_batches, timeout=10)
        async with engine.connect() as conn:
            left = (
                await conn.execute(
                    text(
                        "SELECT min(extract(epoch FROM lease_expires_at - now()))::float8 FROM jobs"
                    )
                )
            ).scalar_one()
        gate.set()
        await wait_until(lambda: no_jobs(engine), timeout=10)
    assert left > 1.0
    assert all(n <= 4 for n in queue.heartbeat_batches)
    assert len(ids) == 4


async def test_a_stopping_worker_completes_the_jobs_that_finished(engine: AsyncEngine) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    async def late(ctx: JobContext) -> None:
        started.set()
        await release.wait()

    await add_job(engine, "late")
    queue = CountingQueue(engine)
    worker = with_queue(engine, queue, {"late": Handler(late)}, shutdown_grace=5)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await wait_until(started.is_set, timeout=10)
    await wait_until(lambda: worker.claiming, timeout=10)
    stop.set()
    # The handler returns only after the claim loop has ended.
    await wait_until(lambda: not worker.claiming, timeout=10)
    release.set()
    await asyncio.wait_for(task, 10)
    assert await no_jobs(engine)
    assert queue.completion_batches == [1]
    assert queue.with_claims == 0
