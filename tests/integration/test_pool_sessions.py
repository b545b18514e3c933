"""The engine's pool keeps the sessions it opened: a steady load of concurrent
transactions opens its sessions once, not one per call above a base size."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, text

from servicecontrol_server.adapters.postgres.database import create_engine


async def test_a_second_burst_of_concurrent_transactions_opens_no_session(
    database_url: str,
) -> None:
    engine = create_engine(database_url)
    opened: list[Any] = []
    event.listen(engine.sync_engine, "connect", lambda conn, record: opened.append(conn))
    started = asyncio.Event()
    inside = 0

    async def transaction(callers: int) -> None:
        nonlocal inside
        async with engine.begin() as conn:
            inside += 1
            if inside == callers:
                started.set()
            await started.wait()  # all callers hold a session at once
            await conn.execute(text("SELECT 1"))

    try:
        for burst in range(2):
            started.clear()
            inside = 0
            await asyncio.wait_for(asyncio.gather(*(transaction(16) for _ in range(16))), 30)
            if burst == 0:
                assert len(opened) == 16
        assert len(opened) == 16  # the second burst reused every session
    finally:
        await engine.dispose()
