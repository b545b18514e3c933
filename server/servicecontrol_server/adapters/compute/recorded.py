"""The default compute driver. It runs nothing: it records in Postgres the instance state
a real driver would bring about, so that the lifecycle around it (pause keeps the image
and URL, resume brings the same service back, delete releases it) is real and testable.
A driver that runs containers plugs in behind the same ComputeDriver port."""

from __future__ import annotations

from typing import Any

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ..postgres.database import single_statement
from ..postgres.direct import DirectPool

# Why a record's commit need not wait for the disk (synchronous_commit off for the
# statement's own transaction: set_config(..., is_local => true), in a one-row subquery
# that runs once, when the row is written):
# - Only jobs call the driver, and each job calls it in every attempt before its outcome
#   (create, update and deployments start compute; pause and delete stop it), so the
#   record is progress that a retried attempt writes again.
# - Postgres writes commits to its log in order, and a durable commit waits until the
#   log is on disk up to its own commit record: the job's durable commits that come later
#   (a progress save, its outcome) make this record durable too.
# - So a crash of the database can lose the record only while the job's outcome is not
#   committed either; the job's row is durable since it was enqueued, the job is rescued
#   and run again, and its next attempt writes the record again before any outcome.
# `starts` and `stops` count real transitions only, so a repeated call shows as a no-op.
START_INSTANCE = text(
    """
    INSERT INTO compute_instances (service_id, state, image_prefix, starts)
    SELECT :service_id, 'RUNNING', :image_prefix, 1
    FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
    ON CONFLICT (service_id) DO UPDATE
    SET state = 'RUNNING', image_prefix = excluded.image_prefix,
        starts = compute_instances.starts
                 + CAST(compute_instances.state <> 'RUNNING' AS integer),
        updated_at = now()
    """
)

STOP_INSTANCE = text(
    """
    UPDATE compute_instances
    SET state = 'STOPPED', stops = stops + 1, updated_at = now()
    FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
    WHERE service_id = :service_id AND state = 'RUNNING'
    """
)


class RecordedComputeDriver:
    def __init__(self, engine: AsyncEngine, direct: DirectPool | None = None) -> None:
        self.engine = engine
        # Each change is one statement: in autocommit it is its own transaction, with no
        # BEGIN and COMMIT round trips around it. On the direct pool when there is one
        # (the composition root passes it unless calls are traced): a psycopg session
        # of its own, without SQLAlchemy's pool checkout and asyncio bridge around it.
        self._single = single_statement(engine)
        self._direct = direct

    async def _record(self, statement: TextClause, params: dict[str, Any]) -> None:
        if self._direct is not None:
            await self._direct.execute(statement, params)
            return
        async with self._single.connect() as conn:
            await conn.execute(statement, params)

    async def start(self, service_id: str, image_prefix: str | None) -> None:
        await self._record(START_INSTANCE, {"service_id": service_id, "image_prefix": image_prefix})

    async def stop(self, service_id: str) -> None:
        await self._record(STOP_INSTANCE, {"service_id": service_id})

    async def release(self, service_id: str) -> None:
        await self.stop(service_id)
