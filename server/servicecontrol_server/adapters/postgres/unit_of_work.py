"""The unit of work on Postgres: one transaction that commits domain changes, jobs and
outbox events together, or none of them (application.ports.UnitOfWork)."""

from __future__ import annotations

import functools
from datetime import datetime
from types import TracebackType
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from sqlalchemy import TextClause, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...application.ports import OperationJob
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

    @property
    def conn(self) -> AsyncConnection:
        """The transaction's connection (for adapters and tests of them)."""
        if self._conn is None:
            raise RuntimeError("the unit of work is not entered")
        return self._conn

    def _bind(self, conn: AsyncConnection) -> None:
        self.accounts = AccountRepository(conn)
        self.services = ServiceRepository(conn)
        self.operations = OperationRepository(conn)
        self.request_ids = RequestIdRepository(conn)
        self.connections = ConnectionRepository(conn)
        self.custom_domains = CustomDomainRepository(conn)
        self.certificates = CertificateRepository(conn)
        self.jobs = JobRepository(conn)
        self.retention = RetentionRepository(conn)
        self.tags = TagRepository(conn)
        self.config_resources = ConfigResourceRepository(conn)
        self.vpc = VpcRepository(conn)

    async def __aenter__(self) -> PostgresUnitOfWork:
        self._events = []
        self._starts = []
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
        self._conn = conn
        self._bind(conn)
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
        if not self._starts:
            # A request's mutation is audited in the transaction that makes it.
            audited = await identity.audit_in_transaction(self.conn, self._events)
            await self.flush_events()
            await self.conn.commit()
            if audited:
                identity.mark_audited()
            return
        await self._commit_pipelined()

    async def _commit_pipelined(self) -> None:
        """The held operation starts (service state, operation, job), the audit row, the
        outbox events and COMMIT, in that order, sent in psycopg's pipeline mode on the
        transaction's own session: one round trip instead of one per statement. Still
        one transaction: a failing statement aborts the ones after it and the COMMIT,
        and leaving the unit of work rolls the transaction back."""
        starts, self._starts = self._starts, []
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
        if audit is not None:
            statements.append((identity.INSERT_AUDIT, audit))
        rows = outbox.event_rows(events)
        for row in rows:
            row["payload"] = Jsonb(row["payload"])
        if len(rows) == 1:
            statements.append((outbox.INSERT_ONE_EVENT, rows[0]))
        driver = (await self.conn.get_raw_connection()).driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)
        async with driver.pipeline():
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
