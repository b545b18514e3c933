"""Every kind of session of ours opens with database.SESSION_OPTIONS: times in UTC, even
on a database whose own default time zone is another (the engine's sessions, the direct
pool's, and the loops' own connections)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy import text

from servicecontrol_server.adapters.postgres.database import create_engine, libpq_url
from servicecontrol_server.adapters.postgres.direct import DirectPool, OwnConnection

ELSEWHERE = "Pacific/Chatham"  # +12:45 / +13:45: no accident makes it look like UTC


@pytest.fixture
async def elsewhere(database_url: str) -> AsyncIterator[str]:
    """The test database with another default time zone, for the sessions opened now."""
    async with await psycopg.AsyncConnection.connect(
        libpq_url(database_url), autocommit=True
    ) as conn:
        name = (await (await conn.execute("SELECT current_database()")).fetchone() or [""])[0]
        await conn.execute(
            sql.SQL("ALTER DATABASE {} SET timezone = {}").format(
                sql.Identifier(name), sql.Literal(ELSEWHERE)
            )
        )
    async with await psycopg.AsyncConnection.connect(libpq_url(database_url)) as plain:
        # The premise: a session opened without our options is elsewhere.
        shown = await (await plain.execute("SHOW timezone")).fetchone()
        assert shown == (ELSEWHERE,)
    yield database_url


async def test_the_engine_s_sessions(elsewhere: str) -> None:
    engine = create_engine(elsewhere)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SHOW timezone"))).scalar_one() == "UTC"
    finally:
        await engine.dispose()


async def test_the_direct_pool_s_sessions(elsewhere: str) -> None:
    pool = DirectPool(elsewhere)
    try:
        assert await pool.fetch_one(text("SHOW timezone"), {}) == {"TimeZone": "UTC"}
    finally:
        await pool.close()


async def test_a_loop_s_own_connection(elsewhere: str) -> None:
    own = OwnConnection(libpq_url(elsewhere))
    try:
        assert await own.rows("SELECT current_setting('timezone')", {}) == [("UTC",)]
    finally:
        await own.close()
