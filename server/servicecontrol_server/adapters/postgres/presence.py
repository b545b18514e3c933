"""Worker liveness without a table: every worker process holds a shared session-level
advisory lock on one key for as long as it runs. PostgreSQL releases it when the session
ends, however the process ended, so the granted holders are exactly the live workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .database import libpq_url

log = logging.getLogger(__name__)

# The two-int form of the advisory lock key (objsubid 2 in pg_locks), so that it can
# never equal a single bigint key (objsubid 1) used elsewhere.
PRESENCE_CLASS = 0x5343  # "SC"
PRESENCE_OBJECT = 1

LIVE_WORKERS = text(
    """
    SELECT count(*) FROM pg_locks
    WHERE locktype = 'advisory' AND granted
      AND classid = :class_id AND objid = :object_id AND objsubid = 2
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    """
)


class AdvisoryLockPresence:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def live_workers(self) -> int:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                LIVE_WORKERS, {"class_id": PRESENCE_CLASS, "object_id": PRESENCE_OBJECT}
            )
            return int(result.scalar_one())


async def announce_worker(
    url: str, owner: str, stop: asyncio.Event, *, check_seconds: float = 5.0
) -> None:
    """Holds this process's presence until `stop`, reconnecting after a lost session."""
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(
                libpq_url(url), autocommit=True, application_name=owner[:63]
            ) as conn:
                await conn.execute(
                    "SELECT pg_advisory_lock_shared(%s, %s)", (PRESENCE_CLASS, PRESENCE_OBJECT)
                )
                while not stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), check_seconds)
                    if not stop.is_set():
                        await conn.execute("SELECT 1")
        except (psycopg.Error, OSError):
            log.debug("worker presence session lost; reconnecting", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), check_seconds)
