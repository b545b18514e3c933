"""One reader of the relayed event log per process, fanned out to every WatchEvents
stream of that process.

Without it each stream re-reads the outbox on every notification and on every poll tick,
so N idle streams cost N queries a second and every event costs N queries. Here one task
follows the whole log (`position > tail`, every account, in pages) and pushes each event
into the bounded buffer of every stream of its account; an idle stream costs nothing.

Exactness. Positions become visible in increasing order (see outbox.py), and the hub's
`tail` is the highest position it has read and dispatched. A stream arms itself by taking
`floor = tail` and emptying its buffer in one step, with no await in between: every
event above `floor` will reach its buffer, every event at or below it is in the database.
So it reads (cursor, floor] from the database by cursor, then serves its buffer, skipping
what is at or below its cursor. Nothing is lost and nothing is served twice.

Slow consumers. A buffer that fills is marked overflowed and emptied; the hub never waits
for a stream. The stream notices, re-arms, and catches up from the database by its
cursor, so a consumer that fell behind loses nothing and holds back no one else."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import deque
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncEngine

from ...application.ports import EventRecord
from ...latches import wait_any
from .database import outage_as_unavailable
from .listen import PgListener
from .outbox import HEAD_POSITION

log = logging.getLogger(__name__)

# Every account's events after the hub's tail, served by the unique index on position.
READ_LOG = text(
    """
    SELECT event_id::text AS event_id, position, account_id, resource_arn, type, payload,
           occurred_at
    FROM outbox
    WHERE position IS NOT NULL AND position > :after_position
    ORDER BY position
    LIMIT :limit
    """
)

# Where the hub starts: the highest relayed position (a backward scan of that index).
LOG_HEAD = text("SELECT coalesce(max(position), 0) FROM outbox WHERE position IS NOT NULL")

# One account's events in (after, until], for a stream catching up to the hub's tail;
# served by ix_outbox_stream (account_id, position).
READ_ACCOUNT_RANGE = text(
    """
    SELECT event_id::text AS event_id, position, account_id, resource_arn, type, payload,
           occurred_at
    FROM outbox
    WHERE account_id = :account_id
      AND position IS NOT NULL
      AND position > :after_position
      AND position <= :until_position
      AND (CAST(:resource_arn AS text) IS NULL OR resource_arn = :resource_arn)
    ORDER BY position
    LIMIT :limit
    """
)


def _record(row: RowMapping) -> EventRecord:
    return EventRecord(
        event_id=row["event_id"],
        position=int(row["position"]),
        account_id=row["account_id"],
        resource_arn=row["resource_arn"],
        type=row["type"],
        payload=dict(row["payload"]),
        occurred_at=row["occurred_at"],
    )


@dataclass(eq=False)
class _Stream:
    """One follower's share of the fan-out: a bounded buffer the hub fills."""

    account_id: str
    resource_arn: str | None
    capacity: int
    buffer: deque[EventRecord] = field(default_factory=deque)
    overflowed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def push(self, record: EventRecord) -> None:
        if self.overflowed:
            return
        if self.resource_arn is not None and record.resource_arn != self.resource_arn:
            return
        if len(self.buffer) >= self.capacity:
            # Never wait for a slow consumer: it catches up from the database instead.
            self.overflowed = True
            self.buffer.clear()
        else:
            self.buffer.append(record)
        self.wake.set()


class EventHub:
    """An EventFeed whose followers share one reader of the event log."""

    def __init__(
        self,
        engine: AsyncEngine,
        listener: PgListener,
        *,
        poll_seconds: float = 1.0,
        page_size: int = 500,
        buffer_size: int = 1000,
    ) -> None:
        self.engine = engine
        self.listener = listener
        self.poll_seconds = poll_seconds
        self.page_size = page_size
        self.buffer_size = buffer_size
        self._streams: dict[str, set[_Stream]] = {}
        # The highest position read and dispatched; None until the first read of the head.
        self._tail: int | None = None
        self._ready = asyncio.Event()
        self._init_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # Counters for tests and benchmarks: log reads by the hub, catch-up reads by
        # streams, and overflows of slow streams' buffers.
        self.log_reads = 0
        self.catch_up_reads = 0
        self.overflows = 0

    @property
    def streams(self) -> int:
        return sum(len(s) for s in self._streams.values())

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="event-hub")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def head(self, account_id: str) -> int:
        async with outage_as_unavailable(), self.engine.connect() as conn:
            value = (await conn.execute(HEAD_POSITION, {"account_id": account_id})).scalar_one()
        return int(value)

    async def _initialize(self) -> None:
        async with self._init_lock:
            if self._tail is not None:
                return
            async with outage_as_unavailable(), self.engine.connect() as conn:
                head = int((await conn.execute(LOG_HEAD)).scalar_one())
            if self._tail is None:
                self._tail = head
                self._ready.set()

    async def read_new(self) -> int:
        """Reads the log after the tail and dispatches it; returns how many events."""
        await self._initialize()
        total = 0
        while True:
            assert self._tail is not None
            async with outage_as_unavailable(), self.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        READ_LOG, {"after_position": self._tail, "limit": self.page_size}
                    )
                ).mappings()
                records = [_record(row) for row in rows]
            self.log_reads += 1
            # Dispatch and advance the tail in one step (no await): a stream arming itself
            # sees either all of this page in its floor or all of it in its buffer.
            for record in records:
                for stream in self._streams.get(record.account_id, ()):
                    was = stream.overflowed
                    stream.push(record)
                    if stream.overflowed and not was:
                        self.overflows += 1
            if records:
                self._tail = records[-1].position
            total += len(records)
            if len(records) < self.page_size:
                return total

    async def _run(self) -> None:
        wake = self.listener.subscribe()
        failures = 0
        try:
            while True:
                wake.clear()
                timeout = self.poll_seconds
                try:
                    await self.read_new()
                    if failures:
                        log.info("event log readable again; streams resume")
                    failures = 0
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - retried; one line per outage
                    if failures == 0:
                        log.warning("event log unreadable; retrying: %s", exc)
                    failures += 1
                    timeout = min(self.poll_seconds, 0.05 * 2**failures) * (
                        0.5 + random.random() / 2
                    )
                await wait_any(wake, timeout=timeout)
        finally:
            self.listener.unsubscribe(wake)

    async def _read_range(self, stream: _Stream, after: int, until: int) -> list[EventRecord]:
        self.catch_up_reads += 1
        async with outage_as_unavailable(), self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    READ_ACCOUNT_RANGE,
                    {
                        "account_id": stream.account_id,
                        "after_position": after,
                        "until_position": until,
                        "resource_arn": stream.resource_arn,
                        "limit": self.page_size,
                    },
                )
            ).mappings()
            return [_record(row) for row in rows]

    async def _catch_up(
        self, stream: _Stream, cursor: int, floor: int
    ) -> AsyncGenerator[EventRecord, None]:
        """The stream's events in (cursor, floor], from the database, in pages."""
        while cursor < floor:
            records = await self._read_range(stream, cursor, floor)
            for record in records:
                cursor = record.position
                yield record
            if len(records) < self.page_size:
                return

    async def follow(
        self,
        account_id: str,
        after_position: int,
        resource_arn: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> AsyncGenerator[EventRecord, None]:
        """The account's events after `after_position`, then live ones from the hub."""
        self.start()  # the first stream starts the reader: processes without streams need none
        stream = _Stream(account_id, resource_arn, self.buffer_size)
        self._streams.setdefault(account_id, set()).add(stream)

        def stopped() -> bool:
            return stop is not None and stop.is_set()

        try:
            if self._tail is None:
                await self._initialize()
            cursor = after_position
            while not stopped():
                # Arm: from here on the hub pushes every event above `floor`.
                assert self._tail is not None
                floor = self._tail
                stream.buffer.clear()
                stream.overflowed = False
                async with contextlib.aclosing(self._catch_up(stream, cursor, floor)) as backlog:
                    async for record in backlog:
                        cursor = record.position
                        yield record
                cursor = max(cursor, floor)
                # Live: serve the buffer until it overflows (then re-arm and catch up).
                while not stream.overflowed and not stopped():
                    if not stream.buffer:
                        stream.wake.clear()
                        await wait_any(stream.wake, stop, timeout=None)
                        continue
                    record = stream.buffer.popleft()
                    if record.position > cursor:
                        cursor = record.position
                        yield record
        finally:
            streams = self._streams.get(account_id)
            if streams is not None:
                streams.discard(stream)
                if not streams:
                    del self._streams[account_id]
