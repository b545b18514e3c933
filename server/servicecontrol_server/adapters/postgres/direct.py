"""The request path's hot single-statement reads, straight on psycopg.

Every authenticated call reads its API key, and DescribeService / ListServices each read
with one statement. Through SQLAlchemy's asyncio layer each of those paid for a pool
checkout, the greenlet bridge and the result-row machinery, for rows that are converted
into domain objects at once; here they run on a small psycopg pool of autocommit
connections (a statement is its own snapshot) with server-side prepared statements.

The statements are the repositories' own named SQL (`identity.GET_KEY`,
`services.GET_SERVICE`, `services.LIST_LIVE_SERVICES[_AFTER]`), translated once from
SQLAlchemy's `:name` parameters to psycopg's: the SQL is written in one place. Only the
process's composition root attaches a pool to an engine (`attach`), and closes it with
the engine (`detach`); without one, the adapters use the engine as before.

`pipelined_reads` is the same idea inside a transaction: the statements a mutation reads
first (DeleteService's locked read and ingress check, a request id's claim) sent in one
round trip on the transaction's own session, with its `BEGIN`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import psycopg
import sqlalchemy.exc
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row
from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from .database import SESSION_OPTIONS, libpq_url
from .jsonb import JsonbLoader

APPLICATION_NAME = "servicecontrol-reads"

# `:name` but not the `::type` of a cast.
_PARAMETER = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def psycopg_sql(statement: TextClause) -> str:
    """A named statement with psycopg's `%(name)s` parameters."""
    return _PARAMETER.sub(r"%(\1)s", statement.text.replace("%", "%%"))


class DirectPool:
    """Up to `max_size` autocommit psycopg connections for single statements (the hot
    reads, and the compute driver's records), each
    kept open between calls (no session is opened per call under load; idle ones stay,
    there is no overflow that is closed on return).

    Failing fast, as the engine's pool does: a connection is opened when none is idle,
    so while the database is down a call fails at once with the driver's outage error
    (psycopg's OperationalError, a `database.OUTAGES` member) instead of waiting for a
    background reconnect; a connection that broke, or is not idle when given back, is
    closed instead of kept, with every idle one (they are as old as it)."""

    def __init__(self, url: str, *, max_size: int = 10) -> None:
        self._url = libpq_url(url)
        self._slots = asyncio.Semaphore(max_size)
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._sql: dict[TextClause, str] = {}
        self._closed = False
        self.opened = 0  # connections opened so far (for tests and the benchmark)

    def sql(self, statement: TextClause) -> str:
        found = self._sql.get(statement)
        if found is None:
            found = self._sql[statement] = psycopg_sql(statement)
        return found

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        conn = await psycopg.AsyncConnection.connect(
            self._url,
            autocommit=True,
            # Prepared at first use on each connection: parsed and planned once.
            prepare_threshold=0,
            options=SESSION_OPTIONS,
            # Told apart from the engine's sessions in pg_stat_activity.
            application_name=APPLICATION_NAME,
        )
        conn.adapters.register_loader("jsonb", JsonbLoader)
        self.opened += 1
        return conn

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        if self._closed:
            raise RuntimeError("the direct pool is closed")
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            try:
                yield conn
            except BaseException as exc:
                await conn.close()
                if isinstance(exc, psycopg.OperationalError):
                    # The session broke (the usual cause: the database restarted): the
                    # idle ones are of the same age, so they go too, as the engine's
                    # pool invalidates itself; one call is refused, not one per session.
                    idle, self._idle = self._idle, []
                    for stale in idle:
                        await stale.close()
                raise
            if (
                self._closed
                or conn.closed
                or conn.info.transaction_status != TransactionStatus.IDLE
            ):
                await conn.close()
            else:
                self._idle.append(conn)

    async def fetch_one(
        self, statement: TextClause, params: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(self.sql(statement), params)
            return await cur.fetchone()

    async def fetch_all(
        self, statement: TextClause, params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        async with self.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(self.sql(statement), params)
            return await cur.fetchall()

    async def execute(self, statement: TextClause, params: Mapping[str, Any]) -> int:
        """One statement in autocommit (its own transaction); the rows it changed."""
        async with self.connection() as conn:
            cur = conn.cursor()
            await cur.execute(self.sql(statement), params)
            return cur.rowcount

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()


class OwnConnection:
    """One autocommit psycopg connection that a long-running loop keeps to itself (the job
    queue's, the outbox relay's): opened at its first statement, each statement prepared
    on it, jsonb decoded as on every session of ours. After an outage error the connection
    is closed and the call fails like any outage; the next call opens a new one."""

    def __init__(self, url: str) -> None:
        # A plain libpq URL (listen.engine_libpq_url of the process's engine).
        self._url = url
        self._conn: psycopg.AsyncConnection[tuple[Any, ...]] | None = None

    @property
    def backend_pid(self) -> int | None:
        """The server process of the open connection, if one is open (for tests)."""
        conn = self._conn
        return None if conn is None or conn.closed else conn.info.backend_pid

    async def rows(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """`sql` (a statement that answers rows: a SELECT or RETURNING), its rows."""
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            await self.close()
            conn = self._conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, options=SESSION_OPTIONS
            )
            conn.adapters.register_loader("jsonb", JsonbLoader)
        try:
            return await (await conn.execute(sql, params, prepare=True)).fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError):
            await self.close()
            raise

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


_ATTACHED: weakref.WeakKeyDictionary[AsyncEngine, DirectPool] = weakref.WeakKeyDictionary()


def attach(engine: AsyncEngine, url: str, *, max_size: int = 10) -> DirectPool:
    """Gives `engine`'s hot reads a direct pool (the composition root does, once)."""
    pool = _ATTACHED[engine] = DirectPool(url, max_size=max_size)
    return pool


def attached(engine: AsyncEngine) -> DirectPool | None:
    return _ATTACHED.get(engine)


async def detach(engine: AsyncEngine) -> None:
    pool = _ATTACHED.pop(engine, None)
    if pool is not None:
        await pool.close()


# ----- statements pipelined on a transaction's own session -----

# Set on the SQLAlchemy connection's record while its session is switched to autocommit
# by `pipelined_reads`, until `end_pipelined_transaction` switches it back.
_OPENED_HERE = "servicecontrol.pipelined_begin"


def _begin_statement(driver: psycopg.AsyncConnection[Any]) -> str:
    """The `BEGIN` psycopg itself would send for this session. A session the pool reset
    after an autocommit read (`single_statement`) names its isolation level explicitly."""
    parts = ["BEGIN"]
    if driver.isolation_level is not None:
        level = psycopg.IsolationLevel(driver.isolation_level)
        parts.append("ISOLATION LEVEL " + level.name.replace("_", " "))
    if driver.read_only is not None:
        parts.append("READ ONLY" if driver.read_only else "READ WRITE")
    if driver.deferrable is not None:
        parts.append("DEFERRABLE" if driver.deferrable else "NOT DEFERRABLE")
    return " ".join(parts)


async def pipelined_reads(
    conn: AsyncConnection, statements: Sequence[tuple[TextClause, Mapping[str, Any]]]
) -> list[list[dict[str, Any]]]:
    """Sends `statements` (named SQL) in psycopg's pipeline mode on the transaction's own
    session and returns each one's rows: one round trip for all of them. Each statement
    still runs on its own, in order, with its own snapshot (READ COMMITTED): one that
    comes after a `FOR UPDATE` sees what the lock's previous holder committed.

    When the transaction has not started yet, an explicit `BEGIN` goes first, in the same
    round trip: psycopg would otherwise send its own `BEGIN` and wait for its answer
    before the first statement. For that the session is in autocommit until the
    transaction ends (it ends with a `COMMIT` or `ROLLBACK` like any other), and the unit
    of work switches it back with `end_pipelined_transaction` before returning it."""
    driver = (await conn.get_raw_connection()).driver_connection
    assert isinstance(driver, psycopg.AsyncConnection)
    begin = driver.info.transaction_status == TransactionStatus.IDLE and not driver.autocommit
    if begin:
        conn.info[_OPENED_HERE] = True
        await driver.set_autocommit(True)
    cursors = []
    async with driver.pipeline():
        if begin:
            await driver.execute(_begin_statement(driver))
        for statement, params in statements:
            cursor = driver.cursor(row_factory=dict_row)
            await cursor.execute(_translated(statement), params)
            cursors.append(cursor)
    return [await cursor.fetchall() for cursor in cursors]


async def end_pipelined_transaction(conn: AsyncConnection) -> None:
    """After the transaction's end (commit or rollback): a session `pipelined_reads`
    switched to autocommit goes back to the pool as it came, so the next unit of work's
    statements open their transaction as usual. A session that is not idle (broken, or
    the transaction did not end) is invalidated instead: the pool discards it."""
    if conn.invalidated or conn.closed:
        return  # broken (an outage): the pool discards the session
    try:
        if not conn.info.pop(_OPENED_HERE, False):
            return
        driver = (await conn.get_raw_connection()).driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)
        if not driver.closed and driver.info.transaction_status == TransactionStatus.IDLE:
            await driver.set_autocommit(False)
            return
    except (psycopg.Error, sqlalchemy.exc.SQLAlchemyError):
        pass  # broken already (an outage): discarded below
    with contextlib.suppress(sqlalchemy.exc.SQLAlchemyError):
        await conn.invalidate()


_translated = functools.lru_cache(maxsize=64)(psycopg_sql)
