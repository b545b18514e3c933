"""DescribeService's and ListServices' reads on the direct pool (see `direct`)."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncEngine

from ...application.ports import Cursor
from ...domain.model import Service
from .database import is_outage, unavailable
from .direct import DirectPool
from .repositories.services import (
    GET_SERVICE,
    ServiceRepository,
    live_page_parameters,
    service_from_row,
)
from .unit_of_work import PostgresUnitOfWork


class DirectServiceReads(ServiceRepository):
    """The service reads of a read-only unit of work, on the direct pool. Only `get`
    (without a lock) and `list_live` exist here: the read-only unit of work serves the
    queries that are one statement, and nothing else."""

    def __init__(self, pool: DirectPool) -> None:  # no SQLAlchemy connection
        self._pool = pool

    async def get(
        self, account_id: str, service_id: str, *, for_update: bool = False
    ) -> Service | None:
        if for_update:
            raise RuntimeError("a read-only unit of work takes no locks")
        row = await self._pool.fetch_one(
            GET_SERVICE, {"account_id": account_id, "service_id": service_id}
        )
        return service_from_row(row) if row else None

    async def list_live(
        self, account_id: str, region: str, after: Cursor | None, limit: int
    ) -> list[Service]:
        query, params = live_page_parameters(account_id, region, after, limit)
        return [service_from_row(row) for row in await self._pool.fetch_all(query, params)]


class DirectReadUnitOfWork(PostgresUnitOfWork):
    """A read-only unit of work whose service reads go to the direct pool: entering it
    checks out nothing; each read takes a connection for its one statement."""

    def __init__(self, engine: AsyncEngine, pool: DirectPool) -> None:
        super().__init__(engine, read_only=True)
        self._pool = pool

    async def __aenter__(self) -> DirectReadUnitOfWork:
        self._events = []
        self.services = DirectServiceReads(self._pool)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and is_outage(exc):
            raise unavailable(exc) from exc
