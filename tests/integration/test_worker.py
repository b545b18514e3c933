"""The worker against a real Postgres: completion, NOTIFY wake-up, retries with backoff,
exhaustion, lease loss, graceful stop and exclusive execution across workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from servicecontrol_server.adapters.postgres.database import create_engine
from servicecontrol_server.adapters.postgres.jobqueue import JOBS_CHANNEL, JobQueue, enqueue
from servicecontrol_server.adapters.postgres.listen import PgListener, engine_libpq_url
from servicecontrol_server.adapters.postgres.unit_of_work import PostgresUnitOfWork
from servicecontrol_server.application.ports import (
    JobContext,
    JobFailure,
    LeaseLost,
    PermanentJobError,
    RetryableJobError,
    UnitOfWork,
)
from servicecontrol_server.engine import Worker, backoff_delay
from tests.support.waiting import wait_until

Body = Callable[[JobContext], Awaitable[None]]


class Handler:
    """A handler whose run() is `body`, recording every call the engine makes."""

    def __init__(self, body: Body | None = None) -> None:
        self.body = body
        self.runs: list[tuple[int, int]] = []
        self.retries: list[tuple[int, JobFailure, float]] = []
        self.exhausted: list[tuple[int, JobFailure]] = []
        self.exhaust_hook: Callable[[JobContext, AsyncConnection], Awaitable[None]] | None = None

    async def run(self, ctx: JobContext) -> None:
        self.runs.append((ctx.job.job_id, ctx.job.attempts))
        if self.body is not None:
            await self.body(ctx)

    async def on_retry(self, ctx: JobContext, failure: JobFailure, delay_seconds: float) -> None:
        self.retries.append((ctx.job.job_id, failure, delay_seconds))

    async def on_exhausted(self, ctx: JobContext, uow: UnitOfWork, failure: JobFailure) -> None:
        if self.exhaust_hook is not None:
            await self.exhaust_hook(ctx, connection(uow))
        self.exhausted.append((ctx.job.job_id, failure))


def make_worker(engine: AsyncEngine, handlers: dict[str, Any], **kwargs: Any) -> Worker:
    options: dict[str, Any] = {
        "owner": "test-worker",
        "concurrency": 2,
        "lease_seconds": 30,
        "heartbeat_seconds": 10,
        "poll_seconds": 0.2,
        "backoff_base": 0.05,
        "backoff_max": 0.2,
        "shutdown_grace": 5,
    }
    options.update(kwargs)
    return Worker(
        JobQueue(engine),
        lambda: PostgresUnitOfWork(engine),
        handlers,
        wakeups=lambda: PgListener(engine_libpq_url(engine), [JOBS_CHANNEL]),
        **options,
    )


def connection(uow: UnitOfWork) -> AsyncConnection:
    """The transaction's connection, to write a test's own rows in the job's transaction."""
    assert isinstance(uow, PostgresUnitOfWork)
    return uow.conn


@contextlib.asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def add_job(
    engine: AsyncEngine, kind: str = "test", max_attempts: int = 3, **payload: Any
) -> int:
    async with engine.begin() as conn:
        return await enqueue(conn, kind=kind, payload=payload, max_attempts=max_attempts)


async def job_row(engine: AsyncEngine, job_id: int) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            (await conn.execute(text("SELECT * FROM jobs WHERE job_id = :id"), {"id": job_id}))
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


async def job_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT count(*) FROM jobs"))).scalar_one())


@pytest.fixture
async def effects(engine: AsyncEngine) -> AsyncEngine:
    """A table where handlers commit what they did (a stand-in for an outcome)."""
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE effects (job_id bigint NOT NULL, note text)"))
    return engine


async def effect_rows(engine: AsyncEngine) -> list[tuple[int, str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT job_id, note FROM effects ORDER BY 1"))).all()
    return [(int(r[0]), r[1]) for r in rows]


async def write_effect(ctx: JobContext, note: str) -> None:
    async with ctx.transaction() as uow:
        await connection(uow).execute(
            text("INSERT INTO effects VALUES (:id, :note)"), {"id": ctx.job.job_id, "note": note}
        )
        await ctx.complete(uow)


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    assert backoff_delay(1, 0.5, 60, rng=lambda: 1.0) == 0.5
    assert backoff_delay(2, 0.5, 60, rng=lambda: 1.0) == 1.0
    assert backoff_delay(4, 0.5, 60, rng=lambda: 1.0) == 4.0
    assert backoff_delay(4, 0.5, 60, rng=lambda: 0.25) == 1.0
    assert backoff_delay(4, 0.5, 60, rng=lambda: 0.0) == 0.0
    assert backoff_delay(8, 0.5, 60, rng=lambda: 1.0) == 60.0
    assert backoff_delay(10_000, 0.5, 60, rng=lambda: 0.5) == 30.0
    # Attempt numbers below 1 behave like the first attempt.
    assert backoff_delay(0, 0.5, 60, rng=lambda: 1.0) == 0.5
    draws = [backoff_delay(3, 0.5, 60) for _ in range(200)]
    assert all(0 <= d < 2.0 for d in draws)
    assert len(set(draws)) > 1


async def test_jobs_complete_and_their_rows_are_deleted(effects: AsyncEngine) -> None:
    engine = effects

    async def with_outcome(ctx: JobContext) -> None:
        await write_effect(ctx, "done")

    committing = Handler(with_outcome)
    # Returns without completing: the engine completes the job itself.
    bare = Handler()
    ids = [await add_job(engine, "commit") for _ in range(5)]
    ids += [await add_job(engine, "bare") for _ in range(5)]
    worker = make_worker(engine, {"commit": committing, "bare": bare})
    async with running(worker):
        await wait_until(lambda: no_jobs(engine), timeout=10)
    assert sorted(job_id for job_id, _ in committing.runs + bare.runs) == ids
    assert await effect_rows(engine) == [(job_id, "done") for job_id in ids[:5]]
    assert committing.retries == bare.retries == []


async def no_jobs(engine: AsyncEngine) -> bool:
    return await job_count(engine) == 0


async def test_a_notification_wakes_an_idle_worker(engine: AsyncEngine) -> None:
    handler = Handler()
    # With a 30 s poll, only the enqueue's NOTIFY can start the job within the deadline.
    worker = make_worker(engine, {"test": handler}, poll_seconds=30)
    async with running(worker):
        await wait_until(lambda: worker.listening and worker.idle, timeout=10)
        job_id = await add_job(engine)
        await wait_until(lambda: no_jobs(engine), timeout=5)
    assert handler.runs == [(job_id, 1)]


async def test_retries_with_backoff_then_succeeds(engine: AsyncEngine) -> None:
    seen_progress: list[dict[str, Any]] = []

    async def flaky(ctx: JobContext) -> None:
        seen_progress.append(dict(ctx.progress))
        if ctx.job.attempts == 1:
            await ctx.save_progress(step="copied")
            raise RetryableJobError("OBJECT_STORE_UNAVAILABLE", "store down", {"bucket": "b"})
        if ctx.job.attempts == 2:
            raise ValueError("an unexpected bug")

    handler = Handler(flaky)
    # A 30 s poll: the worker must wake for the delayed retry on its own.
    worker = make_worker(engine, {"test": handler}, poll_seconds=30, rng=lambda: 0.5)
    job_id = await add_job(engine, max_attempts=5)
    async with running(worker):
        await wait_until(lambda: no_jobs(engine), timeout=10)

    assert handler.runs == [(job_id, 1), (job_id, 2), (job_id, 3)]
    assert seen_progress == [{}, {"step": "copied"}, {"step": "copied"}]
    assert [(r[1].reason, r[1].attempts) for r in handler.retries] == [
        ("OBJECT_STORE_UNAVAILABLE", 1),
        ("INTERNAL_ERROR", 2),
    ]
    assert handler.retries[0][1].metadata == {"bucket": "b"}
    assert handler.retries[1][1].metadata == {"exception": "ValueError"}
    # Half of the doubling window (0.05 s, then 0.1 s), as the pinned jitter says.
    assert [r[2] for r in handler.retries] == [0.025, 0.05]
    assert handler.exhausted == []


async def test_retry_waits_for_its_backoff(engine: AsyncEngine) -> None:
    handler = Handler(_always_retryable)
    worker = make_worker(
        engine,
        {"test": handler},
        backoff_base=3600,
        backoff_max=3600,
        retry_window=7200,
        poll_seconds=0.05,
        rng=lambda: 1.0,
    )
    job_id = await add_job(engine, max_attempts=5)
    async with running(worker):
        await wait_until(lambda: len(handler.retries) == 1, timeout=10)
        await wait_until(lambda: _job_state(engine, job_id, "queued"), timeout=10)
        row = await job_row(engine, job_id)
        assert row is not None and row["last_error"].startswith("COMPUTE_UNAVAILABLE")
        async with engine.connect() as conn:
            wait = (
                await conn.execute(
                    text("SELECT extract(epoch FROM run_at - now())::float8 FROM jobs"),
                )
            ).scalar_one()
        assert handler.retries[0][2] == 3600
        assert 3590 < wait <= 3600
        # Moving the retry forward makes the worker run it again.
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE jobs SET run_at = now()"))
        await wait_until(lambda: len(handler.runs) == 2, timeout=10)


async def _always_retryable(ctx: JobContext) -> None:
    raise RetryableJobError("COMPUTE_UNAVAILABLE", "compute down", {})


async def _job_state(engine: AsyncEngine, job_id: int, state: str) -> bool:
    row = await job_row(engine, job_id)
    return row is not None and row["state"] == state


async def test_exhaustion_records_the_failure_in_the_same_transaction(
    effects: AsyncEngine,
) -> None:
    engine = effects
    handler = Handler(_always_retryable)
    observed: list[tuple[str, str]] = []
    calls = 0

    async def exhaust_hook(ctx: JobContext, conn: AsyncConnection) -> None:
        nonlocal calls
        calls += 1
        query = text("SELECT state FROM jobs WHERE job_id = :id")
        inside = (await conn.execute(query, {"id": ctx.job.job_id})).scalar_one()
        async with engine.connect() as other:
            outside = (await other.execute(query, {"id": ctx.job.job_id})).scalar_one()
        observed.append((inside, outside))
        await conn.execute(
            text("INSERT INTO effects VALUES (:id, 'FAILED')"), {"id": ctx.job.job_id}
        )
        if calls == 1:
            # Everything in this transaction, the job's failed state included, rolls back.
            raise RuntimeError("the failure outcome could not be written")

    handler.exhaust_hook = exhaust_hook
    # A window that has ended by the second attempt: one retry, then the failure.
    worker = make_worker(engine, {"test": handler}, retry_window=0.001)
    job_id = await add_job(engine, max_attempts=2)
    async with running(worker):
        await wait_until(lambda: _job_state(engine, job_id, "failed"), timeout=10)

    # Marked failed in the hook's transaction, not yet visible outside it.
    assert observed == [("failed", "running"), ("failed", "running")]
    assert await effect_rows(engine) == [(job_id, "FAILED")]
    assert [attempt for _, attempt in handler.runs] == [1, 2]
    assert len(handler.retries) == 1
    [(exhausted_id, failure)] = handler.exhausted
    assert exhausted_id == job_id
    assert (failure.reason, failure.message, failure.attempts) == (
        "COMPUTE_UNAVAILABLE",
        "compute down",
        2,
    )
    row = await job_row(engine, job_id)
    assert row is not None
    assert (row["attempts"], row["lease_token"], row["last_error"]) == (
        2,
        None,
        "COMPUTE_UNAVAILABLE: compute down",
    )


async def test_a_permanent_error_skips_the_retries(engine: AsyncEngine) -> None:
    async def missing_image(ctx: JobContext) -> None:
        raise PermanentJobError("IMAGE_NOT_FOUND", "no such image", {"imageIdentifier": "x:1"})

    handler = Handler(missing_image)
    worker = make_worker(engine, {"test": handler})
    job_id = await add_job(engine, max_attempts=8)
    async with running(worker):
        await wait_until(lambda: _job_state(engine, job_id, "failed"), timeout=10)
    assert handler.runs == [(job_id, 1)]
    assert handler.retries == []
    [(_, failure)] = handler.exhausted
    assert failure == JobFailure("IMAGE_NOT_FOUND", "no such image", {"imageIdentifier": "x:1"}, 1)


async def test_unknown_kinds_and_spent_attempts_fail_at_once(engine: AsyncEngine) -> None:
    handler = Handler()
    unknown = await add_job(engine, kind="mystery")
    async with engine.begin() as conn:
        # As a rescue leaves a job whose last allowed attempt died with its worker.
        spent = (
            await conn.execute(
                text(
                    "INSERT INTO jobs (kind, attempts, max_attempts) VALUES ('test', 3, 3) "
                    "RETURNING job_id"
                )
            )
        ).scalar_one()
    worker = make_worker(engine, {"test": handler})
    async with running(worker):
        await wait_until(lambda: _job_state(engine, unknown, "failed"), timeout=10)
        await wait_until(lambda: _job_state(engine, spent, "failed"), timeout=10)
    row = await job_row(engine, unknown)
    assert row is not None and row["last_error"].startswith("no handler")
    assert handler.runs == []
    [(exhausted_id, failure)] = handler.exhausted
    assert (exhausted_id, failure.reason, failure.attempts) == (spent, "INTERNAL_ERROR", 3)


async def test_a_lost_lease_cancels_the_handler(effects: AsyncEngine) -> None:
    engine = effects
    started = asyncio.Event()
    cancelled = asyncio.Event()
    gate = asyncio.Event()

    async def long_step(ctx: JobContext) -> None:
        started.set()
        try:
            await gate.wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        await write_effect(ctx, "after the steal")

    handler = Handler(long_step)
    worker = make_worker(engine, {"test": handler}, lease_seconds=2, heartbeat_seconds=0.05)
    job_id = await add_job(engine)
    async with running(worker):
        await wait_until(started.is_set, timeout=10)
        await _steal(engine, job_id)
        await wait_until(cancelled.is_set, timeout=5)
        gate.set()
        await wait_until(lambda: worker.running_jobs == 0, timeout=5)
    assert await effect_rows(engine) == []
    row = await job_row(engine, job_id)
    assert row is not None and (row["state"], row["lease_owner"]) == ("running", "thief")
    assert handler.retries == []
    assert handler.exhausted == []


async def test_a_stale_handler_cannot_commit_its_outcome(effects: AsyncEngine) -> None:
    engine = effects
    started = asyncio.Event()
    gate = asyncio.Event()
    outcome: list[BaseException] = []

    async def slow(ctx: JobContext) -> None:
        started.set()
        await gate.wait()
        try:
            await write_effect(ctx, "after the steal")
        except LeaseLost as exc:
            outcome.append(exc)
            raise

    handler = Handler(slow)
    # The heartbeat would notice only after 10 s; the fenced completion notices first.
    worker = make_worker(engine, {"test": handler})
    job_id = await add_job(engine)
    async with running(worker):
        await wait_until(started.is_set, timeout=10)
        await _steal(engine, job_id)
        gate.set()
        await wait_until(lambda: worker.running_jobs == 0, timeout=5)
    assert len(outcome) == 1
    assert await effect_rows(engine) == []
    row = await job_row(engine, job_id)
    assert row is not None and row["lease_owner"] == "thief"
    assert handler.retries == []
    assert handler.exhausted == []


async def _steal(engine: AsyncEngine, job_id: int) -> None:
    """What a rescue plus another worker's claim do to the job, in one step."""
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE jobs SET lease_token = gen_random_uuid(), lease_owner = 'thief', "
                "attempts = attempts + 1 WHERE job_id = :id"
            ),
            {"id": job_id},
        )


async def test_graceful_stop_finishes_short_jobs_and_releases_long_ones(
    effects: AsyncEngine,
) -> None:
    engine = effects
    stopping = asyncio.Event()
    long_started = asyncio.Event()
    long_cancelled = asyncio.Event()

    async def short(ctx: JobContext) -> None:
        # Finishes only once the stop has begun: within the grace period.
        await stopping.wait()
        await write_effect(ctx, "short")

    async def forever(ctx: JobContext) -> None:
        long_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            long_cancelled.set()
            raise

    short_id = await add_job(engine, "short")
    long_id = await add_job(engine, "long")
    first = make_worker(
        engine, {"short": Handler(short), "long": Handler(forever)}, shutdown_grace=0.5
    )
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    await wait_until(lambda: long_started.is_set() and first.running_jobs == 2, timeout=10)
    stop.set()
    stopping.set()
    await asyncio.wait_for(task, 10)

    assert long_cancelled.is_set()
    assert await effect_rows(engine) == [(short_id, "short")]
    row = await job_row(engine, long_id)
    assert row is not None
    assert (row["state"], row["attempts"], row["lease_token"]) == ("queued", 0, None)

    # The 30 s lease is gone: another worker takes the job over at once.
    async def finish(ctx: JobContext) -> None:
        await write_effect(ctx, "long")

    second_handler = Handler(finish)
    second = make_worker(engine, {"long": second_handler}, owner="second")
    async with running(second):
        await wait_until(lambda: no_jobs(engine), timeout=5)
    assert second_handler.runs == [(long_id, 1)]


async def test_two_workers_run_each_job_exactly_once(
    effects: AsyncEngine, database_url: str
) -> None:
    engine = effects
    executions: Counter[int] = Counter()

    async def record(ctx: JobContext) -> None:
        executions[ctx.job.job_id] += 1
        await asyncio.sleep(0)
        await write_effect(ctx, ctx.job.payload["n"])

    async with engine.begin() as conn:
        ids = [
            await enqueue(conn, kind="test", payload={"n": str(n)}, max_attempts=3)
            for n in range(200)
        ]
    other_engine = create_engine(database_url)
    try:
        a = make_worker(engine, {"test": Handler(record)}, owner="a", concurrency=4)
        b = make_worker(other_engine, {"test": Handler(record)}, owner="b", concurrency=4)
        async with running(a), running(b):
            await wait_until(lambda: no_jobs(engine), timeout=30)
    finally:
        await other_engine.dispose()
    assert sorted(executions) == ids
    assert set(executions.values()) == {1}
    rows = await effect_rows(engine)
    assert sorted(job_id for job_id, _ in rows) == ids


async def test_the_rescuer_requeues_a_crashed_workers_job(engine: AsyncEngine) -> None:
    job_id = await add_job(engine)
    # A worker that claimed the job and died: its lease runs out and nobody extends it.
    [crashed] = await JobQueue(engine).claim("crashed", 1, 0.3)
    handler = Handler()
    worker = make_worker(
        engine, {"test": handler}, lease_seconds=0.6, heartbeat_seconds=0.2, poll_seconds=30
    )
    async with running(worker):
        await wait_until(lambda: no_jobs(engine), timeout=5)
    assert crashed.attempts == 1
    # The rescue kept the crashed attempt on the count.
    assert handler.runs == [(job_id, 2)]


# ----- transient failures: a time window, not a number of attempts -----


async def test_transient_failures_outlast_the_attempt_count_within_the_window(
    engine: AsyncEngine,
) -> None:
    async def down_five_times(ctx: JobContext) -> None:
        if ctx.job.attempts <= 5:
            raise RetryableJobError("OBJECT_STORE_UNAVAILABLE", "store down", {})

    handler = Handler(down_five_times)
    worker = make_worker(engine, {"test": handler}, retry_window=600)
    # Two attempts: a count would have failed the job at the second failure.
    job_id = await add_job(engine, max_attempts=2)
    async with running(worker):
        await wait_until(lambda: no_jobs(engine), timeout=20)

    assert [attempt for _, attempt in handler.runs] == [1, 2, 3, 4, 5, 6]
    assert handler.exhausted == []
    lefts = [failure.window_left_seconds for _, failure, _ in handler.retries]
    assert all(left is not None and 0 < left <= 600 for left in lefts)
    # The window starts at the first failure and only shrinks.
    assert lefts == sorted(lefts, reverse=True)
    assert all(job == job_id for job, _, _ in handler.retries)


async def test_the_window_starts_once_and_transient_retries_spare_the_attempts(
    engine: AsyncEngine,
) -> None:
    handler = Handler(_always_retryable)
    worker = make_worker(
        engine, {"test": handler}, retry_window=600, backoff_base=3600, backoff_max=3600
    )
    job_id = await add_job(engine, max_attempts=1)
    async with running(worker):
        await wait_until(lambda: len(handler.retries) == 1, timeout=10)
        await wait_until(lambda: _job_state(engine, job_id, "queued"), timeout=10)
    row = await job_row(engine, job_id)
    assert row is not None
    assert row["retry_since"] is not None
    # The transient failure did not use up the job's one attempt; the job's limit is the
    # one it was given (the spared attempt is counted apart).
    assert (row["attempts"], row["max_attempts"]) == (1, 1)
    assert row["payload"]["_spared_attempts"] == 1
    [(_, failure, delay)] = handler.retries
    # The delay is capped by what is left of the window.
    assert 0 < delay <= 600


async def test_spared_attempts_never_raise_the_limit_and_stay_out_of_the_payload(
    engine: AsyncEngine,
) -> None:
    """Two transient failures, then failures of another kind: the job still gets exactly
    its max_attempts of those, its row keeps max_attempts, and the handler never sees the
    count in its payload."""
    payloads: list[dict[str, Any]] = []

    async def transient_twice_then_broken(ctx: JobContext) -> None:
        payloads.append(dict(ctx.job.payload))
        if ctx.job.attempts <= 2:
            raise RetryableJobError("OBJECT_STORE_UNAVAILABLE", "store down", {})
        raise RuntimeError("broken")

    handler = Handler(transient_twice_then_broken)
    worker = make_worker(engine, {"test": handler}, retry_window=600)
    job_id = await add_job(engine, max_attempts=2, note="kept")
    async with running(worker):
        await wait_until(lambda: _job_state(engine, job_id, "failed"), timeout=20)
    # 2 spared attempts + 2 charged ones: the limit of 2 applied to the charged ones only.
    assert [attempt for _, attempt in handler.runs] == [1, 2, 3, 4]
    assert payloads == [{"note": "kept"}] * 4
    row = await job_row(engine, job_id)
    assert row is not None
    assert (row["attempts"], row["max_attempts"]) == (4, 2)
    assert row["payload"]["_spared_attempts"] == 2
    [(_, failure)] = handler.exhausted
    assert failure.attempts == 4


async def test_after_the_window_the_job_fails_and_says_which_window(engine: AsyncEngine) -> None:
    handler = Handler(_always_retryable)
    worker = make_worker(engine, {"test": handler}, retry_window=0.3)
    job_id = await add_job(engine, max_attempts=1)
    async with running(worker):
        await wait_until(lambda: _job_state(engine, job_id, "failed"), timeout=10)
    assert len(handler.runs) >= 2
    [(_, failure)] = handler.exhausted
    assert failure.reason == "COMPUTE_UNAVAILABLE"
    assert failure.metadata == {"retry_window_seconds": "0.3"}
