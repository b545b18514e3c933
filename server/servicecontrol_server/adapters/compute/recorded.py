"""The default compute driver. It runs nothing: it records in Postgres the instance state
a real driver would bring about, so that the lifecycle around it (pause keeps the image
and URL, resume brings the same service back, delete releases it) is real and testable.
A driver that runs containers plugs in behind the same ComputeDriver port."""

from __future__ import annotations

from sqlalchemy import func, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncEngine

from ..postgres.database import single_statement
from ..postgres.schema import compute_instances


class RecordedComputeDriver:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # Each change is one statement: in autocommit it is its own transaction, with no
        # BEGIN and COMMIT round trips around it.
        self._single = single_statement(engine)

    async def start(self, service_id: str, image_prefix: str | None) -> None:
        # `starts` counts real transitions only, so a repeated start shows up as a no-op.
        async with self._single.connect() as conn:
            await conn.execute(
                pg_insert(compute_instances)
                .values(service_id=service_id, state="RUNNING", image_prefix=image_prefix, starts=1)
                .on_conflict_do_update(
                    index_elements=["service_id"],
                    set_={
                        "state": "RUNNING",
                        "image_prefix": image_prefix,
                        "starts": compute_instances.c.starts
                        + func.cast(
                            compute_instances.c.state != "RUNNING", compute_instances.c.starts.type
                        ),
                        "updated_at": func.now(),
                    },
                )
            )

    async def stop(self, service_id: str) -> None:
        async with self._single.connect() as conn:
            await conn.execute(
                update(compute_instances)
                .where(
                    compute_instances.c.service_id == service_id,
                    compute_instances.c.state == "RUNNING",
                )
                .values(state="STOPPED", stops=compute_instances.c.stops + 1, updated_at=func.now())
            )

    async def release(self, service_id: str) -> None:
        await self.stop(service_id)
