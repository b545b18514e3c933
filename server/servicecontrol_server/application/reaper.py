"""The TTL reaper: one mechanism purging everything kept for a retention window.

- certificate records unlinked from their domain, once `expires_at` has passed;
- deleted connections and deleted services, once their tombstone's `purge_at` has passed
  (a service's operations and failed jobs go with it);
- ended operations, delivered outbox events and request ids older than their retention;
- failed jobs whose service is gone.

Every purge is a bounded batch in its own short transaction (adapters/postgres/ttl.py),
safe to run from every replica at once; the purge of a certificate, connection or
service writes its outbox event in the transaction that deletes it. In the server the
reaper also runs the certificate DNS validation pass."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import TextClause
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..adapters.postgres import outbox, ttl
from ..domain.model import Event
from ..settings import Settings
from .dns import DnsValidation

log = logging.getLogger(__name__)


class Reaper:
    def __init__(
        self, engine: AsyncEngine, settings: Settings, validation: DnsValidation | None = None
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.validation = validation
        self.batch = settings.reaper_batch_size

    async def reap_once(self) -> dict[str, int]:
        """Purges everything due now; returns how many rows of each kind this call
        deleted (rows another reaper deleted meanwhile are not counted here)."""
        s = self.settings
        counts = {
            "certificates": await self._purge(ttl.PURGE_EXPIRED_CERTIFICATES, _certificate_purged),
            "connections": await self._purge(ttl.PURGE_CONNECTION_TOMBSTONES, _connection_purged),
        }
        services, operations, jobs = await self._purge_services()
        counts["services"] = services
        counts["operations"] = operations + await self._purge(
            ttl.PURGE_ENDED_OPERATIONS, None, s.operation_retention_seconds
        )
        counts["events"] = await outbox.OutboxRelay(self.engine).prune_delivered(
            s.event_retention_seconds, self.batch
        )
        counts["request_ids"] = await self._purge(
            ttl.PURGE_REQUEST_IDS, None, s.request_id_retention_seconds
        )
        counts["jobs"] = jobs + await self._purge(ttl.PURGE_ORPHANED_FAILED_JOBS, None)
        return counts

    async def run(self, stop: asyncio.Event) -> None:
        """Reaps (and validates) at once, then every `reaper_interval_seconds` until
        `stop` is set. A failed pass is logged and retried at the next interval."""
        while not stop.is_set():
            try:
                counts = await self.reap_once()
                if any(counts.values()):
                    log.info("reaped", extra=counts)
                if self.validation is not None:
                    summary = await self.validation.run_once()
                    if summary.issued or summary.failed:
                        log.info("validated certificates", extra=vars(summary))
            except Exception:  # noqa: BLE001 - the loop must outlive a database outage
                log.warning("reaper pass failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.settings.reaper_interval_seconds)

    async def _purge(
        self,
        statement: TextClause,
        event: Callable[[RowMapping], Event] | None,
        older_than_seconds: int | None = None,
    ) -> int:
        """Runs one purge batch per transaction until a batch comes back short."""
        params: dict[str, Any] = {"batch": self.batch}
        if older_than_seconds is not None:
            params["older_than_seconds"] = float(older_than_seconds)
        total = 0
        while True:
            async with self.engine.begin() as conn:
                rows = (await conn.execute(statement, params)).mappings().all()
                if event is not None:
                    await outbox.record_events(conn, [event(row) for row in rows])
            total += len(rows)
            if len(rows) < self.batch:
                return total

    async def _purge_services(self) -> tuple[int, int, int]:
        """Deleted services past purge_at, with their operations and failed jobs;
        returns (services, operations, jobs) deleted."""
        services = operations = jobs = 0
        while True:
            async with self.engine.begin() as conn:
                rows = (
                    (await conn.execute(ttl.PURGE_SERVICE_TOMBSTONES, {"batch": self.batch}))
                    .mappings()
                    .all()
                )
                ids = [row["service_id"] for row in rows]
                if ids:
                    operations += await _count(conn, ttl.DELETE_OPERATIONS_OF_SERVICES, ids)
                    jobs += await _count(conn, ttl.DELETE_FAILED_JOBS_OF_SERVICES, ids)
                    await outbox.record_events(conn, [_service_purged(row) for row in rows])
            services += len(rows)
            if len(rows) < self.batch:
                return services, operations, jobs


async def _count(conn: AsyncConnection, statement: TextClause, service_ids: list[str]) -> int:
    return len((await conn.execute(statement, {"service_ids": service_ids})).all())


def _certificate_purged(row: RowMapping) -> Event:
    return Event(
        account_id=row["account_id"],
        resource_arn=row["certificate_arn"],
        type="certificate.purged",
        payload={"domainName": row["domain_name"], "reason": "expired"},
    )


def _connection_purged(row: RowMapping) -> Event:
    return Event(
        account_id=row["account_id"],
        resource_arn=row["connection_arn"],
        type="connection.purged",
        payload={"connectionName": row["connection_name"]},
    )


def _service_purged(row: RowMapping) -> Event:
    return Event(
        account_id=row["account_id"],
        resource_arn=row["service_arn"],
        type="service.purged",
        payload={"serviceName": row["service_name"], "serviceId": row["service_id"]},
    )
