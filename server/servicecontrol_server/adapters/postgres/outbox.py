"""The transactional outbox: events are written in the transaction that makes the change
they describe, and a relay later gives each a `position` that readers stream from.

Why positions rather than `seq`: `seq` is allocated when a row is inserted but becomes
visible when its transaction commits, so a reader that remembers the highest `seq` it saw
can skip forever a row whose transaction started earlier and committed later. Positions
are assigned by one relay at a time (a transaction-scoped advisory lock), only to rows
that are already committed, from a sequence, in `seq` order, in a transaction that commits
before the next relay can start. So positions become visible in increasing order and a
reader asking for `position > cursor` never misses a row.

Per-resource order: the transactions that write one resource's events lock that resource
(its row), so they commit in `seq` order and the relay sees them in that order; position
order therefore preserves each resource's order. Global order across resources is commit
order, which is all a reader can rely on.

Delivery to readers is at-least-once only in the sense that a reader resuming from an
older cursor sees events again; each event has exactly one position."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...application.ports import EventRecord
from ...domain.model import Event
from ...latches import wait_any
from .database import outage_as_unavailable
from .direct import OwnConnection
from .listen import PgListener, engine_libpq_url

log = logging.getLogger(__name__)

OUTBOX_CHANNEL = "servicecontrol_outbox"
# How long a woken relay waits before relaying, at least; see OutboxRelay.run.
COALESCE_SECONDS = 0.005
# The least time between the starts of two relay passes that notifications trigger: a
# burst of commits (every mutation notifies) gets a pass per PASS_SPACING_SECONDS instead
# of one per commit, and no event waits longer than that for its pass (plus a pass).
PASS_SPACING_SECONDS = 0.05


def pass_delay(now: float, last_pass_started: float) -> float:
    """How long a relay woken at `now` waits before its next pass: COALESCE_SECONDS, or
    until PASS_SPACING_SECONDS after the previous pass started if that is later (never
    more than PASS_SPACING_SECONDS)."""
    return max(
        COALESCE_SECONDS, min(PASS_SPACING_SECONDS, last_pass_started + PASS_SPACING_SECONDS - now)
    )


EVENTS_CHANNEL = "servicecontrol_events"
POSITION_SEQUENCE = "outbox_position_seq"
# Serialises relays across every replica on one database (advisory locks are scoped to a
# database). The value is arbitrary but fixed: b"scoutbx" read as a big-endian integer.
RELAY_LOCK_KEY = int.from_bytes(b"scoutbx", "big")

# One multi-row INSERT per batch of events (executemany), then one notification for the
# whole transaction: pg_notify is delivered at commit and dropped on rollback, so the relay
# is never woken for events that do not exist.
INSERT_EVENT = text(
    """
    INSERT INTO outbox (event_id, account_id, resource_arn, type, payload)
    VALUES (CAST(:event_id AS uuid), :account_id, :resource_arn, :type, :payload)
    """
).bindparams(bindparam("payload", type_=JSONB))

# The common case, one event per transaction, inserts and notifies in one round trip.
INSERT_ONE_EVENT = text(
    """
    WITH event AS (
        INSERT INTO outbox (event_id, account_id, resource_arn, type, payload)
        VALUES (CAST(:event_id AS uuid), :account_id, :resource_arn, :type, :payload)
        RETURNING seq
    )
    SELECT event.seq FROM event CROSS JOIN LATERAL (
        SELECT pg_notify('servicecontrol_outbox', '')
    ) AS notified
    """
).bindparams(bindparam("payload", type_=JSONB))

NOTIFY_OUTBOX = text("SELECT pg_notify('servicecontrol_outbox', '')")
# A relay pass is one statement, its own transaction (autocommit), on the relay's own
# connection while it runs (prepared once), where it was a transaction of three
# statements through the engine (the lock, the numbering, the notification).
#
# The lock: try, never wait. If another replica holds it, it is relaying right now and
# will pick up whatever this one would have; `pending` then reads nothing (its filter is
# the lock's answer, evaluated once before any row is read or locked). It is released at
# commit, after the pass's positions are visible.
#
# Pending rows are claimed by state (position IS NULL, served by ix_outbox_pending) in
# seq order, never by a "seq > last seen" cursor. Plain FOR UPDATE, not SKIP LOCKED:
# skipping a locked pending row would let a later row of the same resource overtake it.
#
# The numbering does not trust the evaluation order of nextval(): SQL does not promise
# that nextval() in a select list runs in ORDER BY order. Instead it draws as many values
# as there are rows, then pairs the k-th smallest value with the k-th row by seq. Both
# CTEs read the same materialized `pending`, so the counts match.
#
# Followers are notified in the same transaction (delivered at its commit), and only if
# the pass relayed something. Answers whether the lock was taken and how many rows got a
# position.
RELAY = """
    WITH locked AS MATERIALIZED (
        SELECT pg_try_advisory_xact_lock(%(key)s) AS got
    ),
    pending AS MATERIALIZED (
        SELECT event_id, seq
        FROM outbox
        WHERE position IS NULL AND (SELECT got FROM locked)
        ORDER BY seq
        LIMIT %(batch)s
        FOR UPDATE
    ),
    ranked AS (
        SELECT event_id, row_number() OVER (ORDER BY seq) AS rn FROM pending
    ),
    drawn AS MATERIALIZED (
        SELECT nextval('outbox_position_seq') AS position FROM pending
    ),
    numbered AS (
        SELECT position, row_number() OVER (ORDER BY position) AS rn FROM drawn
    ),
    relayed AS (
        UPDATE outbox AS o
        SET position = numbered.position, delivered_at = now()
        FROM ranked JOIN numbered USING (rn)
        WHERE o.event_id = ranked.event_id
        RETURNING o.position
    ),
    counted AS MATERIALIZED (
        SELECT count(*) AS n FROM relayed
    )
    SELECT locked.got, counted.n,
           (SELECT pg_notify('servicecontrol_events', '') WHERE counted.n > 0) AS notified
    FROM locked CROSS JOIN counted
"""

# Bounded batches through a materialized CTE keep each delete short so vacuum keeps up;
# ix_outbox_delivered finds the rows delivered longest ago first (and, when none is old
# enough, answers at once instead of reading the table), and rows without a position
# (not yet relayed) are never candidates.
PRUNE_DELIVERED = text(
    """
    WITH doomed AS MATERIALIZED (
        SELECT event_id
        FROM outbox
        WHERE position IS NOT NULL
          AND delivered_at < now() - make_interval(secs => :older_than_seconds)
        ORDER BY delivered_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM outbox AS o
    USING doomed
    WHERE o.event_id = doomed.event_id
    RETURNING o.event_id
    """
)

# Served by ix_outbox_stream (account_id, position) WHERE position IS NOT NULL; the
# account filter is unconditional so no caller can read another account's events.
READ_EVENTS = text(
    """
    SELECT event_id::text AS event_id, position, account_id, resource_arn, type, payload,
           occurred_at
    FROM outbox
    WHERE account_id = :account_id
      AND position IS NOT NULL
      AND position > :after_position
      AND (CAST(:resource_arn AS text) IS NULL OR resource_arn = :resource_arn)
    ORDER BY position
    LIMIT :limit
    """
)


HEAD_POSITION = text(
    """
    SELECT coalesce(max(position), 0)
    FROM outbox
    WHERE account_id = :account_id AND position IS NOT NULL
    """
)


async def record_events(conn: AsyncConnection, events: Iterable[Event]) -> None:
    """Writes `events` in the caller's transaction; the relay is notified at commit."""
    rows = event_rows(events)
    if not rows:
        return
    if len(rows) == 1:
        (await conn.execute(INSERT_ONE_EVENT, rows[0])).one()
        return
    await conn.execute(INSERT_EVENT, rows)
    await conn.execute(NOTIFY_OUTBOX)


def event_rows(events: Iterable[Event]) -> list[dict[str, Any]]:
    """INSERT_EVENT's (and INSERT_ONE_EVENT's) parameters, one row per event (`payload`
    is JSONB)."""
    return [
        {
            "event_id": str(uuid.uuid4()),
            "account_id": event.account_id,
            "resource_arn": event.resource_arn,
            "type": event.type,
            "payload": event.payload,
        }
        for event in events
    ]


class OutboxRelay:
    """Assigns positions to committed outbox rows. Safe to run on every replica: one
    relays at a time and the others return at once."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._listener: PgListener | None = None
        # Inside connected() (run()), passes go over the relay's own connection; otherwise
        # over the engine's pool.
        self._own: OwnConnection | None = None
        # The loop time at which each pass of run() started (the last 1,000; for tests).
        self.passes: collections.deque[float] = collections.deque(maxlen=1000)

    @property
    def listening(self) -> bool:
        """True while run()'s LISTEN connection is established."""
        return self._listener is not None and self._listener.connected.is_set()

    async def relay_once(self, batch: int = 500) -> int:
        """Relays up to `batch` pending rows; returns how many (0 if another replica holds
        the relay lock). Inside `connected()` (run()), on the relay's own connection;
        otherwise (a test, a tool) on a connection of the engine's pool."""
        params = {"key": RELAY_LOCK_KEY, "batch": batch}
        if self._own is not None:
            got, relayed, _ = (await self._own.rows(RELAY, params))[0]
        else:
            async with self.engine.begin() as conn:
                got, relayed, _ = tuple((await conn.exec_driver_sql(RELAY, params)).one())
        return int(relayed) if got else 0

    async def relay_all(self, batch: int = 500) -> int:
        """Relays until no pending row is left (or another replica holds the lock)."""
        total = 0
        while True:
            relayed = await self.relay_once(batch)
            total += relayed
            if relayed < batch:
                return total

    async def run(self, stop: asyncio.Event, poll_seconds: float, batch: int = 500) -> None:
        """Relays whenever notified of new outbox rows, and every `poll_seconds` anyway:
        NOTIFY does not pass a transaction-pooling PgBouncer and is lost while the LISTEN
        connection is down."""
        listener = PgListener(engine_libpq_url(self.engine), [OUTBOX_CHANNEL])
        wake = listener.subscribe()
        failures = 0
        self._listener = listener
        loop = asyncio.get_running_loop()
        async with listener, self.connected():
            while not stop.is_set():
                # Cleared before relaying: a notification during the pass re-arms it.
                wake.clear()
                started = loop.time()
                self.passes.append(started)
                timeout = poll_seconds
                try:
                    await self.relay_all(batch)
                    failures = 0
                except Exception:
                    failures += 1
                    timeout = min(poll_seconds, 0.1 * 2**failures) * (0.5 + random.random() / 2)
                    log.warning("outbox relay failed", extra={"failures": failures}, exc_info=True)
                if await wait_any(wake, stop, timeout=timeout) and not stop.is_set():
                    # A notification arrives the instant its transaction commits, while
                    # that request is still answering its caller; stepping aside briefly
                    # lets the answer go first. Under a burst of commits the passes are
                    # PASS_SPACING_SECONDS apart: each pass is a transaction of its own
                    # (and a notification to every follower), in the request process.
                    await wait_any(stop, timeout=pass_delay(loop.time(), started))
        self._listener = None

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        """While entered (run() enters it), passes go over the relay's own connection;
        it is closed on leaving."""
        self._own = own = OwnConnection(engine_libpq_url(self.engine))
        try:
            yield
        finally:
            self._own = None
            await own.close()


class EventLog:
    """Reads relayed events of one account in position order, and follows new ones.

    `listener` may be a PgListener on EVENTS_CHANNEL shared by many followers (one LISTEN
    connection per process); without one, each follow() opens its own."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        listener: PgListener | None = None,
        poll_seconds: float = 1.0,
        page_size: int = 500,
    ) -> None:
        self.engine = engine
        self.listener = listener
        self.poll_seconds = poll_seconds
        self.page_size = page_size

    async def read(
        self,
        account_id: str,
        after_position: int,
        limit: int,
        resource_arn: str | None = None,
    ) -> list[EventRecord]:
        async with outage_as_unavailable(), self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    READ_EVENTS,
                    {
                        "account_id": account_id,
                        "after_position": after_position,
                        "resource_arn": resource_arn,
                        "limit": limit,
                    },
                )
            ).mappings()
            return [
                EventRecord(
                    event_id=row["event_id"],
                    position=int(row["position"]),
                    account_id=row["account_id"],
                    resource_arn=row["resource_arn"],
                    type=row["type"],
                    payload=dict(row["payload"]),
                    occurred_at=row["occurred_at"],
                )
                for row in rows
            ]

    async def head(self, account_id: str) -> int:
        """The account's latest position (0 if none): a cursor for "from now on"."""
        async with self.engine.connect() as conn:
            value = (await conn.execute(HEAD_POSITION, {"account_id": account_id})).scalar_one()
        return int(value)

    async def follow(
        self,
        account_id: str,
        after_position: int,
        resource_arn: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> AsyncGenerator[EventRecord, None]:
        """Yields the account's events after `after_position`, then new ones as they are
        relayed, until `stop` is set or the consumer stops iterating. Wrap it in
        contextlib.aclosing() so its LISTEN connection closes as soon as you stop."""
        listener = self.listener
        owned = listener is None
        if listener is None:
            listener = PgListener(engine_libpq_url(self.engine), [EVENTS_CHANNEL])
            listener.start()
        wake = listener.subscribe()
        try:
            # Listening before the first read means nothing relayed after that read can
            # go unnoticed; if the server is unreachable, polling still makes progress.
            if not listener.connected.is_set():
                await wait_any(listener.connected, stop, timeout=self.poll_seconds)
            cursor = after_position
            while stop is None or not stop.is_set():
                wake.clear()
                while True:
                    records = await self.read(account_id, cursor, self.page_size, resource_arn)
                    for record in records:
                        cursor = record.position
                        yield record
                    if len(records) < self.page_size:
                        break
                await wait_any(wake, stop, timeout=self.poll_seconds)
        finally:
            listener.unsubscribe(wake)
            if owned:
                await listener.close()
