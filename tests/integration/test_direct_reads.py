"""The request path's hot reads on the direct psycopg pool (key lookup, DescribeService,
ListServices): the same answers as through the engine, from the same named SQL, on
connections that stay open between calls, failing fast while the database is down."""

from __future__ import annotations

import asyncio
import socket
import time

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres import direct
from servicecontrol_server.adapters.postgres.database import single_statement
from servicecontrol_server.adapters.postgres.direct import DirectPool, psycopg_sql
from servicecontrol_server.adapters.postgres.direct_reads import (
    DirectReadUnitOfWork,
    DirectServiceReads,
)
from servicecontrol_server.adapters.postgres.identity import PostgresIdentityStore
from servicecontrol_server.adapters.postgres.unit_of_work import PostgresUnitOfWork
from servicecontrol_server.domain.errors import BackendUnavailable
from servicecontrol_server.domain.identity import Role
from tests.integration.test_port_contracts import (
    ACCOUNT,
    OTHER,
    REGION,
    new_service,
    postgres_backend,
)
from tests.integration.test_port_contracts import (
    add_services as add,
)


def test_named_sql_becomes_psycopg_sql_with_casts_and_percent_signs_kept() -> None:
    statement = text("SELECT x::text, :a, 5 % 2, y = CAST(:long_name_2 AS uuid) WHERE z=:a")
    assert psycopg_sql(statement) == (
        "SELECT x::text, %(a)s, 5 %% 2, y = CAST(%(long_name_2)s AS uuid) WHERE z=%(a)s"
    )


async def test_service_reads_match_the_engine_s(engine: AsyncEngine, database_url: str) -> None:
    backend = postgres_backend(engine)
    services = [new_service() for _ in range(5)]
    await add(backend, *services)
    await add(backend, new_service(OTHER), new_service(configuration=None))
    await add(backend, new_service(region="eu-west-1"))  # the same account elsewhere
    pool = DirectPool(database_url)
    reads = DirectServiceReads(pool)
    try:
        async with PostgresUnitOfWork(single_statement(engine), read_only=True) as uow:
            for service in services:
                assert await reads.get(ACCOUNT, service.service_id) == await uow.services.get(
                    ACCOUNT, service.service_id
                )
            # Another account's service is not found, nor an unknown one.
            assert await reads.get(OTHER, services[0].service_id) is None
            assert await reads.get(ACCOUNT, "0" * 32) is None
            everything = await uow.services.list_live(ACCOUNT, REGION, None, 10)
            assert await reads.list_live(ACCOUNT, REGION, None, 10) == everything
            assert len(everything) == 6
            assert any(s.configuration is None for s in everything)
            # Keyset pages: the same pages, in the same order.
            after = None
            paged = []
            while page := await reads.list_live(ACCOUNT, REGION, after, 4):
                assert page == await uow.services.list_live(ACCOUNT, REGION, after, 4)
                paged.extend(page)
                after = (page[-1].created_at, page[-1].service_id)
            assert paged == everything
    finally:
        await pool.close()


async def test_the_key_lookup_matches_the_engine_s_and_sees_a_revocation_at_once(
    engine: AsyncEngine, database_url: str
) -> None:
    through_engine = PostgresIdentityStore(engine)
    await through_engine.create_account(ACCOUNT)
    key = await through_engine.insert_key(
        "SCKDIRECT00000000001", ACCOUNT, Role.READER, "h", "s", 60
    )
    pool = direct.attach(engine, database_url)
    try:
        through_pool = PostgresIdentityStore(engine)
        found = await through_pool.get_key(key.key_id)
        expected = await through_engine.get_key(key.key_id)
        assert found is not None and expected is not None
        assert (found.key, found.secret_hash, found.secret_sealed) == (
            expected.key,
            expected.secret_hash,
            expected.secret_sealed,
        )
        assert found.key.expires_at is not None and found.key.expires_at > found.now
        await through_engine.revoke_key(ACCOUNT, key.key_id)
        revoked = await through_pool.get_key(key.key_id)
        assert revoked is not None and revoked.key.revoked_at is not None
        assert await through_pool.get_key("SCKNOSUCHKEY00000000") is None
        assert pool.opened == 1
    finally:
        await direct.detach(engine)


async def test_connections_stay_open_between_calls_and_the_pool_is_bounded(
    engine: AsyncEngine, database_url: str
) -> None:
    await add(postgres_backend(engine), new_service())
    pool = DirectPool(database_url, max_size=4)
    reads = DirectServiceReads(pool)
    try:
        for _ in range(20):
            await reads.list_live(ACCOUNT, REGION, None, 5)
        assert pool.opened == 1  # one session, reused (none opened per call)
        await asyncio.gather(*(reads.list_live(ACCOUNT, REGION, None, 5) for _ in range(32)))
        assert pool.opened <= 4 and pool.idle == pool.opened
        opened = pool.opened
        await asyncio.gather(*(reads.list_live(ACCOUNT, REGION, None, 5) for _ in range(32)))
        assert pool.opened == opened  # the second burst opens nothing new
    finally:
        await pool.close()
    assert pool.idle == 0
    with pytest.raises(RuntimeError, match="closed"):
        await reads.get(ACCOUNT, "0" * 32)


async def test_after_the_sessions_broke_one_call_is_refused_and_the_next_is_answered(
    engine: AsyncEngine, database_url: str
) -> None:
    """As after a database restart: every idle session is dead, and only the first call
    to meet one is refused (the pool drops the others with it)."""
    await add(postgres_backend(engine), new_service())
    pool = DirectPool(database_url)
    reads = DirectServiceReads(pool)
    try:
        await asyncio.gather(*(reads.list_live(ACCOUNT, REGION, None, 5) for _ in range(3)))
        assert pool.idle == pool.opened > 1
        async with engine.connect() as conn:  # the server ends the pool's sessions
            ended = await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = :name"
                ),
                {"name": direct.APPLICATION_NAME},
            )
            assert ended.scalars().all() == [True] * pool.idle
        opened = pool.opened
        with pytest.raises(BackendUnavailable):
            async with DirectReadUnitOfWork(engine, pool) as uow:
                await uow.services.list_live(ACCOUNT, REGION, None, 5)
        assert pool.idle == 0
        # The next call opens a fresh session and is answered.
        async with DirectReadUnitOfWork(engine, pool) as uow:
            assert len(await uow.services.list_live(ACCOUNT, REGION, None, 5)) == 1
        assert pool.opened == opened + 1
    finally:
        await pool.close()


async def test_while_the_database_is_down_a_read_fails_at_once_as_unavailable() -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = DirectPool(f"postgresql://nobody@127.0.0.1:{port}/nothing?connect_timeout=5")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        async with DirectReadUnitOfWork(None, pool) as uow:  # type: ignore[arg-type]
            await uow.services.get(ACCOUNT, "0" * 32)
    assert time.monotonic() - started < 3.0
    with pytest.raises(psycopg.OperationalError):
        await pool.fetch_one(text("SELECT 1"), {})
    await pool.close()


async def test_the_read_only_unit_of_work_takes_no_lock_and_commits_nothing(
    database_url: str,
) -> None:
    pool = DirectPool(database_url)
    try:
        async with DirectReadUnitOfWork(None, pool) as uow:  # type: ignore[arg-type]
            with pytest.raises(RuntimeError, match="no locks"):
                await uow.services.get(ACCOUNT, "0" * 32, for_update=True)
            with pytest.raises(RuntimeError, match="read-only"):
                await uow.commit()
        assert pool.opened == 0
    finally:
        await pool.close()
