"""The unit of work on Postgres: one transaction that commits domain changes, jobs and
outbox events together, or none of them (application.ports.UnitOfWork)."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from types import TracebackType
from typing import Any, cast

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import TextClause, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...application.ports import LeaseLost, OperationJob
from ...domain.model import Event, Operation, Service
from . import identity, jobqueue, outbox
from .database import is_outage, unavailable
from .direct import end_pipelined_transaction, psycopg_sql
from .repositories import (
    AccountRepository,
    CertificateRepository,
    ConfigResourceRepository,
    ConnectionRepository,
    CustomDomainRepository,
    JobRepository,
    OperationRepository,
    RequestIdRepository,
    RetentionRepository,
    ServiceRepository,
    TagRepository,
    VpcRepository,
)
from .repositories.operations import ADD_OPERATION, add_parameters
from .repositories.services import SAVE_SERVICE, save_parameters

# A named statement in the driver's own parameter style, translated once.
_driver_sql = functools.lru_cache(maxsize=32)(psycopg_sql)
_COMMIT = "COMMIT"


class PostgresUnitOfWork:
    """`async with uow: ...; await uow.commit()`. Leaving without commit rolls back.

    A driver's outage error, raised on entry, inside the block or by commit, leaves as
    domain.errors.BackendUnavailable: the application and the API never see the driver."""

    def __init__(self, engine: AsyncEngine, *, read_only: bool = False) -> None:
        # A read-only unit of work runs each statement on its own (`engine` is then a
        # single_statement() engine): no BEGIN, no ROLLBACK, and nothing to commit.
        self._engine = engine
        self._read_only = read_only
        self._conn: AsyncConnection | None = None
        self._events: list[Event] = []
        self._starts: list[tuple[Operation, OperationJob, Service | None]] = []
        # Writes that need no answer before the commit (an operation's end, the job's
        # fenced completion), sent with it: see `commit`.
        self._held: list[tuple[TextClause, dict[str, Any]]] = []

    @property
    def conn(self) -> AsyncConnection:
        """The transaction's connection (for adapters and tests of them)."""
        if self._conn is None:
            raise RuntimeError("the unit of work is not entered")
        return self._conn

    def _bind(self, conn: AsyncConnection) -> None:
        self.accounts = AccountRepository(conn)
        self.services = ServiceRepository(conn)
        hold = None if self._read_only else self._hold
        self.operations = OperationRepository(conn, hold)
        self.request_ids = RequestIdRepository(conn)
        self.connections = ConnectionRepository(conn)
        self.custom_domains = CustomDomainRepository(conn)
        self.certificates = CertificateRepository(conn)
        self.jobs = JobRepository(conn, hold)
        self.retention = RetentionRepository(conn)
        self.tags = TagRepository(conn)
        self.config_resources = ConfigResourceRepository(conn)
        self.vpc = VpcRepository(conn)

    async def __aenter__(self) -> PostgresUnitOfWork:
        self._events = []
        self._starts = []
        self._held = []
        conn = None
        try:
            conn = await self._engine.connect()
            if not self._read_only:
                await conn.begin()
        except BaseException as exc:
            if conn is not None:
                await conn.close()
            if is_outage(exc):
                raise unavailable(exc) from exc
            raise
        # The repositories see the connection through a view that sends the held writes
        # before any later statement: every statement sees them.
        self._conn = cast(AsyncConnection, _SendingHeldFirst(conn, self._send_held))
        self._bind(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if conn.in_transaction():
                    await conn.rollback()
                # The session goes back to the pool as it came (direct.pipelined_reads).
                await end_pipelined_transaction(conn)
            except Exception as cleanup:
                # The connection is broken (the usual reason to be here): discard it.
                if not is_outage(cleanup):
                    raise
            finally:
                await conn.close()
        if exc is not None and is_outage(exc):
            raise unavailable(exc) from exc

    def record(self, event: Event) -> None:
        self._events.append(event)

    def _hold(self, statement: TextClause, params: dict[str, Any]) -> None:
        self._held.append((statement, params))

    async def _send_held(self, conn: AsyncConnection) -> None:
        """The held writes, sent now (one round trip each): a statement comes after them."""
        held, self._held = self._held, []
        async with _lease_lost_as_error(held):
            for statement, params in held:
                await conn.execute(statement, params)

    async def now(self) -> datetime:
        """The database clock: the one time source of every rule about time."""
        value: datetime = (await self.conn.execute(select(func.now()))).scalar_one()
        return value

    async def flush_events(self) -> None:
        if self._events:
            await outbox.record_events(self.conn, self._events)
            self._events = []

    async def start_operation(
        self, operation: Operation, job: OperationJob, *, saving: Service | None = None
    ) -> None:
        """Held until commit, which sends these writes with the audit row, the events and
        COMMIT itself in one round trip (see `commit`)."""
        self._starts.append((operation, job, saving))

    async def commit(self) -> None:
        if self._read_only:
            raise RuntimeError("a read-only unit of work has nothing to commit")
        if not self._starts and not self._held:
            # A request's mutation is audited in the transaction that makes it.
            audited = await identity.audit_in_transaction(self.conn, self._events)
            await self.flush_events()
            await self.conn.commit()
            if audited:
                identity.mark_audited()
            return
        await self._commit_pipelined()

    async def _commit_pipelined(self) -> None:
        """The held operation starts (service state, operation, job), the other held
        writes (an operation's end, a job's fenced completion), the audit row, the
        outbox events and COMMIT, in that order, sent in psycopg's pipeline mode on the
        transaction's own session: one round trip instead of one per statement. Still
        one transaction: a failing statement aborts the ones after it and the COMMIT,
        and leaving the unit of work rolls the transaction back. A held completion that
        finds the lease gone fails so (jobqueue.COMPLETE_OR_FAIL): LeaseLost."""
        starts, self._starts = self._starts, []
        held, self._held = self._held, []
        events, self._events = self._events, []
        audit = identity.audit_values(events)
        statements: list[tuple[TextClause, dict[str, Any]]] = []
        saved: list[tuple[Service, int]] = []
        for operation, job, saving in starts:
            if saving is not None:
                saved.append((saving, len(statements)))
                statements.append((SAVE_SERVICE, save_parameters(saving)))
            statements.append((ADD_OPERATION, add_parameters(operation)))
            params = jobqueue.enqueue_parameters(
                kind=job.kind,
                payload=job.payload,
                max_attempts=job.max_attempts,
                operation_id=operation.operation_id,
                service_id=operation.service_id,
                account_id=operation.account_id,
                progress=job.progress,
            )
            params["payload"], params["progress"] = (
                Jsonb(params["payload"]),
                Jsonb(params["progress"]),
            )
            statements.append((jobqueue.ENQUEUE, params))
        statements.extend(held)
        if audit is not None:
            statements.append((identity.INSERT_AUDIT, audit))
        rows = outbox.event_rows(events)
        for row in rows:
            row["payload"] = Jsonb(row["payload"])
        if len(rows) == 1:
            statements.append((outbox.INSERT_ONE_EVENT, rows[0]))
        driver = (await self.conn.get_raw_connection()).driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)
        async with _lease_lost_as_error(held), driver.pipeline():
            cursors = []
            for statement, params in statements:
                cursor = driver.cursor()
                await cursor.execute(_driver_sql(statement), params)
                cursors.append(cursor)
            if len(rows) > 1:
                await driver.cursor().executemany(_driver_sql(outbox.INSERT_EVENT), rows)
                await driver.cursor().execute(_driver_sql(outbox.NOTIFY_OUTBOX))
            # As a statement, not driver.commit(): that would send its own Sync, and
            # leaving the pipeline sends one more; this way the one Sync is leaving it.
            await driver.cursor().execute(_COMMIT)
        for service, index in saved:
            found = await cursors[index].fetchone()
            assert found is not None, "the locked service row was saved"
            service.version, service.updated_at = found
        # Ends SQLAlchemy's transaction: the session is idle already, nothing is sent.
        await self.conn.commit()
        if audit is not None:
            identity.mark_audited()


class _SendingHeldFirst:
    """A unit of work's connection as its repositories use it: `execute` sends the writes
    held for the commit first, if any; everything else is the connection's own."""

    def __init__(
        self,
        conn: AsyncConnection,
        send_held: Callable[[AsyncConnection], Awaitable[None]],
    ) -> None:
        self._conn = conn
        self._send_held = send_held

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        await self._send_held(self._conn)
        return await self._conn.execute(*args, **kwargs)

    async def exec_driver_sql(self, *args: Any, **kwargs: Any) -> Any:
        await self._send_held(self._conn)
        return await self._conn.exec_driver_sql(*args, **kwargs)

    async def get_raw_connection(self) -> Any:
        # The session used directly (direct.pipelined_reads) comes after the held writes too.
        await self._send_held(self._conn)
        return await self._conn.get_raw_connection()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@contextlib.asynccontextmanager
async def _lease_lost_as_error(
    held: list[tuple[TextClause, dict[str, Any]]],
) -> AsyncIterator[None]:
    """A held completion that found the lease gone (nothing was committed): LeaseLost."""
    try:
        yield
    except (psycopg.Error, DBAPIError) as exc:
        if jobqueue.is_lease_lost(exc):
            raise LeaseLost(_completed_job(held)) from exc
        raise


def _completed_job(held: list[tuple[TextClause, dict[str, Any]]]) -> int:
    """The job whose held completion failed."""
    return next(
        int(params["job_id"])
        for statement, params in held
        if statement is jobqueue.COMPLETE_OR_FAIL
    )
