"""Purges of everything kept for a retention window (SQL in ttl.py and outbox.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import TextClause
from sqlalchemy.ext.asyncio import AsyncConnection

from ....application.ports import (
    PurgedCertificate,
    PurgedConnection,
    PurgedService,
    PurgedServices,
)
from .. import outbox, ttl


class RetentionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def purge_expired_certificates(self, batch: int) -> list[PurgedCertificate]:
        rows = await self._rows(ttl.PURGE_EXPIRED_CERTIFICATES, batch=batch)
        return [
            PurgedCertificate(r["account_id"], r["certificate_arn"], r["domain_name"]) for r in rows
        ]

    async def purge_connection_tombstones(self, batch: int) -> list[PurgedConnection]:
        rows = await self._rows(ttl.PURGE_CONNECTION_TOMBSTONES, batch=batch)
        return [
            PurgedConnection(r["account_id"], r["connection_arn"], r["connection_name"])
            for r in rows
        ]

    async def purge_service_tombstones(self, batch: int) -> PurgedServices:
        rows = await self._rows(ttl.PURGE_SERVICE_TOMBSTONES, batch=batch)
        services = [
            PurgedService(r["account_id"], r["service_arn"], r["service_name"], r["service_id"])
            for r in rows
        ]
        ids = [s.service_id for s in services]
        operations = jobs = 0
        if ids:
            operations = len(await self._rows(ttl.DELETE_OPERATIONS_OF_SERVICES, service_ids=ids))
            jobs = len(await self._rows(ttl.DELETE_FAILED_JOBS_OF_SERVICES, service_ids=ids))
        return PurgedServices(services, operations, jobs)

    async def purge_ended_operations(self, older_than_seconds: float, batch: int) -> int:
        return len(
            await self._rows(
                ttl.PURGE_ENDED_OPERATIONS, batch=batch, older_than_seconds=older_than_seconds
            )
        )

    async def purge_request_ids(self, older_than_seconds: float, batch: int) -> int:
        return len(
            await self._rows(
                ttl.PURGE_REQUEST_IDS, batch=batch, older_than_seconds=older_than_seconds
            )
        )

    async def purge_orphaned_failed_jobs(self, batch: int) -> int:
        return len(await self._rows(ttl.PURGE_ORPHANED_FAILED_JOBS, batch=batch))

    async def prune_delivered_events(self, older_than_seconds: float, batch: int) -> int:
        return len(
            await self._rows(
                outbox.PRUNE_DELIVERED, batch=batch, older_than_seconds=older_than_seconds
            )
        )

    async def _rows(self, statement: TextClause, **params: Any) -> list[Any]:
        if "older_than_seconds" in params:
            params["older_than_seconds"] = float(params["older_than_seconds"])
        return list((await self.conn.execute(statement, params)).mappings().all())
