"""The worker's batching against a real Postgres: jobs whose handler returns are completed
in batches that travel with the next claim, each fenced by its own lease; the job's task
ends with its handler and its slot is taken again by the statement that completes it; one
heartbeat statement extends every running lease; a stopping worker still completes what
finished."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres.jobqueue import JobQueue
from servicecontrol_server.application.ports import ClaimedJob, JobContext
from servicecontrol_server.engine import worker as worker_module
from tests.integration.test_worker import (
    Handler,
    add_job,
    job_row,
    make_worker,
    no_jobs,
    running,
)
from tests.support.waiting import wait_until


class CountingQueue(JobQueue):
    """The real queue, recording how many jobs each batched statement carried."""

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__(engine)
        self.completion_batches: list[int] = []
        self.heartbeat_batches: list[int] = []
        self.before_completion: Any = None
        self.with_claims = 0
        # Each claim statement: (the jobs it completes, its limit, the jobs it claimed).
        self.statements: list[tuple[list[int], int, list[int]]] = []

    async def complete_and_claim(
        self, leases: Sequence[tuple[int, str]], owner: str, limit: int, lease_seconds: float
    ) -> tuple[set[int], list[ClaimedJob]]:
        if leases:
            self.completion_batches.append(len(leases))
            self.with_claims += 1
            if self.before_completion is not None:
                await self.before_completion(leases)
        done, claimed = await super().complete_and_claim(leases, owner, limit, lease_seconds)
        self.statements.append(
            ([job_id for job_id, _ in leases], limit, [job.job_id for job in claimed])
        )
        return done, claimed

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


def job_tasks() -> list[str]:
    """The names of the job tasks still alive."""
    return sorted(t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("job-"))


async def test_a_jobs_task_ends_with_its_handler_and_the_completing_statement_reuses_its_slot(
    engine: AsyncEngine,
) -> None:
    first = await add_job(engine, "bare")
    second = await add_job(engine, "bare")
    queue = CountingQueue(engine)
    in_flight: list[tuple[int, list[str]]] = []

    async def look(leases: Sequence[tuple[int, str]]) -> None:
        in_flight.append((worker.running_jobs, job_tasks()))

    queue.before_completion = look
    outcomes: list[str] = []
    worker = with_queue(
        engine,
        queue,
        {"bare": Handler()},
        concurrency=1,
        on_outcome=lambda kind, outcome, _: outcomes.append(outcome),
    )
    async with running(worker):
        await wait_until(lambda: outcomes == ["succeeded", "succeeded"], timeout=10)
        await wait_until(lambda: worker.running_jobs == 0, timeout=10)
    # While the first job's completion is in flight its task is gone, but the job still
    # holds the only slot: nothing else is claimed until the completing statement ...
    assert in_flight[0] == (1, [])
    # ... which claims the next job into that slot.
    assert queue.statements[:2] == [([], 1, [first]), ([first], 1, [second])]
    assert await no_jobs(engine)


class RecordingTracer:
    """An AttemptTracer that records when each attempt starts, ends and with what."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []

    @contextlib.contextmanager
    def attempt(self, job: ClaimedJob) -> Iterator[Any]:
        events = self.events
        events.append(("enter", job.job_id))

        class Attempt:
            def ended(self, outcome: str) -> None:
                events.append((outcome, job.job_id))

        yield Attempt()
        events.append(("exit", job.job_id))


async def test_a_traced_attempt_ends_after_its_batched_completion(engine: AsyncEngine) -> None:
    job_id = await add_job(engine, "bare")
    tracer = RecordingTracer()
    worker = make_worker(engine, {"bare": Handler()}, tracer=tracer)
    async with running(worker):
        await wait_until(lambda: ("exit", job_id) in tracer.events, timeout=10)
    assert tracer.events == [("enter", job_id), ("succeeded", job_id), ("exit", job_id)]


async def test_log_fields_are_built_only_for_lines_emitted(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    built: list[int] = []
    fields = worker_module._Running.fields

    def counting(self: Any, **more: Any) -> dict[str, Any]:
        built.append(self.job.job_id)
        return fields(self, **more)

    monkeypatch.setattr(worker_module._Running, "fields", counting)
    logger = logging.getLogger(worker_module.__name__)
    outcomes: list[str] = []

    async def drain(count: int) -> list[int]:
        ids = [await add_job(engine, "bare") for _ in range(count)]
        worker = make_worker(
            engine, {"bare": Handler()}, on_outcome=lambda k, o, _: outcomes.append(o)
        )
        async with running(worker):
            await wait_until(lambda: no_jobs(engine), timeout=10)
            await wait_until(lambda: worker.running_jobs == 0, timeout=10)
        return ids

    with caplog.at_level(logging.WARNING, logger=logger.name):
        await drain(3)
    assert built == []
    with caplog.at_level(logging.INFO, logger=logger.name):
        ids = await drain(2)
    completed = [r for r in caplog.records if r.getMessage() == "job completed"]
    assert sorted(r.__dict__["job_id"] for r in completed) == ids
    assert {r.__dict__["kind"] for r in completed} == {"bare"}
    assert sorted(built) == ids
    assert outcomes == ["succeeded"] * 5


async def test_a_failed_completion_frees_the_slot_and_the_job_runs_again_later(
    engine: AsyncEngine,
) -> None:
    job_id = await add_job(engine, "bare")
    queue = CountingQueue(engine)
    failed: list[int] = []

    async def fail_once(leases: Sequence[tuple[int, str]]) -> None:
        if not failed:
            failed.append(leases[0][0])
            raise ConnectionError("the database went away")

    queue.before_completion = fail_once
    handler = Handler()
    worker = with_queue(
        engine, queue, {"bare": handler}, concurrency=1, lease_seconds=1, heartbeat_seconds=0.5
    )
    async with running(worker):
        await wait_until(lambda: failed == [job_id], timeout=10)
        # Its slot is free at once; the job keeps its lease until it expires ...
        await wait_until(lambda: worker.running_jobs == 0, timeout=10)
        # ... and is then rescued, run again and completed.
        await wait_until(lambda: no_jobs(engine), timeout=15)
    assert handler.runs == [(job_id, 1), (job_id, 2)]


async def test_a_stop_wakes_an_idle_worker_at_once(engine: AsyncEngine) -> None:
    worker = make_worker(engine, {"bare": Handler()}, poll_seconds=60)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await wait_until(lambda: worker.idle, timeout=10)
        stop.set()
        await asyncio.wait_for(task, 5)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
