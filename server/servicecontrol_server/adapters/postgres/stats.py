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
