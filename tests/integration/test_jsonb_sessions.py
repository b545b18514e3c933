"""Every kind of session of ours decodes jsonb with adapters/postgres/jsonb.py: the
engine's (SQLAlchemy), the direct pool's and the job queue's own connections."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres import jsonb
from servicecontrol_server.adapters.postgres.direct import DirectPool
from servicecontrol_server.adapters.postgres.jobqueue import JobQueue

STATEMENT = """SELECT '{"b": [1, 2], "a": 123456789012345678901234567890}'::jsonb AS doc"""
EXPECTED = {"a": 123456789012345678901234567890, "b": [1, 2]}


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What our decoder decoded, in order."""
    seen: list[Any] = []
    real = jsonb._DECODE

    def counting(data: Any) -> Any:
        value = real(data)
        seen.append(value)
        return value

    monkeypatch.setattr(jsonb, "_DECODE", counting)
    return seen


async def test_the_engine_s_sessions(engine: AsyncEngine, decoded: list[Any]) -> None:
    async with engine.connect() as conn:
        assert (await conn.execute(text(STATEMENT))).scalar_one() == EXPECTED
    assert decoded == [EXPECTED]


async def test_the_direct_pool_s_sessions(database_url: str, decoded: list[Any]) -> None:
    pool = DirectPool(database_url)
    try:
        row = await pool.fetch_one(text(STATEMENT), {})
    finally:
        await pool.close()
    assert row == {"doc": EXPECTED}
    assert decoded == [EXPECTED]


async def test_the_job_queue_s_own_sessions(engine: AsyncEngine, decoded: list[Any]) -> None:
    queue = JobQueue(engine)
    async with queue.connected():
        rows = await queue._rows(STATEMENT, {})
    assert [row[0] for row in rows] == [EXPECTED]
    assert decoded == [EXPECTED]
