"""The unit of work: one transaction that commits domain changes, jobs and outbox events
together, or none of them."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...domain.model import Event
from . import identity, jobqueue, outbox
from .repositories import (
    AccountRepository,
    CertificateRepository,
    ConnectionRepository,
    CustomDomainRepository,
    OperationRepository,
    RequestIdRepository,
    ServiceRepository,
)


class PostgresUnitOfWork:
    """`async with uow: ...; await uow.commit()`. Leaving without commit rolls back.

    `PostgresUnitOfWork.bound(conn)` works inside a transaction someone else owns (a job
    handler's fenced transaction): `commit()` then only writes the pending events."""

    def __init__(self, engine: AsyncEngine | None, conn: AsyncConnection | None = None) -> None:
        self._engine = engine
        self._owns_connection = conn is None
        self._conn = conn
        self._events: list[Event] = []
        if conn is not None:
            self._bind(conn)

    @classmethod
    def bound(cls, conn: AsyncConnection) -> PostgresUnitOfWork:
        return cls(None, conn)

    def _bind(self, conn: AsyncConnection) -> None:
        self.conn = conn
        self.accounts = AccountRepository(conn)
        self.services = ServiceRepository(conn)
        self.operations = OperationRepository(conn)
        self.request_ids = RequestIdRepository(conn)
        self.connections = ConnectionRepository(conn)
        self.custom_domains = CustomDomainRepository(conn)
        self.certificates = CertificateRepository(conn)

    async def __aenter__(self) -> PostgresUnitOfWork:
        if self._owns_connection:
            assert self._engine is not None
            self._conn = await self._engine.connect()
            await self._conn.begin()
            self._bind(self._conn)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._owns_connection and self._conn is not None:
            try:
                if self._conn.in_transaction():
                    await self._conn.rollback()
            finally:
                await self._conn.close()
                self._conn = None

    def record(self, event: Event) -> None:
        self._events.append(event)

    async def enqueue_job(self, **kwargs: Any) -> int:
        return await jobqueue.enqueue(self.conn, **kwargs)

    async def take_failed_progress(self, kind: str, service_id: str) -> dict[str, Any] | None:
        return await jobqueue.take_failed_progress(self.conn, kind, service_id)

    async def now(self) -> Any:
        """The database clock: the one time source of every rule about time."""
        return (await self.conn.execute(select(func.now()))).scalar_one()

    async def flush_events(self) -> None:
        if self._events:
            await outbox.record_events(self.conn, self._events)
            self._events = []

    async def commit(self) -> None:
        # A request's mutation is audited in the transaction that makes it.
        audited = await identity.audit_in_transaction(self.conn, self._events)
        await self.flush_events()
        if self._owns_connection:
            await self.conn.commit()
        if audited:
            identity.mark_audited()
