"""The job engine's no-op throughput beside two references measured in the same run, on
the same database server and with the same slot counts:

- pgqueuer (a Python PostgreSQL queue) with the same number of workers, each dequeuing
  batches of ENGINE_BATCH; installed by the `bench` extra. When it is not installed the
  run says so and skips only that reference.
- a raw psycopg `FOR UPDATE SKIP LOCKED` claim-and-delete loop, one connection per worker,
  at batch 1 and at the engine's batch.

Each engine worker is one Worker (its own queue connection and LISTEN connection) with
ENGINE_BATCH slots, so it claims up to ENGINE_BATCH jobs in one statement. A no-op job
is claimed with a lease, run, and completed with its lease fenced.

    .venv/bin/python bench/bench_engine.py [--quick] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
from common import Row, median, postgres_server, scratch_database
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres import jobqueue
from servicecontrol_server.adapters.postgres.database import create_engine, libpq_url
from servicecontrol_server.adapters.postgres.listen import PgListener, engine_libpq_url
from servicecontrol_server.adapters.postgres.unit_of_work import PostgresUnitOfWork
from servicecontrol_server.engine.worker import Worker

# Jobs each worker claims (and runs) at once; pgqueuer's batch_size and the raw loop's
# batch are the same number.
ENGINE_BATCH = 10
WORKER_COUNTS = (1, 2, 4)

# Targets on ratios (engine / reference), 4 workers.
TARGET_VS_PGQUEUER = 1.0
GOAL_VS_PGQUEUER = 1.5
TARGET_VS_RAW_SAME_BATCH = 0.5


class NoOp:
    """Does nothing; the engine completes the job (the batched path)."""

    async def run(self, ctx: Any) -> None:
        return None

    async def on_retry(self, ctx: Any, failure: Any, delay_seconds: float) -> None:
        return None

    async def on_exhausted(self, ctx: Any, uow: Any, failure: Any) -> None:
        return None


class CommittingNoOp(NoOp):
    """Writes its (empty) outcome and the fenced completion in its own transaction, as
    every service job does."""

    async def run(self, ctx: Any) -> None:
        async with ctx.transaction() as uow:
            await ctx.complete(uow)


async def _seed_jobs(url: str, n: int) -> None:
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        await conn.execute("DELETE FROM jobs")
        await conn.execute(
            "INSERT INTO jobs (kind, payload, progress, max_attempts)"
            " SELECT 'noop', '{}'::jsonb, '{}'::jsonb, 3 FROM generate_series(1, %s)",
            (n,),
        )
        await conn.execute("VACUUM ANALYZE jobs")


async def _drain_time(url: str, start: Callable[[], Awaitable[Any]], count_sql: str) -> float:
    """Seconds from start() until count_sql answers 0 (polled on its own connection)."""
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        t = time.perf_counter()
        running = await start()
        while True:
            left = (await (await conn.execute(count_sql)).fetchone() or (0,))[0]
            if left == 0:
                break
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - t
    await running()
    return elapsed


async def engine_rate(
    engine: AsyncEngine, url: str, n: int, workers: int, handler: NoOp | None = None
) -> float:
    await _seed_jobs(url, n)
    stop = asyncio.Event()
    pool = [
        Worker(
            jobqueue.JobQueue(engine),
            lambda: PostgresUnitOfWork(engine),
            {"noop": handler or NoOp()},
            wakeups=lambda: PgListener(engine_libpq_url(engine), [jobqueue.JOBS_CHANNEL]),
            owner=f"bench-{i}",
            concurrency=ENGINE_BATCH,
            poll_seconds=0.05,
        )
        for i in range(workers)
    ]

    async def start() -> Callable[[], Awaitable[None]]:
        tasks = [asyncio.create_task(w.run(stop)) for w in pool]

        async def finish() -> None:
            stop.set()
            await asyncio.gather(*tasks)

        return finish

    elapsed = await _drain_time(url, start, "SELECT count(*) FROM jobs WHERE kind = 'noop'")
    return n / elapsed


async def raw_rate(url: str, n: int, workers: int, batch: int) -> float:
    """A bare SKIP LOCKED claim-and-delete loop (no lease, no handler, no completion)."""
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        await conn.execute("DROP TABLE IF EXISTS bench_raw")
        await conn.execute(
            "CREATE TABLE bench_raw (id bigint generated always as identity primary key,"
            " state text not null default 'queued')"
        )
        await conn.execute(
            "INSERT INTO bench_raw (state) SELECT 'queued' FROM generate_series(1, %s)", (n,)
        )
        await conn.execute("VACUUM ANALYZE bench_raw")
    claim = (
        "WITH c AS (SELECT id FROM bench_raw WHERE state = 'queued' ORDER BY id LIMIT %s"
        " FOR UPDATE SKIP LOCKED) DELETE FROM bench_raw b USING c WHERE b.id = c.id"
        " RETURNING b.id"
    )

    async def one() -> None:
        async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as c:
            while True:
                rows = await (await c.execute(claim, (batch,), prepare=True)).fetchall()
                if not rows:
                    return

    t = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(workers)))
    return n / (time.perf_counter() - t)


def pgqueuer_available() -> bool:
    try:
        import pgqueuer  # noqa: F401
    except ImportError:
        return False
    return True


async def pgqueuer_rate(url: str, n: int, workers: int) -> float:
    """pgqueuer at its fastest (its asyncpg driver when installed), timed like the
    engine: from start until its queue table is empty."""
    from pgqueuer import QueueManager
    from pgqueuer.queries import Queries

    conninfo = libpq_url(url)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as admin:
        from pgqueuer.db import PsycopgDriver

        queries = Queries(PsycopgDriver(admin))
        if not await queries.schema_is_installed():
            await queries.install()
        await admin.execute("TRUNCATE pgqueuer")
        for start in range(0, n, 1000):
            k = min(1000, n - start)
            await queries.enqueue(["noop"] * k, [None] * k, [0] * k)
        await admin.execute("VACUUM ANALYZE pgqueuer")

    connections: list[Any] = []
    try:
        managers = []
        for _ in range(workers):
            driver = await _pgqueuer_driver(conninfo, connections)
            qm = QueueManager(Queries(driver))

            @qm.entrypoint("noop")
            async def noop(job: Any) -> None:
                return None

            managers.append(qm)

        async def start() -> Callable[[], Awaitable[None]]:
            tasks = [
                asyncio.create_task(qm.run(batch_size=ENGINE_BATCH, dequeue_timeout=_SECOND))
                for qm in managers
            ]

            async def finish() -> None:
                for qm in managers:
                    qm.shutdown.set()
                await asyncio.gather(*tasks)

            return finish

        elapsed = await _drain_time(
            url, start, "SELECT count(*) FROM pgqueuer WHERE status IN ('queued', 'picked')"
        )
        return n / elapsed
    finally:
        for conn in connections:
            await conn.close()


_SECOND = timedelta(seconds=1)


async def _pgqueuer_driver(conninfo: str, connections: list[Any]) -> Any:
    try:
        import asyncpg
        from pgqueuer.db import AsyncpgDriver
    except ImportError:
        from pgqueuer.db import PsycopgDriver

        conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
        connections.append(conn)
        return PsycopgDriver(conn)
    conn = await asyncpg.connect(conninfo)
    connections.append(conn)
    return AsyncpgDriver(conn)


async def run(quick: bool) -> dict[str, Any]:
    n = 1000 if quick else 10_000
    repeats = 1 if quick else 3
    notes: list[str] = []
    rows: list[Row] = []
    series: dict[str, dict[int, float]] = {}

    async def measure(name: str, fn: Callable[[], Awaitable[float]]) -> float:
        samples = [await fn() for _ in range(repeats)]
        return median(samples)

    with postgres_server() as server, scratch_database(server) as url:
        engine = create_engine(url, pool_size=10)
        try:
            for w in WORKER_COUNTS:
                series.setdefault("engine", {})[w] = await measure(
                    "engine", lambda w=w: engine_rate(engine, url, n, w)
                )
            # A commit of its own per job: far slower, so fewer jobs.
            committing = await measure(
                "engine-tx",
                lambda: engine_rate(engine, url, min(n, 1000), 4, CommittingNoOp()),
            )
        finally:
            await engine.dispose()
        for w in WORKER_COUNTS:
            series.setdefault("raw batch 1", {})[w] = await measure(
                "raw1", lambda w=w: raw_rate(url, n, w, 1)
            )
            series.setdefault(f"raw batch {ENGINE_BATCH}", {})[w] = await measure(
                "rawB", lambda w=w: raw_rate(url, n, w, ENGINE_BATCH)
            )
        if pgqueuer_available():
            for w in WORKER_COUNTS:
                series.setdefault("pgqueuer", {})[w] = await measure(
                    "pgq", lambda w=w: pgqueuer_rate(url, n, w)
                )
        else:
            notes.append(
                "pgqueuer is not installed (pip install -e '.[bench]'): its reference is skipped"
            )
    engine4 = series["engine"][4]
    if "pgqueuer" in series:
        rows.append(
            Row(
                "engine",
                "no-op jobs/s, 4 workers, vs pgqueuer (4 workers, batch 10)",
                engine4,
                "jobs/s",
                "pgqueuer",
                series["pgqueuer"][4],
                TARGET_VS_PGQUEUER,
                GOAL_VS_PGQUEUER,
            )
        )
    rows.append(
        Row(
            "engine",
            f"no-op jobs/s, 4 workers, vs raw loop at batch {ENGINE_BATCH}",
            engine4,
            "jobs/s",
            f"raw SKIP LOCKED batch {ENGINE_BATCH}",
            series[f"raw batch {ENGINE_BATCH}"][4],
            TARGET_VS_RAW_SAME_BATCH,
        )
    )
    rows.append(
        Row(
            "engine",
            "no-op jobs/s, 4 workers, vs raw loop at batch 1",
            engine4,
            "jobs/s",
            "raw SKIP LOCKED batch 1",
            series["raw batch 1"][4],
        )
    )
    rows.append(
        Row(
            "engine",
            "committing no-op jobs/s (outcome transaction per job), 4 workers",
            committing,
            "jobs/s",
            "engine no-op, 4 workers",
            engine4,
        )
    )
    # The like-for-like reference of a job that commits its own outcome: one commit per
    # job, as the raw loop at batch 1 pays.
    rows.append(
        Row(
            "engine",
            "committing no-op jobs/s, 4 workers, vs raw loop at batch 1 (a commit per job)",
            committing,
            "jobs/s",
            "raw SKIP LOCKED batch 1",
            series["raw batch 1"][4],
        )
    )
    return {
        "jobs": n,
        "repeats": repeats,
        "batch": ENGINE_BATCH,
        "series": {k: {str(w): v for w, v in s.items()} for k, s in series.items()},
        "rows": [r.as_dict() for r in rows],
        "notes": notes,
    }


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = asyncio.run(run(args.quick))
    out = json.dumps(report, indent=2)
    print(out)
    if args.json:
        args.json.write_text(out)


if __name__ == "__main__":
    main()
