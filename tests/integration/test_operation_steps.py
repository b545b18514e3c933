"""A step marker written with durable=False: its transaction's commit does not wait for the
disk (synchronous_commit off for that transaction alone), and it is committed all the
same; other transactions, on the same pooled connection too, stay durable."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres.unit_of_work import PostgresUnitOfWork
from tests.support.postgres import pending_delete_operation


async def _setting(uow: PostgresUnitOfWork) -> str:
    return str((await uow.conn.execute(text("SHOW synchronous_commit"))).scalar_one())


async def test_a_lazy_step_marker_relaxes_only_its_own_transaction(engine: AsyncEngine) -> None:
    operation_id = await pending_delete_operation(engine)

    async with PostgresUnitOfWork(engine) as uow:
        await uow.operations.mark_step(operation_id, "first", 1)
        assert await _setting(uow) == "on"
        await uow.commit()

    async with PostgresUnitOfWork(engine) as uow:
        await uow.operations.mark_step(operation_id, "second", 2, durable=False)
        assert await _setting(uow) == "off"
        await uow.commit()

    # The setting ended with its transaction: the next one on the pool is durable.
    async with PostgresUnitOfWork(engine) as uow:
        assert await _setting(uow) == "on"
        row = (
            await uow.conn.execute(
                text(
                    "SELECT status, current_step, attempt FROM operations"
                    " WHERE operation_id = CAST(:id AS uuid)"
                ),
                {"id": operation_id},
            )
        ).one()
    assert tuple(row) == ("IN_PROGRESS", "second", 2)
