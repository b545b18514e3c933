"""What operators watch, read from the database when metrics are scraped or readiness is
asked: the job queue's backlog, the outbox's lag, the schema's revision."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

BACKLOG = text(
    """
    SELECT
      (SELECT count(*) FROM jobs WHERE state = 'queued' AND run_at <= now()) AS ready,
      (SELECT coalesce(extract(epoch FROM now() - min(run_at)), 0)
         FROM jobs WHERE state = 'queued' AND run_at <= now()) AS oldest_ready_seconds,
      (SELECT count(*) FROM outbox WHERE position IS NULL) AS outbox_pending,
      (SELECT coalesce(extract(epoch FROM now() - min(occurred_at)), 0)
         FROM outbox WHERE position IS NULL) AS outbox_lag_seconds
    """
)


# Admission control's count: ready jobs, counted no further than :at_most, so that a long
# queue costs no more to count than the limit (the ix_jobs_ready partial index serves it).
READY_JOBS = text(
    """
    SELECT count(*) FROM (
        SELECT 1 FROM jobs WHERE state = 'queued' AND run_at <= now() LIMIT :at_most
    ) AS ready
    """
)


class PostgresJobBacklog:
    """The JobBacklog port on the jobs table."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def ready_jobs(self, at_most: int) -> int:
        async with self.engine.connect() as conn:
            return int((await conn.execute(READY_JOBS, {"at_most": at_most})).scalar_one())


@dataclass(frozen=True)
class Backlog:
    ready: int
    oldest_ready_seconds: float
    outbox_pending: int
    outbox_lag_seconds: float


async def backlog(engine: AsyncEngine) -> Backlog:
    async with engine.connect() as conn:
        row = (await conn.execute(BACKLOG)).mappings().one()
    return Backlog(
        ready=int(row["ready"]),
        oldest_ready_seconds=float(row["oldest_ready_seconds"]),
        outbox_pending=int(row["outbox_pending"]),
        outbox_lag_seconds=float(row["outbox_lag_seconds"]),
    )


async def schema_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is migrated to (None before the first migration)."""
    async with engine.connect() as conn:
        exists = (await conn.execute(text("SELECT to_regclass('alembic_version')"))).scalar()
        if exists is None:
            return None
        revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    return None if revision is None else str(revision)
