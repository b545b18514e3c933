"""The TTL reaper: one mechanism purging everything kept for a retention window.

- certificate records unlinked from their domain, once `expires_at` has passed;
- deleted connections, VPC connectors, VPC ingress connections and services, once their
  tombstone's `purge_at` has passed (a service's operations and failed jobs go with it);
- ended operations, delivered outbox events and request ids older than their retention;
- failed jobs whose service is gone;
- with an object store, the staged parts of image pushes nobody has added to for
  `upload_retention_seconds`, and partial writes (S3: multipart uploads) as old.

Every purge is a bounded batch in its own short transaction (adapters/postgres/ttl.py),
safe to run from every replica at once; the purge of a certificate, connection or
service writes its outbox event in the transaction that deletes it. In the server the
reaper also runs the certificate DNS validation pass."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from ..domain import events
from ..domain.model import Event
from ..settings import Settings
from .dns import DnsValidation
from .image_upload import STAGING
from .offload import off_loop
from .ports import ObjectStore, UnitOfWork, UnitOfWorkFactory

log = logging.getLogger(__name__)
Row = TypeVar("Row")


class Reaper:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        settings: Settings,
        validation: DnsValidation | None = None,
        *,
        store: ObjectStore | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.uow = uow
        self.settings = settings
        self.validation = validation
        self.batch = settings.reaper_batch_size
        self.store = store
        self.clock = clock

    async def reap_once(self) -> dict[str, int]:
        """Purges everything due now; returns how many rows of each kind this call
        deleted (rows another reaper deleted meanwhile are not counted here)."""
        s, batch = self.settings, self.batch
        counts = {
            "certificates": await self._purge(
                lambda uow: uow.retention.purge_expired_certificates(batch),
                lambda c: events.certificate_purged(
                    c.account_id, c.certificate_arn, c.domain_name, "expired"
                ),
            ),
            "connections": await self._purge(
                lambda uow: uow.retention.purge_connection_tombstones(batch),
                lambda c: events.connection_purged(
                    c.account_id, c.connection_arn, c.connection_name
                ),
            ),
        }
        counts["vpc_connectors"] = await self._purge(
            lambda uow: uow.vpc.purge_connector_tombstones(batch), events.vpc_connector_purged
        )
        counts["vpc_ingress_connections"] = await self._purge(
            lambda uow: uow.vpc.purge_ingress_tombstones(batch),
            events.vpc_ingress_connection_purged,
        )
        services, operations, jobs = await self._purge_services()
        counts["services"] = services
        counts["operations"] = operations + await self._count(
            lambda uow: uow.retention.purge_ended_operations(s.operation_retention_seconds, batch)
        )
        counts["events"] = await self._count(
            lambda uow: uow.retention.prune_delivered_events(s.event_retention_seconds, batch)
        )
        counts["request_ids"] = await self._count(
            lambda uow: uow.retention.purge_request_ids(s.request_id_retention_seconds, batch)
        )
        counts["jobs"] = jobs + await self._count(
            lambda uow: uow.retention.purge_orphaned_failed_jobs(batch)
        )
        if self.store is not None:
            counts["upload_parts"] = await self.reap_uploads(self.store)
        return counts

    async def reap_uploads(self, store: ObjectStore) -> int:
        """Staged push parts (and partial writes) left alone for the retention window.
        The store's clock stamps them, this one sets the cutoff: both are UTC."""
        before = self.clock() - timedelta(seconds=self.settings.upload_retention_seconds)
        return await off_loop(
            store, store.reap_stale_uploads, self.settings.source_bucket, STAGING, before
        )

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
        purge: Callable[[UnitOfWork], Awaitable[Sequence[Row]]],
        event: Callable[[Row], Event],
    ) -> int:
        """Runs one purge batch per transaction, each with the events of what it purged,
        until a batch comes back short."""
        total = 0
        while True:
            async with self.uow() as uow:
                rows = await purge(uow)
                for row in rows:
                    uow.record(event(row))
                await uow.commit()
            total += len(rows)
            if len(rows) < self.batch:
                return total

    async def _count(self, purge: Callable[[UnitOfWork], Awaitable[int]]) -> int:
        """Like _purge, for rows whose purge records no event."""
        total = 0
        while True:
            async with self.uow() as uow:
                deleted = await purge(uow)
                await uow.commit()
            total += deleted
            if deleted < self.batch:
                return total

    async def _purge_services(self) -> tuple[int, int, int]:
        """Deleted services past purge_at, with their operations and failed jobs;
        returns (services, operations, jobs) deleted."""
        services = operations = jobs = 0
        while True:
            async with self.uow() as uow:
                purged = await uow.retention.purge_service_tombstones(self.batch)
                for s in purged.services:
                    uow.record(
                        events.service_purged(
                            s.account_id, s.service_arn, s.service_name, s.service_id
                        )
                    )
                await uow.commit()
            services += len(purged.services)
            operations += purged.operations
            jobs += purged.jobs
            if len(purged.services) < self.batch:
                return services, operations, jobs
