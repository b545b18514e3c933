"""Reads that are one statement run outside a transaction (no BEGIN/ROLLBACK round trips),
and such a unit of work can write nothing; mutations keep their transaction."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres.database import single_statement
from servicecontrol_server.adapters.postgres.identity import PostgresIdentityStore
from servicecontrol_server.adapters.postgres.unit_of_work import PostgresUnitOfWork

# now() is the start of the current transaction: equal across two statements in one
# transaction, different when each statement is its own.
TWO_CLOCKS = text("SELECT now()")
PAUSE = text("SELECT pg_sleep(0.01)")


async def running_service(engine: AsyncEngine, name: str) -> None:
    """A RUNNING service `svc-<name>` of a fresh account, for the compute driver."""
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO accounts (account_id) VALUES ('111122223333')"))
        await conn.execute(
            text(
                "INSERT INTO services (service_id, account_id, region, service_name,"
                " service_arn, service_url, status) VALUES (:id, '111122223333',"
                " 'us-east-1', :name, :arn, :url, 'RUNNING')"
            ),
            {"id": f"svc-{name}", "name": name, "arn": f"arn:{name}", "url": f"{name}.example"},
        )


async def test_a_read_only_unit_of_work_runs_each_statement_on_its_own(
    engine: AsyncEngine,
) -> None:
    async with PostgresUnitOfWork(single_statement(engine), read_only=True) as uow:
        first = (await uow.conn.execute(TWO_CLOCKS)).scalar_one()
        await uow.conn.execute(PAUSE)
        second = (await uow.conn.execute(TWO_CLOCKS)).scalar_one()
    assert second > first


async def test_a_unit_of_work_for_mutations_keeps_one_transaction(engine: AsyncEngine) -> None:
    async with PostgresUnitOfWork(engine) as uow:
        first = (await uow.conn.execute(TWO_CLOCKS)).scalar_one()
        await uow.conn.execute(PAUSE)
        second = (await uow.conn.execute(TWO_CLOCKS)).scalar_one()
    assert second == first


async def test_a_read_only_unit_of_work_refuses_to_commit(engine: AsyncEngine) -> None:
    async with PostgresUnitOfWork(single_statement(engine), read_only=True) as uow:
        with pytest.raises(RuntimeError, match="read-only"):
            await uow.commit()


async def test_the_pool_s_connections_return_to_transactions_after_a_single_statement_read(
    engine: AsyncEngine,
) -> None:
    """The autocommit setting is per checkout: the next transaction on the same pool is
    a transaction again."""
    store = PostgresIdentityStore(engine)
    for _ in range(3):
        assert await store.get_key("sck_NOSUCHKEY0000000") is None
    async with engine.connect() as conn:
        first = (await conn.execute(TWO_CLOCKS)).scalar_one()
        await conn.execute(PAUSE)
        second = (await conn.execute(TWO_CLOCKS)).scalar_one()
    assert second == first


async def test_the_recorded_compute_driver_writes_each_change_as_one_statement(
    engine: AsyncEngine,
) -> None:
    """A compute change is one statement in autocommit (no BEGIN and COMMIT round trips),
    and it is committed: another connection sees it."""
    from sqlalchemy import event

    from servicecontrol_server.adapters.compute.recorded import RecordedComputeDriver

    await running_service(engine, "one")
    autocommit: list[bool] = []

    def executing(conn: Any, cursor: object, statement: str, *_: object) -> None:
        if "compute_instances" in statement:
            autocommit.append(bool(conn.connection.dbapi_connection.autocommit))

    event.listen(engine.sync_engine, "before_cursor_execute", executing)
    try:
        driver = RecordedComputeDriver(engine)
        await driver.start("svc-one", "services/svc-one/")
        await driver.stop("svc-one")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", executing)
    assert autocommit == [True, True]
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT state, starts, stops FROM compute_instances WHERE service_id = :s"),
                {"s": "svc-one"},
            )
        ).one()
    assert tuple(row) == ("STOPPED", 1, 1)


async def test_a_compute_record_commits_without_waiting_for_the_disk_and_a_later_durable_commit_flushes_it(  # noqa: E501
    engine: AsyncEngine,
) -> None:
    """A compute record relaxes synchronous_commit for its own transaction only (the
    statement after it, on the same connection, is durable again), and a durable commit
    made after it returns only once the log is on disk past the record's commit: the
    reasoning of recorded.py, that the job's later durable commits make the record
    durable."""
    from servicecontrol_server.adapters.compute.recorded import (
        START_INSTANCE,
        STOP_INSTANCE,
        RecordedComputeDriver,
    )

    await running_service(engine, "two")
    show = text("SHOW synchronous_commit")
    params = {"service_id": "svc-two", "image_prefix": "services/svc-two/"}
    for statement in (START_INSTANCE, STOP_INSTANCE):
        # Inside a transaction, the setting holds until its end...
        async with engine.connect() as conn:
            async with conn.begin():
                await conn.execute(statement, params)
                assert (await conn.execute(show)).scalar_one() == "off"
            # ...and not after it.
            assert (await conn.execute(show)).scalar_one() == "on"
        # In autocommit, as the driver sends it, the statement is its own transaction.
        async with single_statement(engine).connect() as conn:
            await conn.execute(statement, params)
            assert (await conn.execute(show)).scalar_one() == "on"

    driver = RecordedComputeDriver(engine)
    await driver.start("svc-two", "services/svc-two/")
    async with single_statement(engine).connect() as conn:
        written = (await conn.execute(text("SELECT pg_current_wal_insert_lsn()"))).scalar_one()
        # A durable commit after it (the job's progress save or outcome, in the job).
        await conn.execute(
            text("UPDATE services SET updated_at = now() WHERE service_id = 'svc-two'")
        )
        flushed = (
            await conn.execute(
                text("SELECT pg_current_wal_flush_lsn() >= CAST(:lsn AS pg_lsn)"),
                {"lsn": written},
            )
        ).scalar_one()
        state = (
            await conn.execute(
                text("SELECT state FROM compute_instances WHERE service_id = 'svc-two'")
            )
        ).scalar_one()
    assert flushed is True
    assert state == "RUNNING"


async def test_on_a_direct_pool_the_compute_driver_records_through_it(
    engine: AsyncEngine,
) -> None:
    """Given the direct pool, a compute change goes on one of its sessions (none of the
    engine's), still one statement in autocommit whose relaxed commit ends with it."""
    from sqlalchemy import event

    from servicecontrol_server.adapters.compute.recorded import RecordedComputeDriver
    from servicecontrol_server.adapters.postgres.direct import DirectPool

    await running_service(engine, "three")
    on_engine: list[str] = []

    def executing(conn: Any, cursor: object, statement: str, *_: object) -> None:
        if "compute_instances" in statement:
            on_engine.append(statement)

    pool = DirectPool(engine.url.render_as_string(hide_password=False), max_size=1)
    event.listen(engine.sync_engine, "before_cursor_execute", executing)
    try:
        driver = RecordedComputeDriver(engine, pool)
        await driver.start("svc-three", "services/svc-three/")
        await driver.stop("svc-three")
        assert pool.opened == 1
        async with pool.connection() as session:
            assert session.autocommit
            setting = await (await session.execute("SHOW synchronous_commit")).fetchone()
            assert setting == ("on",)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", executing)
        await pool.close()
    assert on_engine == []
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT state, starts, stops FROM compute_instances WHERE service_id = :s"),
                {"s": "svc-three"},
            )
        ).one()
    assert tuple(row) == ("STOPPED", 1, 1)
