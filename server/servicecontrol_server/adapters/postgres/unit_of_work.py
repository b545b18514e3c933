"""The unit of work on Postgres: one transaction that commits domain changes, jobs and
outbox events together, or none of them (application.ports.UnitOfWork)."""

from __future__ import annotations

from datetime import datetime
from types import TracebackType

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...domain.model import Event
from . import identity, outbox
from .database import is_outage, unavailable
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

    async def commit(self) -> None:
        if self._read_only:
            raise RuntimeError("a read-only unit of work has nothing to commit")
        # A request's mutation is audited in the transaction that makes it.
        audited = await identity.audit_in_transaction(self.conn, self._events)
        await self.flush_events()
        await self.conn.commit()
        if audited:
            identity.mark_audited()
