"""The event hub against a real Postgres: one reader of the event log fanned out to many
followers, exact from any cursor while events are being written (the last ones
included), idle followers that cost no query, and slow followers caught up from the
database instead of holding the others back. Through gRPC: the stream limits."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.adapters.postgres.event_hub import EventHub
from servicecontrol_server.adapters.postgres.listen import PgListener, engine_libpq_url
from servicecontrol_server.adapters.postgres.outbox import (
    EVENTS_CHANNEL,
    OutboxRelay,
    record_events,
)
from servicecontrol_server.domain.model import Event
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, OTHER_ACCOUNT, harness_settings, running_harness
from tests.support.waiting import wait_until

ACCOUNTS = ("111100000001", "111100000002", "111100000003")
WRITERS = 4
EVENTS_PER_WRITER = 120
CONSUMERS = 50


def arn(account: str, name: str) -> str:
    return f"arn:aws:apprunner:us-east-1:{account}:service/{name}/0"


@contextlib.asynccontextmanager
async def running_hub(engine: AsyncEngine, **kwargs: Any) -> AsyncIterator[EventHub]:
    """A hub on its own LISTEN connection, with the outbox relay running."""
    stop = asyncio.Event()
    relay = asyncio.create_task(OutboxRelay(engine).run(stop, poll_seconds=0.5))
    listener = PgListener(engine_libpq_url(engine), [EVENTS_CHANNEL])
    listener.start()
    hub = EventHub(engine, listener, poll_seconds=0.5, **kwargs)
    try:
        yield hub
    finally:
        stop.set()
        await hub.close()
        await listener.close()
        await asyncio.wait_for(relay, 15)


async def write(engine: AsyncEngine, events: list[Event]) -> None:
    async with engine.begin() as conn:
        await record_events(conn, events)


async def relayed(engine: AsyncEngine, account: str, after: int = 0) -> list[tuple[int, str]]:
    """(position, event id) of the account's relayed events after `after`, in order."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT position, event_id::text FROM outbox WHERE account_id = :a"
                " AND position > :p ORDER BY position"
            ),
            {"a": account, "p": after},
        )
        return [(int(r[0]), r[1]) for r in rows]


async def written(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = text("SELECT count(*) FROM outbox WHERE position IS NOT NULL")
        return int((await conn.execute(query)).scalar_one())


@dataclass
class Consumer:
    account: str
    cursor: int
    seen: list[tuple[int, str, str, int]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


async def consume(hub: EventHub, consumer: Consumer, gate: asyncio.Event | None = None) -> None:
    """Follows until the account's last event; with a gate, reads one event and then
    stalls until the gate opens (a consumer that falls far behind)."""
    stream = hub.follow(consumer.account, consumer.cursor)
    async with contextlib.aclosing(stream) as records:
        async for record in records:
            consumer.seen.append(
                (record.position, record.event_id, record.resource_arn, record.payload["n"])
            )
            if gate is not None and not gate.is_set():
                await gate.wait()
            if record.type == "test.last":
                consumer.done.set()
                return


async def test_fifty_consumers_joining_while_events_are_written_see_each_event_once(
    engine: AsyncEngine,
) -> None:
    rng = random.Random(15)
    async with running_hub(engine, buffer_size=16) as hub:
        # Some history before anyone connects.
        for account in ACCOUNTS:
            await write(engine, [Event(account, arn(account, "early"), "test", {"n": 0})])
        await wait_until(lambda: _written_at_least(engine, len(ACCOUNTS)), timeout=20)

        async def writer(w: int) -> None:
            for n in range(1, EVENTS_PER_WRITER + 1):
                account = ACCOUNTS[(w + n) % len(ACCOUNTS)]
                batch = [
                    Event(account, arn(account, f"w{w}"), "test", {"n": n})
                    for _ in range(rng.randint(1, 3))
                ]
                await write(engine, batch)

        writers = [asyncio.create_task(writer(w)) for w in range(WRITERS)]
        gate = asyncio.Event()
        consumers: list[Consumer] = []
        tasks: list[asyncio.Task[None]] = []
        for i in range(CONSUMERS):
            # Join while the writers write, each from a different kind of cursor: the
            # beginning, the account's head right now, or somewhere in the history.
            await wait_until(lambda i=i: _written_at_least(engine, i * 12), timeout=30)
            account = ACCOUNTS[i % len(ACCOUNTS)]
            history = await relayed(engine, account)
            cursor = [0, await hub.head(account), rng.choice(history)[0] if history else 0][i % 3]
            consumer = Consumer(account, cursor)
            consumers.append(consumer)
            # Every tenth consumer stalls after its first event until the writers are done.
            tasks.append(asyncio.create_task(consume(hub, consumer, gate if i % 10 == 0 else None)))
        await asyncio.gather(*writers)
        # A burst longer than a stream's buffer while the stalled consumers are stalled:
        # each of them overflows, however late it joined.
        for account in ACCOUNTS:
            burst = [Event(account, arn(account, "burst"), "test", {"n": n}) for n in range(1, 25)]
            await write(engine, burst)
        # The last event of each account, written after everything else.
        for account in ACCOUNTS:
            await write(engine, [Event(account, arn(account, "end"), "test.last", {"n": -1})])
        # The consumers that keep up finish while the stalled ones are still stalled.
        fast = [c for i, c in enumerate(consumers) if i % 10 != 0]
        await asyncio.wait_for(asyncio.gather(*(c.done.wait() for c in fast)), 60)
        gate.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)

        for consumer in consumers:
            expected = await relayed(engine, consumer.account, consumer.cursor)
            got = [(position, event_id) for position, event_id, _, _ in consumer.seen]
            assert got == expected, f"consumer from {consumer.cursor} on {consumer.account}"
            # Per resource, in the order written.
            by_resource: dict[str, list[int]] = {}
            for _, _, resource, n in consumer.seen:
                by_resource.setdefault(resource, []).append(n)
            for numbers in by_resource.values():
                assert numbers == sorted(numbers)
        # The stalled consumers overflowed their buffers and caught up from the database.
        assert hub.overflows >= CONSUMERS // 10
        assert hub.streams == 0


async def _written_at_least(engine: AsyncEngine, n: int) -> bool:
    return await written(engine) >= n


async def test_idle_followers_cost_no_query(engine: AsyncEngine) -> None:
    account = ACCOUNTS[0]
    async with running_hub(engine) as hub:
        seen: list[list[int]] = [[] for _ in range(200)]

        async def follow(k: int) -> None:
            async with contextlib.aclosing(hub.follow(account, await hub.head(account))) as s:
                async for record in s:
                    seen[k].append(record.position)

        tasks = [asyncio.create_task(follow(k)) for k in range(200)]
        await wait_until(lambda: hub.streams == 200, timeout=20)
        reads_before = hub.log_reads
        for n in range(10):
            await write(engine, [Event(account, arn(account, "idle"), "test", {"n": n})])
        await wait_until(lambda: all(len(s) == 10 for s in seen), timeout=20)
        # Ten events reached 200 followers through the hub's own reads alone: no follower
        # read the database, and the hub read far fewer times than followers × events.
        assert hub.catch_up_reads == 0
        assert hub.log_reads - reads_before <= 20
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert hub.streams == 0


async def test_streams_beyond_the_limits_are_resource_exhausted(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(
        database_url, s3_server, tmp_path, watch_streams_per_account=2, watch_streams_per_server=3
    )
    async with running_harness(settings, tmp_path, workers=0) as h:
        calls = [h.stub.WatchEvents(api.WatchEventsRequest(), metadata=h.meta()) for _ in range(2)]
        events = h.app.use_cases.events
        await wait_until(lambda: events.open_streams == 2, timeout=10)

        async def third(account: str = ACCOUNT) -> Any:
            call = h.stub.WatchEvents(api.WatchEventsRequest(), metadata=h.meta(account))
            async for _ in call:
                pass

        err = await expect_error(third(), grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert err.reason == "WATCH_STREAM_LIMIT_EXCEEDED"
        assert err.quota_violations == [f"account {ACCOUNT}"]
        # Another account may still open one, up to the server's limit.
        other = h.stub.WatchEvents(api.WatchEventsRequest(), metadata=h.meta(OTHER_ACCOUNT))
        await wait_until(lambda: events.open_streams == 3, timeout=10)
        err = await expect_error(third(OTHER_ACCOUNT), grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert err.reason == "WATCH_STREAM_LIMIT_EXCEEDED"
        assert err.quota_violations == ["this server"]
        # A closed stream frees its slot.
        calls[0].cancel()
        await wait_until(lambda: events.open_streams == 2, timeout=10)
        again = h.stub.WatchEvents(api.WatchEventsRequest(), metadata=h.meta())
        await wait_until(lambda: events.open_streams == 3, timeout=10)
        for call in (calls[1], other, again):
            call.cancel()
