"""The outbox against a real Postgres: transactional recording, positions in commit order
with no gaps for late commits, serialised relays, account-scoped reading and following,
and pruning."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import event as sa_event
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres.database import create_engine
from servicecontrol_server.adapters.postgres.listen import engine_libpq_url
from servicecontrol_server.adapters.postgres.outbox import (
    COALESCE_SECONDS,
    EVENTS_CHANNEL,
    PASS_SPACING_SECONDS,
    RELAY_LOCK_KEY,
    EventLog,
    OutboxRelay,
    pass_delay,
    record_events,
)
from servicecontrol_server.adapters.postgres.unit_of_work import PostgresUnitOfWork
from servicecontrol_server.application.ports import EventRecord
from servicecontrol_server.domain.model import Event
from tests.support.waiting import wait_until

ACCOUNT = "111122223333"
OTHER = "444455556666"


def arn(name: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:apprunner:us-east-1:{account}:service/{name}/0"


def event(resource: str, n: int, account: str = ACCOUNT, type_: str = "test") -> Event:
    return Event(
        account_id=account, resource_arn=arn(resource, account), type=type_, payload={"n": n}
    )


async def record(engine: AsyncEngine, *events: Event) -> None:
    async with engine.begin() as conn:
        await record_events(conn, events)


async def rows(engine: AsyncEngine) -> list[tuple[int, int | None]]:
    """(seq, position) of every row, by seq."""
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT seq, position FROM outbox ORDER BY seq"))
        return [(int(r[0]), r[1]) for r in result]


async def pending(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        query = text("SELECT count(*) FROM outbox WHERE position IS NULL")
        return int((await conn.execute(query)).scalar_one())


def assert_positions_follow_seq(table: list[tuple[int, int | None]]) -> None:
    positions = [position for _, position in table]
    assert None not in positions
    assert positions == sorted(positions)  # type: ignore[type-var]
    assert len(set(positions)) == len(positions)


async def test_events_of_a_rolled_back_transaction_never_appear(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.begin()
        await record_events(conn, [event("a", 1), event("a", 2)])
        await conn.rollback()
    relay = OutboxRelay(engine)
    assert await relay.relay_once() == 0
    assert await rows(engine) == []
    assert await EventLog(engine).read(ACCOUNT, 0, 100) == []


async def test_relay_assigns_positions_in_seq_order(engine: AsyncEngine) -> None:
    for n in range(6):
        await record(engine, event("a", n))
    await record(engine, event("b", 0), event("b", 1), event("a", 6))
    relay = OutboxRelay(engine)
    # The batch bound takes the oldest rows first.
    assert await relay.relay_once(batch=4) == 4
    table = await rows(engine)
    assert [p is not None for _, p in table] == [True] * 4 + [False] * 5
    assert await relay.relay_once(batch=100) == 5
    assert await relay.relay_once() == 0
    table = await rows(engine)
    assert_positions_follow_seq(table)
    async with engine.connect() as conn:
        undelivered = (
            await conn.execute(text("SELECT count(*) FROM outbox WHERE delivered_at IS NULL"))
        ).scalar_one()
    assert undelivered == 0
    records = await EventLog(engine).read(ACCOUNT, 0, 100)
    assert [(r.resource_arn, r.payload["n"]) for r in records] == [
        (arn("a"), n) for n in range(6)
    ] + [(arn("b"), 0), (arn("b"), 1), (arn("a"), 6)]


async def test_each_resource_keeps_its_order_across_interleaved_transactions(
    engine: AsyncEngine,
) -> None:
    resources = [f"r{i}" for i in range(5)]
    per_resource = 20
    rng = random.Random(7)
    plan = [r for r in resources for _ in range(per_resource // 2)]
    rng.shuffle(plan)
    queue: asyncio.Queue[str] = asyncio.Queue()
    for resource in plan:
        queue.put_nowait(resource)
    writing = True

    async def writer() -> None:
        while not queue.empty():
            resource = queue.get_nowait()
            async with engine.begin() as conn:
                # As the application locks the service row before writing its events.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(hashtext(:arn))"), {"arn": arn(resource)}
                )
                done = (
                    await conn.execute(
                        text("SELECT count(*) FROM outbox WHERE resource_arn = :arn"),
                        {"arn": arn(resource)},
                    )
                ).scalar_one()
                await asyncio.sleep(0)
                await record_events(conn, [event(resource, done), event(resource, done + 1)])

    async def relayer() -> None:
        relay = OutboxRelay(engine)
        while writing:
            await relay.relay_once(batch=7)
            await asyncio.sleep(0)

    relaying = asyncio.create_task(relayer())
    await asyncio.gather(*(writer() for _ in range(8)))
    writing = False
    await relaying
    await OutboxRelay(engine).relay_all()

    records = await EventLog(engine).read(ACCOUNT, 0, 1000)
    assert len(records) == len(resources) * per_resource
    for resource in resources:
        mine = [r.payload["n"] for r in records if r.resource_arn == arn(resource)]
        assert mine == list(range(per_resource))
    assert len({r.position for r in records}) == len(records)


async def test_a_late_commit_is_not_skipped_by_a_reader(engine: AsyncEngine) -> None:
    relay = OutboxRelay(engine)
    log = EventLog(engine)
    async with engine.connect() as early:
        await early.begin()
        # Takes the lower seq, but commits last.
        await record_events(early, [event("a", 1)])
        await record(engine, event("b", 1))
        assert await relay.relay_once() == 1
        [first] = await log.read(ACCOUNT, 0, 100)
        assert first.resource_arn == arn("b")
        cursor = first.position
        await early.commit()
    assert await relay.relay_once() == 1
    [late] = await log.read(ACCOUNT, cursor, 100)
    assert late.resource_arn == arn("a")
    assert late.position > cursor
    table = await rows(engine)
    # seq order and position order differ: positions follow commit order.
    assert table[0][1] is not None and table[1][1] is not None
    assert table[0][1] > table[1][1]


@contextlib.asynccontextmanager
async def on_connection(relay: OutboxRelay, own: bool) -> AsyncIterator[OutboxRelay]:
    """`relay` with its passes on its own connection (as inside run()), or on the pool."""
    if not own:
        yield relay
        return
    async with relay.connected():
        yield relay


@pytest.mark.parametrize("own", [True, False], ids=["own-connection", "pool"])
async def test_a_relay_yields_to_one_already_running(engine: AsyncEngine, own: bool) -> None:
    await record(engine, event("a", 1), event("a", 2))
    async with on_connection(OutboxRelay(engine), own) as relay:
        async with engine.connect() as other:
            await other.begin()
            await other.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RELAY_LOCK_KEY})
            assert await relay.relay_once() == 0
            assert await pending(engine) == 2
            await other.rollback()
        assert await relay.relay_once() == 2


async def test_inside_run_a_pass_goes_over_the_relay_s_own_connection(
    engine: AsyncEngine,
) -> None:
    through_pool: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "pg_try_advisory_xact_lock" in statement:
            through_pool.append(statement)

    sa_event.listen(engine.sync_engine, "before_cursor_execute", seen)
    try:
        relay = OutboxRelay(engine)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop, poll_seconds=30))
        try:
            await wait_until(lambda: relay.listening, timeout=10)
            for n in range(3):
                await record(engine, event("own", n))
                await wait_until(lambda: _no_pending(engine), timeout=5)
        finally:
            stop.set()
            await asyncio.wait_for(task, 5)
        assert through_pool == []  # every pass of run() went over its own connection
        assert relay._own is None  # closed when run() ended
        # Outside run(), a pass is the pool's, which the listener does see.
        await record(engine, event("own", 3))
        assert await relay.relay_once() == 1
        assert len(through_pool) == 1
    finally:
        sa_event.remove(engine.sync_engine, "before_cursor_execute", seen)
    assert_positions_follow_seq(await rows(engine))


async def test_a_broken_own_connection_fails_one_pass_and_the_next_reconnects(
    engine: AsyncEngine,
) -> None:
    relay = OutboxRelay(engine)
    async with relay.connected():
        await record(engine, event("a", 1))
        assert await relay.relay_once() == 1
        assert relay._own is not None
        pid = relay._own.backend_pid
        assert pid is not None
        async with engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await admin.commit()
        await record(engine, event("a", 2))
        with pytest.raises(psycopg.OperationalError):
            await relay.relay_once()
        assert await relay.relay_once() == 1
        assert relay._own.backend_pid not in (None, pid)
    assert relay._own is None  # closed on leaving
    assert_positions_follow_seq(await rows(engine))


@pytest.mark.parametrize("own", [True, False], ids=["own-connection", "pool"])
async def test_followers_are_notified_by_a_pass_that_relays_and_only_by_one(
    engine: AsyncEngine, database_url: str, own: bool
) -> None:
    listener = await psycopg.AsyncConnection.connect(engine_libpq_url(engine), autocommit=True)
    try:
        await listener.execute(f"LISTEN {EVENTS_CHANNEL}")
        async with on_connection(OutboxRelay(engine), own) as relay:
            assert await relay.relay_once() == 0  # nothing pending: no notification
            await record(engine, event("a", 1))
            assert await relay.relay_once() == 1  # one notification
            assert await relay.relay_once() == 0  # none
        # A marker of our own, committed last, arrives last: what came before it is all
        # the relay sent.
        async with engine.connect() as conn:
            await conn.execute(text(f"SELECT pg_notify('{EVENTS_CHANNEL}', 'marker')"))
            await conn.commit()
        received = [n.payload async for n in listener.notifies(timeout=10, stop_after=2)]
        assert received == ["", "marker"]
    finally:
        await listener.close()


async def test_concurrent_relays_never_assign_a_position_twice(
    engine: AsyncEngine, database_url: str
) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO outbox (event_id, account_id, resource_arn, type, payload) "
                "SELECT gen_random_uuid(), :a, 'arn:x/' || (i % 10), 'bulk', "
                "jsonb_build_object('n', i) FROM generate_series(1, 600) AS i"
            ),
            {"a": ACCOUNT},
        )
    engines = [create_engine(database_url, pool_size=2) for _ in range(3)]
    try:
        relays = [OutboxRelay(e) for e in [engine, *engines]]

        async def drain(relay: OutboxRelay, own: bool) -> int:
            total = 0
            async with on_connection(relay, own):
                while await pending(engine):
                    total += await relay.relay_once(batch=25)
            return total

        # Two on their own connections (as in run()), two on their engines' pools.
        totals = await asyncio.gather(*(drain(r, i % 2 == 0) for i, r in enumerate(relays)))
    finally:
        for e in engines:
            await e.dispose()
    assert sum(totals) == 600
    table = await rows(engine)
    assert len(table) == 600
    assert_positions_follow_seq(table)


async def test_read_is_scoped_to_one_account_and_optionally_one_resource(
    engine: AsyncEngine,
) -> None:
    await record(engine, event("a", 1), event("b", 1), event("a", 1, account=OTHER))
    await record(engine, event("a", 2))
    await OutboxRelay(engine).relay_all()
    log = EventLog(engine)

    mine = await log.read(ACCOUNT, 0, 100)
    assert [(r.resource_arn, r.payload["n"]) for r in mine] == [
        (arn("a"), 1),
        (arn("b"), 1),
        (arn("a"), 2),
    ]
    assert all(r.account_id == ACCOUNT for r in mine)
    theirs = await log.read(OTHER, 0, 100)
    assert [(r.account_id, r.resource_arn) for r in theirs] == [(OTHER, arn("a", OTHER))]
    only_a = await log.read(ACCOUNT, 0, 100, resource_arn=arn("a"))
    assert [r.payload["n"] for r in only_a] == [1, 2]
    # Another account's resource name gives nothing, even with the right ARN.
    assert await log.read(ACCOUNT, 0, 100, resource_arn=arn("a", OTHER)) == []
    assert await log.read(ACCOUNT, mine[0].position, 1) == [mine[1]]
    assert await log.head(ACCOUNT) == mine[-1].position
    assert await log.head("000000000000") == 0
    assert mine[0].type == "test"
    assert mine[0].occurred_at.tzinfo is not None


@contextlib.asynccontextmanager
async def following(
    log: EventLog, account: str, after: int = 0, resource: str | None = None
) -> AsyncIterator[list[EventRecord]]:
    seen: list[EventRecord] = []
    stop = asyncio.Event()

    async def consume() -> None:
        async with contextlib.aclosing(log.follow(account, after, resource, stop)) as stream:
            async for record_ in stream:
                seen.append(record_)

    task = asyncio.create_task(consume())
    try:
        yield seen
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_follow_yields_new_events_on_notification(engine: AsyncEngine) -> None:
    relay = OutboxRelay(engine)
    await record(engine, event("a", 1))
    await relay.relay_all()
    # A 30 s poll: only the relay's NOTIFY can deliver new events within the deadline.
    log = EventLog(engine, poll_seconds=30)
    async with following(log, ACCOUNT) as seen:
        await wait_until(lambda: len(seen) == 1, timeout=35)
        await record(engine, event("a", 2, account=OTHER))
        await record(engine, event("b", 1))
        await relay.relay_all()
        await wait_until(lambda: len(seen) == 2, timeout=5)
    assert [(r.resource_arn, r.payload["n"]) for r in seen] == [(arn("a"), 1), (arn("b"), 1)]

    async with following(log, ACCOUNT, seen[0].position, arn("a")) as only_a:
        await record(engine, event("b", 2), event("a", 3))
        await relay.relay_all()
        await wait_until(lambda: len(only_a) == 1, timeout=5)
    assert [(r.resource_arn, r.payload["n"]) for r in only_a] == [(arn("a"), 3)]


async def test_relay_run_relays_on_notification_and_stops(engine: AsyncEngine) -> None:
    relay = OutboxRelay(engine)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop, poll_seconds=30))
    await wait_until(lambda: relay.listening, timeout=10)
    for n in range(3):
        await record(engine, event("a", n))
        await wait_until(lambda: _no_pending(engine), timeout=5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert_positions_follow_seq(await rows(engine))


async def _no_pending(engine: AsyncEngine) -> bool:
    return await pending(engine) == 0


def test_a_woken_relay_waits_for_the_pass_spacing_and_never_longer() -> None:
    spacing = PASS_SPACING_SECONDS
    # A lone event, long after the last pass: only the brief step aside.
    assert pass_delay(100.0, 10.0) == COALESCE_SECONDS
    assert pass_delay(100.0, 100.0 - spacing) == COALESCE_SECONDS
    # During a burst: until the spacing after the last pass's start.
    assert pass_delay(100.0, 100.0 - spacing / 5) == pytest.approx(spacing * 4 / 5)
    assert pass_delay(100.0, 100.0 - COALESCE_SECONDS / 2) <= spacing
    # Never longer than the spacing (a clock that went back), never shorter than the step.
    assert pass_delay(100.0, 200.0) == spacing
    for started in (99.9, 99.96, 99.99, 100.0):
        assert COALESCE_SECONDS <= pass_delay(100.0, started) <= spacing


async def test_a_burst_of_commits_is_relayed_in_passes_spaced_apart(engine: AsyncEngine) -> None:
    relay = OutboxRelay(engine)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop, poll_seconds=30))
    loop = asyncio.get_running_loop()
    try:
        await wait_until(lambda: relay.listening, timeout=10)
        await wait_until(lambda: _no_pending(engine), timeout=5)
        first = len(relay.passes)
        # Commits one after another (each notifies) for ten spacings.
        commits, until = 0, loop.time() + 10 * PASS_SPACING_SECONDS
        while loop.time() < until:
            await record(engine, event("burst", commits))
            commits += 1
        await wait_until(lambda: _no_pending(engine), timeout=10)
        burst = list(relay.passes)[first:]
        gaps = [b - a for a, b in zip(burst, burst[1:], strict=False)]
        assert all(gap >= PASS_SPACING_SECONDS - 0.001 for gap in gaps), gaps
        # Fewer passes than commits: at most one per spacing, and the last one's.
        assert len(burst) < commits
        # A lone event, once the relay is idle, is relayed by the next pass, which starts
        # no later than the spacing after its commit (plus what a loaded machine adds).
        await wait_until(lambda: loop.time() - relay.passes[-1] > PASS_SPACING_SECONDS)
        before = len(relay.passes)
        committed = loop.time()
        await record(engine, event("lone", 0))
        await wait_until(lambda: _no_pending(engine), timeout=5)
        assert len(relay.passes) == before + 1
        assert relay.passes[-1] - committed <= PASS_SPACING_SECONDS + 0.5
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
    assert_positions_follow_seq(await rows(engine))


async def test_a_resumed_follower_sees_every_event_exactly_once(engine: AsyncEngine) -> None:
    relay = OutboxRelay(engine)
    stop_relay = asyncio.Event()
    relaying = asyncio.create_task(relay.run(stop_relay, poll_seconds=0.2))
    total = 60

    async def produce() -> None:
        for n in range(total):
            await record(engine, event(f"r{n % 3}", n))

    producing = asyncio.create_task(produce())
    log = EventLog(engine, poll_seconds=0.2, page_size=7)
    collected: list[EventRecord] = []
    try:
        async with contextlib.aclosing(log.follow(ACCOUNT, 0)) as stream:
            async for record_ in stream:
                collected.append(record_)
                if len(collected) == 20:
                    break
        cursor = collected[-1].position
        async with following(log, ACCOUNT, cursor) as resumed:
            await wait_until(lambda: len(collected) + len(resumed) >= total, timeout=20)
            await producing
        collected += resumed
    finally:
        stop_relay.set()
        await asyncio.wait_for(relaying, 5)
    ids = [r.event_id for r in collected]
    assert len(ids) == len(set(ids)) == total
    assert sorted(r.payload["n"] for r in collected) == list(range(total))
    positions = [r.position for r in collected]
    assert positions == sorted(positions)


async def test_prune_deletes_only_old_delivered_rows(engine: AsyncEngine) -> None:
    for n in range(5):
        await record(engine, event("old", n))
    await record(engine, event("recent", 1))
    relay = OutboxRelay(engine)
    await relay.relay_all()
    await record(engine, event("undelivered", 1))
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE outbox SET delivered_at = now() - interval '2 hours' "
                "WHERE resource_arn = :old"
            ),
            {"old": arn("old")},
        )
        await conn.execute(
            text("UPDATE outbox SET occurred_at = now() - interval '2 hours'"),
        )
    assert await prune_delivered(engine, older_than_seconds=3600, batch=2) == 5
    assert await prune_delivered(engine, older_than_seconds=3600, batch=2) == 0
    async with engine.connect() as conn:
        left = (
            (await conn.execute(text("SELECT resource_arn FROM outbox ORDER BY seq")))
            .scalars()
            .all()
        )
    assert left == [arn("recent"), arn("undelivered")]


async def prune_delivered(engine: AsyncEngine, *, older_than_seconds: float, batch: int) -> int:
    """Prunes in batches, as the reaper does, until a batch comes back short."""
    total = 0
    while True:
        async with PostgresUnitOfWork(engine) as uow:
            pruned = await uow.retention.prune_delivered_events(older_than_seconds, batch)
            await uow.commit()
        total += pruned
        if pruned < batch:
            return total
