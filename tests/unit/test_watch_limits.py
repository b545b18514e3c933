"""WatchEvents stream limits: per account and per server, refused with QuotaExceeded
before anything is read, and each slot freed when its stream closes."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from servicecontrol_server.application.events import WATCH_STREAM_LIMIT, EventQueries
from servicecontrol_server.domain.errors import QuotaExceeded
from tests.support.waiting import wait_until

from .fakes import FakeEventFeed
from .harness import ACCOUNT, OTHER_ACCOUNT, Unit


async def started(queries: EventQueries, account: str) -> asyncio.Task[None]:
    """A consumer of a stream, once the stream is admitted and waiting for events;
    cancelling the task closes the stream."""
    before = queries.open_streams

    async def consume() -> None:
        async with contextlib.aclosing(queries.watch(account, "")) as stream:
            async for _ in stream:
                pass

    task = asyncio.create_task(consume())
    await wait_until(lambda: queries.open_streams == before + 1 or task.done(), timeout=5)
    assert not task.done()
    return task


async def closed(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_streams_beyond_the_per_account_limit_are_refused() -> None:
    unit = Unit()
    feed = FakeEventFeed(unit.db)
    queries = EventQueries(feed, per_account=2, per_server=10)
    one = await started(queries, ACCOUNT)
    two = await started(queries, ACCOUNT)
    assert queries.open_streams == 2
    with pytest.raises(QuotaExceeded) as refused:
        await anext(queries.watch(ACCOUNT, ""))
    assert refused.value.reason == WATCH_STREAM_LIMIT
    assert (refused.value.limit, refused.value.usage) == (2, 2)
    assert refused.value.subject == f"account {ACCOUNT}"
    # The refused stream read nothing and holds no slot; another account is not affected.
    assert len(feed.follows) == 2 and queries.open_streams == 2
    other = await started(queries, OTHER_ACCOUNT)
    assert queries.open_streams == 3
    # Closing a stream frees its slot.
    await closed(one)
    assert queries.open_streams == 2
    again = await started(queries, ACCOUNT)
    assert queries.open_streams == 3
    for stream in (two, other, again):
        await closed(stream)
    assert queries.open_streams == 0


async def test_streams_beyond_the_per_server_limit_are_refused() -> None:
    unit = Unit()
    queries = EventQueries(FakeEventFeed(unit.db), per_account=10, per_server=2)
    streams = [await started(queries, ACCOUNT), await started(queries, OTHER_ACCOUNT)]
    with pytest.raises(QuotaExceeded) as refused:
        await anext(queries.watch("333333333333", ""))
    assert refused.value.reason == WATCH_STREAM_LIMIT
    assert refused.value.subject == "this server"
    for stream in streams:
        await closed(stream)
    last = await started(queries, "333333333333")
    assert queries.open_streams == 1
    await closed(last)


async def test_no_limit_when_zero() -> None:
    unit = Unit()
    queries = EventQueries(FakeEventFeed(unit.db))
    streams = [await started(queries, ACCOUNT) for _ in range(50)]
    assert queries.open_streams == 50
    for stream in streams:
        await closed(stream)
