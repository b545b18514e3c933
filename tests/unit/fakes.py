"""In-memory fakes of every port the application owns (application/ports/).

One `FakeDatabase` holds the committed state; each `FakeUnitOfWork` works on its own copy
of it and, at commit, writes back only the rows it changed, so several units of work see
each other's committed state and never an uncommitted one. The repositories mirror the
Postgres adapters (adapters/postgres/repositories/) rule for rule: orderings, keyset
cursors, what each write sets, what the database clock decides.
tests/integration/test_port_contracts.py runs one behavioural contract against both, so
a fake that drifts from Postgres fails there.

Time is a `FakeClock` that tests move by hand; like Postgres' now(), a unit of work reads
it once, when it begins."""

from __future__ import annotations

import asyncio
import copy
import hashlib
import itertools
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, BinaryIO

from servicecontrol_server.application.ports import (
    ClaimedJob,
    ComputeError,
    ConfigPosition,
    Cursor,
    EventRecord,
    LeaseLost,
    ObjectInfo,
    ObjectNotFound,
    ObjectStoreError,
    ObjectStoreUnavailable,
    OperationJob,
    PurgedCertificate,
    PurgedConnection,
    PurgedService,
    PurgedServices,
    ServiceRemoval,
    UnitOfWork,
)
from servicecontrol_server.domain.config_resources import ConfigKind, ConfigResource, ConfigStatus
from servicecontrol_server.domain.errors import BackendUnavailable
from servicecontrol_server.domain.model import (
    Certificate,
    CertificateStatus,
    Connection,
    ConnectionStatus,
    CustomDomain,
    CustomDomainStatus,
    Event,
    Operation,
    OperationStatus,
    Service,
    ServiceConfiguration,
    ServiceStatus,
)
from servicecontrol_server.domain.vpc import (
    VpcConnector,
    VpcConnectorStatus,
    VpcIngressConnection,
    VpcIngressConnectionStatus,
)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _region(arn: str) -> str:
    """The region an ARN names (the Postgres adapter's generated `region` column)."""
    return arn.split(":")[3] if arn.count(":") >= 5 else ""


class FakeIntegrityError(Exception):
    """A write the database's constraints would refuse (a unique index, a foreign key)."""


class FakeClock:
    """The database clock. It moves only when a test advances it."""

    def __init__(self, start: datetime = EPOCH) -> None:
        self.current = start

    def now(self) -> datetime:
        return self.current

    def advance(self, seconds: float = 0.0, **delta: float) -> datetime:
        self.current += timedelta(seconds=seconds, **delta)
        return self.current


@dataclass
class JobRow:
    job_id: int
    kind: str
    operation_id: str | None
    service_id: str | None
    account_id: str | None
    payload: dict[str, Any]
    progress: dict[str, Any]
    max_attempts: int
    run_at: datetime
    state: str = "queued"
    attempts: int = 0
    lease_token: str | None = None
    lease_owner: str | None = None
    last_error: str = ""


@dataclass
class RequestIdRow:
    fingerprint: str
    result_kind: str
    result_id: str
    created_at: datetime


@dataclass
class OutboxRow:
    event_id: str
    seq: int
    event: Event
    occurred_at: datetime
    position: int | None = None
    delivered_at: datetime | None = None


@dataclass
class Tables:
    """Every table, keyed by its primary key. Rows are the domain objects, stored as
    copies: a service's `configuration` lives in `configurations`, as in the schema."""

    accounts: dict[str, bool] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    configurations: dict[str, ServiceConfiguration] = field(default_factory=dict)
    compute_instances: dict[str, str] = field(default_factory=dict)
    operations: dict[str, Operation] = field(default_factory=dict)
    request_ids: dict[tuple[str, str], RequestIdRow] = field(default_factory=dict)
    connections: dict[str, Connection] = field(default_factory=dict)
    certificates: dict[str, Certificate] = field(default_factory=dict)
    custom_domains: dict[tuple[str, str], CustomDomain] = field(default_factory=dict)
    jobs: dict[int, JobRow] = field(default_factory=dict)
    outbox: dict[str, OutboxRow] = field(default_factory=dict)
    # (resource ARN, key) -> (account id, value)
    resource_tags: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    # Auto scaling and observability configuration revisions, by config id.
    config_resources: dict[str, ConfigResource] = field(default_factory=dict)
    vpc_connectors: dict[str, VpcConnector] = field(default_factory=dict)
    vpc_ingress_connections: dict[str, VpcIngressConnection] = field(default_factory=dict)


TABLE_NAMES = tuple(Tables.__dataclass_fields__)


class FakeDatabase:
    """The committed state every FakeUnitOfWork of a test shares, and what Postgres does
    beside the tables: sequences, notifications at commit, the outbox relay."""

    def __init__(self, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.tables = Tables()
        # Set: every unit of work fails as Postgres being unreachable does.
        self.down = False
        # Every event committed, in commit order.
        self.events: list[Event] = []
        # Operation ids whose end was notified at commit (WaitOperation's channel).
        self.operations_notified: list[str] = []
        # Job kinds whose enqueue was notified at commit (the workers' channel).
        self.jobs_notified: list[str] = []
        self.commits = 0
        self._job_ids = itertools.count(1)
        self._event_seq = itertools.count(1)
        self._positions = itertools.count(1)
        self._latches: set[asyncio.Event] = set()
        self.relayed = asyncio.Event()
        self.open_units: set[FakeUnitOfWork] = set()

    # ----- sequences (not transactional, as in Postgres) -----

    def next_job_id(self) -> int:
        return next(self._job_ids)

    def next_event_seq(self) -> int:
        return next(self._event_seq)

    # ----- WaitOperation's notifications -----

    def subscribe(self) -> asyncio.Event:
        latch = asyncio.Event()
        self._latches.add(latch)
        return latch

    def unsubscribe(self, latch: asyncio.Event) -> None:
        self._latches.discard(latch)

    def notify_operations(self, operation_ids: list[str]) -> None:
        self.operations_notified += operation_ids
        if operation_ids:
            for latch in self._latches:
                latch.set()

    # ----- the job queue's worker side (engine JobQueue), for driving handlers -----

    def claim(self, kind: str | None = None, owner: str = "worker") -> ClaimedJob | None:
        """Claims the oldest due queued job (of `kind`), as JobQueue.claim does."""
        now = self.clock.now()
        ready = sorted(
            (
                job
                for job in self.tables.jobs.values()
                if job.state == "queued" and job.run_at <= now and kind in (None, job.kind)
            ),
            key=lambda job: (job.run_at, job.job_id),
        )
        if not ready:
            return None
        # Committed rows are replaced, never changed in place: open transactions share them.
        job = self.tables.jobs[ready[0].job_id] = copy.copy(ready[0])
        job.state = "running"
        job.attempts += 1
        job.lease_token = str(uuid.uuid4())
        job.lease_owner = owner
        return ClaimedJob(
            job_id=job.job_id,
            kind=job.kind,
            operation_id=job.operation_id,
            service_id=job.service_id,
            account_id=job.account_id,
            payload=copy.deepcopy(job.payload),
            progress=copy.deepcopy(job.progress),
            attempts=job.attempts,
            max_attempts=job.max_attempts,
            lease_token=job.lease_token,
        )

    def save_progress(self, job_id: int, token: str, changes: dict[str, Any]) -> None:
        job = self._leased(job_id, token)
        job.progress = {**job.progress, **copy.deepcopy(changes)}

    def retry_later(self, job_id: int, token: str, delay_seconds: float, error: str) -> bool:
        try:
            job = self._leased(job_id, token)
        except LeaseLost:
            return False
        job.state, job.last_error = "queued", error
        job.run_at = self.clock.now() + timedelta(seconds=max(delay_seconds, 0.0))
        job.lease_token = job.lease_owner = None
        return True

    def expire_lease(self, job_id: int) -> None:
        """What a rescue of an expired lease does: the job is queued again, its holder
        fenced out."""
        job = self.tables.jobs[job_id] = copy.copy(self.tables.jobs[job_id])
        job.state, job.run_at = "queued", self.clock.now()
        job.lease_token = job.lease_owner = None

    def _leased(self, job_id: int, token: str) -> JobRow:
        job = self.tables.jobs.get(job_id)
        if job is None or job.state != "running" or job.lease_token != token:
            raise LeaseLost(job_id)
        job = self.tables.jobs[job_id] = copy.copy(job)
        return job

    # ----- the outbox relay and the event log -----

    def relay(self) -> int:
        """Gives committed outbox rows their positions, as OutboxRelay does."""
        pending = sorted(
            (row for row in self.tables.outbox.values() if row.position is None),
            key=lambda row: row.seq,
        )
        for row in pending:
            self.tables.outbox[row.event_id] = replace(
                row, position=next(self._positions), delivered_at=self.clock.now()
            )
        if pending:
            self.relayed.set()
        return len(pending)

    def relayed_events(self) -> list[OutboxRow]:
        return sorted(
            (row for row in self.tables.outbox.values() if row.position is not None),
            key=lambda row: row.position or 0,
        )

    # ----- seeding and reading committed state, for tests -----

    def service(self, service_id: str) -> Service:
        """The committed service with its configuration."""
        service = copy.deepcopy(self.tables.services[service_id])
        service.configuration = copy.deepcopy(self.tables.configurations.get(service_id))
        return service

    def operation(self, operation_id: str) -> Operation:
        return copy.deepcopy(self.tables.operations[operation_id])

    def is_locked(self, table: str, key: object) -> bool:
        """Whether an open transaction holds the row's lock."""
        return any((table, key) in uow.held for uow in self.open_units)

    def event_types(self) -> list[str]:
        return [event.type for event in self.events]


class _Repository:
    def __init__(self, uow: FakeUnitOfWork) -> None:
        self._uow = uow

    @property
    def t(self) -> Tables:
        return self._uow.tables

    def now(self) -> datetime:
        return self._uow.tx_now

    def _write(self, table: str, key: Any) -> Any:
        """The row, copied into this transaction on its first write (None if absent)."""
        return self._uow.writable(table, key)

    def _lock(self, table: str, key: object) -> None:
        self._uow.lock(table, key)


def _newest_first(
    rows: Iterable[Any],
    time: Callable[[Any], datetime],
    key: Callable[[Any], str],
    after: Cursor | None,
    limit: int,
) -> list[Any]:
    """Keyset page by (time, key) descending, as _keyset.newest_first."""
    ordered = sorted(rows, key=lambda r: (time(r), key(r)), reverse=True)
    if after is not None:
        ordered = [r for r in ordered if (time(r), key(r)) < after]
    return ordered[:limit]


def _by_name(rows: Iterable[Any], name: Callable[[Any], str], after: str | None, limit: int) -> Any:
    ordered = sorted(rows, key=name)
    if after is not None:
        ordered = [r for r in ordered if name(r) > after]
    return ordered[:limit]


class FakeAccountRepository(_Repository):
    async def lock(self, account_id: str) -> None:
        self.t.accounts.setdefault(account_id, True)
        self._uow.lock("accounts", account_id)


class FakeServiceRepository(_Repository):
    def _row(self, service_id: str) -> Service:
        service = copy.deepcopy(self.t.services[service_id])
        service.configuration = copy.deepcopy(self.t.configurations.get(service_id))
        return service

    def _live(self, account_id: str, region: str) -> list[Service]:
        return [
            s
            for s in self.t.services.values()
            if s.account_id == account_id
            and s.region == region
            and s.status is not ServiceStatus.DELETED
        ]

    async def get(
        self, account_id: str, service_id: str, *, for_update: bool = False
    ) -> Service | None:
        stored = self.t.services.get(service_id)
        if stored is None or stored.account_id != account_id:
            return None
        if for_update:
            self._lock("services", service_id)
        return self._row(service_id)

    async def get_locked_with_ingress(
        self, account_id: str, service_id: str
    ) -> tuple[Service | None, list[VpcIngressConnection]]:
        service = await self.get(account_id, service_id, for_update=True)
        if service is None:
            return None, []
        return service, await FakeVpcRepository(self._uow).live_ingress_for_service(service_id)

    async def live_arn_with_name(self, account_id: str, region: str, name: str) -> str | None:
        return next(
            (s.service_arn for s in self._live(account_id, region) if s.service_name == name),
            None,
        )

    async def count_live(self, account_id: str, region: str) -> int:
        return len(self._live(account_id, region))

    async def list_live(
        self, account_id: str, region: str, after: Cursor | None, limit: int
    ) -> list[Service]:
        page = _newest_first(
            self._live(account_id, region),
            lambda s: s.created_at,
            lambda s: s.service_id,
            after,
            limit,
        )
        return [self._row(s.service_id) for s in page]

    async def add(self, service: Service) -> Service:
        if service.account_id not in self.t.accounts:
            raise FakeIntegrityError(f"no account {service.account_id}")
        if service.service_id in self.t.services:
            raise FakeIntegrityError(f"duplicate service id {service.service_id}")
        if await self.live_arn_with_name(service.account_id, service.region, service.service_name):
            raise FakeIntegrityError(f"duplicate live service name {service.service_name}")
        stored = copy.deepcopy(service)
        stored.configuration = None
        stored.created_at = stored.updated_at = self.now()
        stored.deleted_at = stored.purge_at = None
        self.t.services[service.service_id] = stored
        service.created_at, service.updated_at = stored.created_at, stored.updated_at
        if service.configuration is not None:
            await self.save_configuration(service.service_id, service.configuration)
        return service

    async def save(self, service: Service) -> None:
        stored = self._write("services", service.service_id)
        if stored is None:
            raise FakeIntegrityError(f"no service {service.service_id} to save")
        stored.status = service.status
        stored.status_message = service.status_message
        stored.version += 1
        stored.current_operation_id = service.current_operation_id
        stored.status_before_operation = service.status_before_operation
        stored.connection_arn = service.connection_arn
        stored.updated_at = self.now()
        stored.deleted_at = service.deleted_at
        stored.purge_at = service.purge_at
        service.version, service.updated_at = stored.version, stored.updated_at

    async def mark_deleted(self, service: Service, tombstone_seconds: int) -> None:
        stored = self._write("services", service.service_id)
        if stored is None:
            raise FakeIntegrityError(f"no service {service.service_id} to delete")
        stored.status = ServiceStatus.DELETED
        stored.status_message = ""
        stored.version += 1
        stored.current_operation_id = None
        stored.status_before_operation = None
        stored.connection_arn = None
        stored.updated_at = stored.deleted_at = self.now()
        stored.purge_at = self.now() + timedelta(seconds=int(tombstone_seconds))
        service.status = ServiceStatus.DELETED
        service.current_operation_id = None
        service.status_before_operation = None
        service.connection_arn = None
        service.version, service.updated_at = stored.version, stored.updated_at
        service.deleted_at, service.purge_at = stored.deleted_at, stored.purge_at

    async def tombstone(
        self, service: Service, tombstone_seconds: int, certificate_retention_seconds: int
    ) -> ServiceRemoval:
        removed = await self.delete_configuration(service.service_id)
        domains = FakeCustomDomainRepository(self._uow)
        retained = await FakeCertificateRepository(self._uow).retain(
            await domains.remove_all(service.service_id), certificate_retention_seconds
        )
        await FakeTagRepository(self._uow).delete_all(service.service_arn)
        live = await FakeVpcRepository(self._uow).live_ingress_for_service(service.service_id)
        await self.mark_deleted(service, tombstone_seconds)
        return ServiceRemoval(removed, retained, bool(live))

    async def save_configuration(self, service_id: str, config: ServiceConfiguration) -> None:
        if service_id not in self.t.services:
            raise FakeIntegrityError(f"no service {service_id} to configure")
        stored = copy.deepcopy(config)
        # As the upsert's column list: the network configuration is kept (VpcRepository
        # writes it).
        previous = self.t.configurations.get(service_id)
        stored.network = copy.deepcopy(previous.network) if previous is not None else None
        self.t.configurations[service_id] = stored

    async def delete_configuration(self, service_id: str) -> list[str]:
        removed: list[str] = []
        if self.t.configurations.pop(service_id, None) is not None:
            removed.append("service_configuration")
        if self.t.compute_instances.pop(service_id, None) is not None:
            removed.append("compute_instance")
        return removed

    async def live_arns_using_connection(self, connection_arn: str) -> list[str]:
        return sorted(
            s.service_arn
            for s in self.t.services.values()
            if s.connection_arn == connection_arn and s.status is not ServiceStatus.DELETED
        )


class FakeOperationRepository(_Repository):
    async def add(self, op: Operation) -> Operation:
        if op.operation_id in self.t.operations:
            raise FakeIntegrityError(f"duplicate operation {op.operation_id}")
        if (
            any(
                o.service_id == op.service_id and o.status.is_active
                for o in self.t.operations.values()
            )
            and op.status.is_active
        ):
            raise FakeIntegrityError(f"service {op.service_id} has an active operation")
        now = self.now()
        self.t.operations[op.operation_id] = Operation(
            operation_id=op.operation_id,
            account_id=op.account_id,
            service_id=op.service_id,
            target_arn=op.target_arn,
            type=op.type,
            status=op.status,
            started_at=now,
            updated_at=now,
            current_step=op.current_step,
        )
        op.started_at, op.updated_at = now, now
        return op

    async def get(
        self, account_id: str, operation_id: str, *, for_update: bool = False
    ) -> Operation | None:
        op = self.t.operations.get(operation_id)
        if op is None or op.account_id != account_id:
            return None
        if for_update:
            self._lock("operations", operation_id)
        return copy.deepcopy(op)

    async def list_for_service(
        self, account_id: str, service_id: str, after: Cursor | None, limit: int
    ) -> list[Operation]:
        mine = [
            o
            for o in self.t.operations.values()
            if o.account_id == account_id and o.service_id == service_id
        ]
        page = _newest_first(mine, lambda o: o.started_at, lambda o: o.operation_id, after, limit)
        return copy.deepcopy(page)

    def _set(self, operation_id: str, **values: Any) -> None:
        op = self._write("operations", operation_id)
        if op is None:
            return  # an UPDATE that matches no row
        for name, value in values.items():
            setattr(op, name, value)
        op.updated_at = self.now()

    async def mark_step(
        self, operation_id: str, step: str, attempt: int, *, durable: bool = True
    ) -> None:
        self._uow.step_marks.append((step, durable))
        self._set(
            operation_id,
            status=OperationStatus.IN_PROGRESS,
            current_step=step,
            attempt=attempt,
            next_attempt_at=None,
        )

    async def note_retry(
        self,
        operation_id: str,
        last_error: str,
        attempt: int,
        retry_in_seconds: float,
        window_left_seconds: float | None = None,
    ) -> None:
        values: dict[str, Any] = {}
        if window_left_seconds is not None:
            values["retry_until"] = self.now() + timedelta(seconds=window_left_seconds)
        self._set(
            operation_id,
            last_error=last_error,
            attempt=attempt,
            next_attempt_at=self.now() + timedelta(seconds=retry_in_seconds),
            **values,
        )

    async def finish(
        self,
        operation_id: str,
        status: OperationStatus,
        attempt: int,
        *,
        error: dict[str, Any] | None = None,
        deletion_report: dict[str, Any] | None = None,
    ) -> None:
        if status.is_active:
            raise ValueError(f"{status} is not a final status")
        values: dict[str, Any] = {
            "status": status,
            "attempt": attempt,
            "ended_at": self.now(),
            "next_attempt_at": None,
            "retry_until": None,
        }
        if status is OperationStatus.SUCCEEDED:
            values.update(current_step="done", last_error="")
        if error is not None:
            values["error"] = copy.deepcopy(error)
        if deletion_report is not None:
            values["deletion_report"] = copy.deepcopy(deletion_report)
        self._set(operation_id, **values)
        self._uow.notify_operation(operation_id)


class FakeRequestIdRepository(_Repository):
    async def claim(
        self, account_id: str, request_id: str, fingerprint: str, result_kind: str, result_id: str
    ) -> tuple[str, str, str] | None:
        key = (account_id, request_id)
        row = self.t.request_ids.get(key)
        if row is not None:
            return (row.fingerprint, row.result_kind, row.result_id)
        self.t.request_ids[key] = RequestIdRow(fingerprint, result_kind, result_id, self.now())
        return None


class FakeTagRepository(_Repository):
    async def for_resource(self, resource_arn: str) -> dict[str, str]:
        return {
            key: value
            for (arn, key), (_, value) in sorted(self.t.resource_tags.items())
            if arn == resource_arn
        }

    async def put(self, account_id: str, resource_arn: str, tags: dict[str, str]) -> None:
        for key, value in tags.items():
            self.t.resource_tags[(resource_arn, key)] = (account_id, value)

    async def remove(self, resource_arn: str, keys: list[str]) -> list[str]:
        return [
            key for key in keys if self.t.resource_tags.pop((resource_arn, key), None) is not None
        ]

    async def delete_all(self, resource_arn: str) -> int:
        doomed = [k for k in self.t.resource_tags if k[0] == resource_arn]
        for key in doomed:
            del self.t.resource_tags[key]
        return len(doomed)


class FakeConnectionRepository(_Repository):
    def _live(self, account_id: str, region: str) -> list[Connection]:
        return [
            c
            for c in self.t.connections.values()
            if c.account_id == account_id
            and _region(c.connection_arn) == region
            and c.status is not ConnectionStatus.DELETED
        ]

    async def get_by_arn(
        self, account_id: str, arn: str, *, for_update: bool = False
    ) -> Connection | None:
        found = next(
            (
                c
                for c in self.t.connections.values()
                if c.account_id == account_id and c.connection_arn == arn
            ),
            None,
        )
        if found is None:
            return None
        if for_update:
            self._lock("connections", found.connection_id)
        return copy.deepcopy(found)

    async def get(self, account_id: str, connection_id: str) -> Connection | None:
        found = self.t.connections.get(connection_id)
        if found is None or found.account_id != account_id:
            return None
        return copy.deepcopy(found)

    async def live_arn_with_name(self, account_id: str, region: str, name: str) -> str | None:
        return next(
            (c.connection_arn for c in self._live(account_id, region) if c.connection_name == name),
            None,
        )

    async def count_live(self, account_id: str, region: str) -> int:
        return len(self._live(account_id, region))

    async def add(self, connection: Connection) -> Connection:
        if connection.account_id not in self.t.accounts:
            raise FakeIntegrityError(f"no account {connection.account_id}")
        if connection.connection_id in self.t.connections or any(
            c.connection_arn == connection.connection_arn for c in self.t.connections.values()
        ):
            raise FakeIntegrityError(f"duplicate connection {connection.connection_arn}")
        if await self.live_arn_with_name(
            connection.account_id, _region(connection.connection_arn), connection.connection_name
        ):
            raise FakeIntegrityError(f"duplicate live connection {connection.connection_name}")
        stored = copy.deepcopy(connection)
        stored.created_at = self.now()
        stored.deleted_at = stored.purge_at = None
        self.t.connections[connection.connection_id] = stored
        connection.created_at = stored.created_at
        return connection

    async def list_page(
        self, account_id: str, region: str, name: str | None, after: Cursor | None, limit: int
    ) -> list[Connection]:
        mine = [
            c
            for c in self.t.connections.values()
            if c.account_id == account_id
            and _region(c.connection_arn) == region
            and (not name or c.connection_name == name)
        ]
        page = _newest_first(mine, lambda c: c.created_at, lambda c: c.connection_id, after, limit)
        return copy.deepcopy(page)

    async def set_status(self, connection: Connection, status: ConnectionStatus) -> None:
        stored = self._write("connections", connection.connection_id)
        if stored is not None:
            stored.status = status
        connection.status = status

    async def mark_deleted(self, connection: Connection, tombstone_seconds: int) -> None:
        stored = self._write("connections", connection.connection_id)
        if stored is None:
            raise FakeIntegrityError(f"no connection {connection.connection_id} to delete")
        stored.status = ConnectionStatus.DELETED
        stored.deleted_at = self.now()
        stored.purge_at = self.now() + timedelta(seconds=int(tombstone_seconds))
        connection.status = ConnectionStatus.DELETED
        connection.deleted_at, connection.purge_at = stored.deleted_at, stored.purge_at


class FakeVpcRepository(_Repository):
    # ----- connectors -----

    def _connector_where(self, match: Callable[[VpcConnector], bool]) -> VpcConnector | None:
        return next((c for c in self.t.vpc_connectors.values() if match(c)), None)

    async def connector_by_arn(
        self, account_id: str, arn: str, *, for_update: bool = False
    ) -> VpcConnector | None:
        found = self._connector_where(lambda c: c.account_id == account_id and c.arn == arn)
        if found is None:
            return None
        if for_update:
            self._lock("vpc_connectors", found.connector_id)
        return copy.deepcopy(found)

    async def connector(self, account_id: str, connector_id: str) -> VpcConnector | None:
        found = self.t.vpc_connectors.get(connector_id)
        if found is None or found.account_id != account_id:
            return None
        return copy.deepcopy(found)

    def _active(self, account_id: str, region: str) -> list[VpcConnector]:
        return [
            c
            for c in self.t.vpc_connectors.values()
            if c.account_id == account_id
            and _region(c.arn) == region
            and c.status is VpcConnectorStatus.ACTIVE
        ]

    async def active_connector_arn_with_name(
        self, account_id: str, region: str, name: str
    ) -> str | None:
        return next((c.arn for c in self._active(account_id, region) if c.name == name), None)

    async def last_connector_revision(self, account_id: str, region: str, name: str) -> int:
        return max(
            (
                c.revision
                for c in self.t.vpc_connectors.values()
                if c.account_id == account_id and _region(c.arn) == region and c.name == name
            ),
            default=0,
        )

    async def count_active_connectors(self, account_id: str, region: str) -> int:
        return len(self._active(account_id, region))

    async def add_connector(self, connector: VpcConnector) -> VpcConnector:
        if connector.account_id not in self.t.accounts:
            raise FakeIntegrityError(f"no account {connector.account_id}")
        if connector.connector_id in self.t.vpc_connectors or any(
            c.arn == connector.arn
            or (c.account_id, _region(c.arn), c.name, c.revision)
            == (connector.account_id, _region(connector.arn), connector.name, connector.revision)
            for c in self.t.vpc_connectors.values()
        ):
            raise FakeIntegrityError(f"duplicate VPC connector {connector.arn}")
        if await self.active_connector_arn_with_name(
            connector.account_id, _region(connector.arn), connector.name
        ):
            raise FakeIntegrityError(f"duplicate active VPC connector {connector.name}")
        stored = copy.deepcopy(connector)
        stored.created_at = self.now()
        stored.deleted_at = stored.purge_at = None
        self.t.vpc_connectors[connector.connector_id] = stored
        connector.created_at = stored.created_at
        return connector

    async def list_connectors(
        self, account_id: str, region: str, after: Cursor | None, limit: int
    ) -> list[VpcConnector]:
        mine = [
            c
            for c in self.t.vpc_connectors.values()
            if c.account_id == account_id and _region(c.arn) == region
        ]
        page = _newest_first(mine, lambda c: c.created_at, lambda c: c.connector_id, after, limit)
        return copy.deepcopy(page)

    async def deactivate_connector(self, connector: VpcConnector, tombstone_seconds: int) -> None:
        stored = self._write("vpc_connectors", connector.connector_id)
        if stored is None:
            raise FakeIntegrityError(f"no VPC connector {connector.connector_id} to delete")
        stored.status = VpcConnectorStatus.INACTIVE
        stored.deleted_at = self.now()
        stored.purge_at = self.now() + timedelta(seconds=int(tombstone_seconds))
        connector.status = VpcConnectorStatus.INACTIVE
        connector.deleted_at, connector.purge_at = stored.deleted_at, stored.purge_at

    async def services_using_connector(self, connector_arn: str) -> list[str]:
        users = []
        for service_id, config in self.t.configurations.items():
            egress = (config.network or {}).get("egress_configuration") or {}
            service = self.t.services.get(service_id)
            if (
                service is not None
                and service.status is not ServiceStatus.DELETED
                and egress.get("egress_type") == "VPC"
                and egress.get("vpc_connector_arn") == connector_arn
            ):
                users.append(service.service_arn)
        return sorted(users)

    # ----- a service's network configuration -----

    async def save_network(self, service_id: str, network: dict[str, Any]) -> None:
        stored = self._write("configurations", service_id)
        if stored is None:
            raise LookupError(f"service {service_id} has no configuration to hold its network")
        stored.network = copy.deepcopy(network)

    # ----- ingress connections -----

    def _ingress_where(
        self, match: Callable[[VpcIngressConnection], bool]
    ) -> VpcIngressConnection | None:
        return next((c for c in self.t.vpc_ingress_connections.values() if match(c)), None)

    async def ingress_by_arn(
        self, account_id: str, arn: str, *, for_update: bool = False
    ) -> VpcIngressConnection | None:
        found = self._ingress_where(lambda c: c.account_id == account_id and c.arn == arn)
        if found is None:
            return None
        if for_update:
            self._lock("vpc_ingress_connections", found.connection_id)
        return copy.deepcopy(found)

    async def ingress(self, account_id: str, connection_id: str) -> VpcIngressConnection | None:
        found = self.t.vpc_ingress_connections.get(connection_id)
        if found is None or found.account_id != account_id:
            return None
        return copy.deepcopy(found)

    def _live_ingress(self) -> list[VpcIngressConnection]:
        return [
            c
            for c in self.t.vpc_ingress_connections.values()
            if c.status is not VpcIngressConnectionStatus.DELETED
        ]

    async def live_ingress_arn_with_name(
        self, account_id: str, region: str, name: str
    ) -> str | None:
        return next(
            (
                c.arn
                for c in self._live_ingress()
                if c.account_id == account_id and _region(c.arn) == region and c.name == name
            ),
            None,
        )

    async def live_ingress_for_service(self, service_id: str) -> list[VpcIngressConnection]:
        return copy.deepcopy(
            sorted(
                (c for c in self._live_ingress() if c.service_id == service_id),
                key=lambda c: c.connection_id,
            )
        )

    async def add_ingress(self, connection: VpcIngressConnection) -> VpcIngressConnection:
        if connection.account_id not in self.t.accounts:
            raise FakeIntegrityError(f"no account {connection.account_id}")
        if connection.service_id not in self.t.services:
            raise FakeIntegrityError(f"no service {connection.service_id}")
        if connection.connection_id in self.t.vpc_ingress_connections or any(
            c.arn == connection.arn for c in self.t.vpc_ingress_connections.values()
        ):
            raise FakeIntegrityError(f"duplicate VPC ingress connection {connection.arn}")
        if await self.live_ingress_arn_with_name(
            connection.account_id, _region(connection.arn), connection.name
        ):
            raise FakeIntegrityError(f"duplicate live VPC ingress connection {connection.name}")
        if await self.live_ingress_for_service(connection.service_id):
            raise FakeIntegrityError(f"service {connection.service_id} has an ingress connection")
        stored = copy.deepcopy(connection)
        stored.created_at = self.now()
        stored.deleted_at = stored.purge_at = None
        self.t.vpc_ingress_connections[connection.connection_id] = stored
        connection.created_at = stored.created_at
        return connection

    async def list_ingress(
        self,
        account_id: str,
        region: str,
        service_arn: str | None,
        vpc_endpoint_id: str | None,
        after: Cursor | None,
        limit: int,
    ) -> list[VpcIngressConnection]:
        mine = [
            c
            for c in self.t.vpc_ingress_connections.values()
            if c.account_id == account_id
            and _region(c.arn) == region
            and (not service_arn or c.service_arn == service_arn)
            and (not vpc_endpoint_id or c.vpc_endpoint_id == vpc_endpoint_id)
        ]
        page = _newest_first(mine, lambda c: c.created_at, lambda c: c.connection_id, after, limit)
        return copy.deepcopy(page)

    async def update_ingress(self, connection: VpcIngressConnection) -> None:
        stored = self._write("vpc_ingress_connections", connection.connection_id)
        if stored is None:
            raise FakeIntegrityError(f"no VPC ingress connection {connection.connection_id}")
        stored.vpc_id = connection.vpc_id
        stored.vpc_endpoint_id = connection.vpc_endpoint_id
        stored.status = connection.status

    async def mark_ingress_deleted(
        self, connection: VpcIngressConnection, tombstone_seconds: int
    ) -> None:
        stored = self._write("vpc_ingress_connections", connection.connection_id)
        if stored is None:
            raise FakeIntegrityError(f"no VPC ingress connection {connection.connection_id}")
        stored.status = VpcIngressConnectionStatus.DELETED
        stored.deleted_at = self.now()
        stored.purge_at = self.now() + timedelta(seconds=int(tombstone_seconds))
        connection.status = VpcIngressConnectionStatus.DELETED
        connection.deleted_at, connection.purge_at = stored.deleted_at, stored.purge_at

    # ----- retention (the reaper) -----

    async def purge_connector_tombstones(self, batch: int) -> list[VpcConnector]:
        due = sorted(
            (
                c
                for c in self.t.vpc_connectors.values()
                if c.status is VpcConnectorStatus.INACTIVE
                and c.purge_at is not None
                and c.purge_at <= self.now()
            ),
            key=lambda c: c.purge_at or self.now(),
        )[:batch]
        for c in due:
            del self.t.vpc_connectors[c.connector_id]
        return copy.deepcopy(due)

    async def purge_ingress_tombstones(self, batch: int) -> list[VpcIngressConnection]:
        due = sorted(
            (
                c
                for c in self.t.vpc_ingress_connections.values()
                if c.status is VpcIngressConnectionStatus.DELETED
                and c.purge_at is not None
                and c.purge_at <= self.now()
            ),
            key=lambda c: c.purge_at or self.now(),
        )[:batch]
        for c in due:
            del self.t.vpc_ingress_connections[c.connection_id]
        return copy.deepcopy(due)


class FakeCertificateRepository(_Repository):
    async def get(self, certificate_id: str) -> Certificate | None:
        return copy.deepcopy(self.t.certificates.get(certificate_id))

    async def get_for_domain(
        self, account_id: str, region: str, domain_name: str, *, for_update: bool = False
    ) -> Certificate | None:
        found = self._for_domain(account_id, region, domain_name)
        if found is None:
            return None
        if for_update:
            self._lock("certificates", found.certificate_id)
        return copy.deepcopy(found)

    def _for_domain(self, account_id: str, region: str, domain_name: str) -> Certificate | None:
        return next(
            (
                c
                for c in self.t.certificates.values()
                if c.account_id == account_id
                and _region(c.certificate_arn) == region
                and c.domain_name == domain_name
            ),
            None,
        )

    async def insert_if_absent(self, cert: Certificate) -> bool:
        if cert.account_id not in self.t.accounts:
            raise FakeIntegrityError(f"no account {cert.account_id}")
        if (
            self._for_domain(cert.account_id, _region(cert.certificate_arn), cert.domain_name)
            is not None
        ):
            return False
        if cert.certificate_id in self.t.certificates:
            raise FakeIntegrityError(f"duplicate certificate {cert.certificate_id}")
        stored = copy.deepcopy(cert)
        stored.created_at = self.now()
        stored.unlinked_at = stored.expires_at = None
        self.t.certificates[cert.certificate_id] = stored
        cert.created_at = stored.created_at
        return True

    async def link(
        self,
        cert: Certificate,
        service_id: str,
        service_arn: str,
        status: CertificateStatus,
        records: list[dict[str, str]],
    ) -> None:
        stored = self._write("certificates", cert.certificate_id)
        if stored is not None:
            stored.service_id, stored.service_arn = service_id, service_arn
            stored.status, stored.validation_records = status, copy.deepcopy(records)
            stored.unlinked_at = stored.expires_at = None
        cert.service_id, cert.service_arn = service_id, service_arn
        cert.status, cert.validation_records = status, records
        cert.unlinked_at = cert.expires_at = None

    async def retain(self, certificate_ids: list[str], retention_seconds: int) -> list[Certificate]:
        retained: list[Certificate] = []
        for certificate_id in dict.fromkeys(certificate_ids):
            stored = self._write("certificates", certificate_id)
            if stored is None:
                continue
            stored.service_id = stored.service_arn = None
            stored.unlinked_at = self.now()
            stored.expires_at = self.now() + timedelta(seconds=int(retention_seconds))
            retained.append(copy.deepcopy(stored))
        return sorted(retained, key=lambda c: c.domain_name)

    async def set_validation(
        self, certificate_id: str, status: CertificateStatus, records: list[dict[str, str]]
    ) -> None:
        stored = self._write("certificates", certificate_id)
        if stored is not None:
            stored.status, stored.validation_records = status, copy.deepcopy(records)

    async def purge_if_expired(self, certificate_id: str) -> Certificate | None:
        stored = self.t.certificates.get(certificate_id)
        if stored is None or not _certificate_expired(self.t, stored, self.now()):
            return None
        del self.t.certificates[certificate_id]
        return copy.deepcopy(stored)

    async def list_page(
        self, account_id: str, region: str, domain_name: str | None, after: str | None, limit: int
    ) -> list[Certificate]:
        mine = [
            c
            for c in self.t.certificates.values()
            if c.account_id == account_id
            and _region(c.certificate_arn) == region
            and (not domain_name or c.domain_name == domain_name)
        ]
        return copy.deepcopy(_by_name(mine, lambda c: c.domain_name, after, limit))


def _certificate_expired(t: Tables, cert: Certificate, now: datetime) -> bool:
    """ttl.PURGE_EXPIRED_CERTIFICATES' rule: expiry inclusive, unlinked, unreferenced."""
    return (
        cert.expires_at is not None
        and cert.expires_at <= now
        and cert.service_id is None
        and not any(d.certificate_id == cert.certificate_id for d in t.custom_domains.values())
    )


class FakeCustomDomainRepository(_Repository):
    def _joined(self, domain: CustomDomain) -> CustomDomain:
        """The association with its certificate record's validation records (the join)."""
        shown = copy.deepcopy(domain)
        shown.validation_records = copy.deepcopy(
            self.t.certificates[domain.certificate_id].validation_records
        )
        return shown

    def _of(self, service_id: str) -> list[CustomDomain]:
        return [d for d in self.t.custom_domains.values() if d.service_id == service_id]

    async def for_service(self, service_id: str) -> list[CustomDomain]:
        return [self._joined(d) for d in sorted(self._of(service_id), key=lambda d: d.domain_name)]

    async def get(self, service_id: str, domain_name: str) -> CustomDomain | None:
        found = self.t.custom_domains.get((service_id, domain_name))
        return self._joined(found) if found is not None else None

    async def page_for_service(
        self, service_id: str, after: str | None, limit: int
    ) -> list[CustomDomain]:
        page = _by_name(self._of(service_id), lambda d: d.domain_name, after, limit)
        return [self._joined(d) for d in page]

    async def count_for_service(self, service_id: str) -> int:
        return len(self._of(service_id))

    async def add(self, domain: CustomDomain) -> CustomDomain:
        key = (domain.service_id, domain.domain_name)
        if key in self.t.custom_domains:
            raise FakeIntegrityError(f"duplicate association {key}")
        if domain.service_id not in self.t.services:
            raise FakeIntegrityError(f"no service {domain.service_id}")
        if domain.certificate_id not in self.t.certificates:
            raise FakeIntegrityError(f"no certificate {domain.certificate_id}")
        stored = copy.deepcopy(domain)
        stored.validation_records = []  # not a column: read through the certificate
        stored.created_at = self.now()
        self.t.custom_domains[key] = stored
        domain.created_at = stored.created_at
        return domain

    async def set_status(
        self, service_id: str, domain_name: str, status: CustomDomainStatus
    ) -> None:
        stored = self._write("custom_domains", (service_id, domain_name))
        if stored is not None:
            stored.status = status

    async def remove(self, service_id: str, domain_name: str) -> str | None:
        removed = self.t.custom_domains.pop((service_id, domain_name), None)
        return removed.certificate_id if removed is not None else None

    async def remove_all(self, service_id: str) -> list[str]:
        keys = [k for k, d in self.t.custom_domains.items() if d.service_id == service_id]
        return [self.t.custom_domains.pop(k).certificate_id for k in keys]

    async def awaiting_validation(
        self, account_id: str | None, after: tuple[datetime, str, str] | None, limit: int
    ) -> list[tuple[CustomDomain, Certificate]]:
        waiting = [
            d
            for d in self.t.custom_domains.values()
            if d.status is CustomDomainStatus.PENDING_CERTIFICATE_DNS_VALIDATION
            and (
                account_id is None or self.t.certificates[d.certificate_id].account_id == account_id
            )
        ]

        def position(d: CustomDomain) -> tuple[datetime, str, str]:
            return (d.created_at, d.service_id, d.domain_name)

        ordered = sorted(waiting, key=position)
        if after is not None:
            ordered = [d for d in ordered if position(d) > after]
        return [
            (self._joined(d), copy.deepcopy(self.t.certificates[d.certificate_id]))
            for d in ordered[:limit]
        ]

    async def binding(
        self, account_id: str | None, limit: int
    ) -> list[tuple[CustomDomain, Certificate]]:
        found = sorted(
            (
                d
                for d in self.t.custom_domains.values()
                if d.status is CustomDomainStatus.BINDING_CERTIFICATE
                and (
                    account_id is None
                    or self.t.certificates[d.certificate_id].account_id == account_id
                )
            ),
            key=lambda d: (d.created_at, d.service_id, d.domain_name),
        )
        return [
            (self._joined(d), copy.deepcopy(self.t.certificates[d.certificate_id]))
            for d in found[:limit]
        ]


class FakeJobRepository(_Repository):
    async def enqueue(
        self,
        *,
        kind: str,
        payload: dict[str, Any],
        max_attempts: int,
        operation_id: str | None = None,
        service_id: str | None = None,
        account_id: str | None = None,
        progress: dict[str, Any] | None = None,
    ) -> int:
        if operation_id is not None and any(
            j.operation_id == operation_id for j in self.t.jobs.values()
        ):
            raise FakeIntegrityError(f"operation {operation_id} has a job already")
        job_id = self._uow.db.next_job_id()
        self.t.jobs[job_id] = JobRow(
            job_id=job_id,
            kind=kind,
            operation_id=operation_id,
            service_id=service_id,
            account_id=account_id,
            payload=copy.deepcopy(payload),
            progress=copy.deepcopy(progress or {}),
            max_attempts=max_attempts,
            run_at=self.now(),
        )
        self._uow.notify_job(kind)
        return job_id

    async def take_failed_progress(self, kind: str, service_id: str) -> dict[str, Any] | None:
        taken = [
            j
            for j in self.t.jobs.values()
            if j.kind == kind and j.service_id == service_id and j.state == "failed"
        ]
        for job in taken:
            del self.t.jobs[job.job_id]
        if not taken:
            return None
        return dict(max(taken, key=lambda j: j.job_id).progress)

    def _leased(self, job_id: int, lease_token: str) -> JobRow:
        job = self.t.jobs.get(job_id)
        if job is None or job.state != "running" or job.lease_token != lease_token:
            raise LeaseLost(job_id)
        return job

    async def complete(self, job_id: int, lease_token: str) -> None:
        self._leased(job_id, lease_token)
        del self.t.jobs[job_id]

    async def mark_failed(self, job_id: int, lease_token: str, error: str) -> None:
        self._leased(job_id, lease_token)
        job = self._write("jobs", job_id)
        job.state, job.last_error = "failed", error
        job.lease_token = job.lease_owner = None


class FakeRetentionRepository(_Repository):
    def _older(self, when: datetime | None, seconds: float) -> bool:
        return when is not None and when < self.now() - timedelta(seconds=seconds)

    async def purge_expired_certificates(self, batch: int) -> list[PurgedCertificate]:
        doomed = sorted(
            (
                c
                for c in self.t.certificates.values()
                if _certificate_expired(self.t, c, self.now())
            ),
            key=lambda c: c.expires_at or self.now(),
        )[:batch]
        for cert in doomed:
            del self.t.certificates[cert.certificate_id]
        return [PurgedCertificate(c.account_id, c.certificate_arn, c.domain_name) for c in doomed]

    async def purge_connection_tombstones(self, batch: int) -> list[PurgedConnection]:
        doomed = sorted(
            (
                c
                for c in self.t.connections.values()
                if c.status is ConnectionStatus.DELETED
                and c.purge_at is not None
                and c.purge_at <= self.now()
            ),
            key=lambda c: c.purge_at or self.now(),
        )[:batch]
        for c in doomed:
            del self.t.connections[c.connection_id]
        return [PurgedConnection(c.account_id, c.connection_arn, c.connection_name) for c in doomed]

    async def purge_service_tombstones(self, batch: int) -> PurgedServices:
        doomed = sorted(
            (
                s
                for s in self.t.services.values()
                if s.status is ServiceStatus.DELETED
                and s.purge_at is not None
                and s.purge_at <= self.now()
            ),
            key=lambda s: s.purge_at or self.now(),
        )[:batch]
        ids = {s.service_id for s in doomed}
        for service_id in ids:
            del self.t.services[service_id]
            # ON DELETE CASCADE
            self.t.configurations.pop(service_id, None)
            self.t.compute_instances.pop(service_id, None)
            for key in [k for k in self.t.custom_domains if k[0] == service_id]:
                del self.t.custom_domains[key]
            for ingress_id in [
                k for k, c in self.t.vpc_ingress_connections.items() if c.service_id == service_id
            ]:
                del self.t.vpc_ingress_connections[ingress_id]
        operations = [o for o, op in self.t.operations.items() if op.service_id in ids]
        for operation_id in operations:
            del self.t.operations[operation_id]
        jobs = [
            j for j, job in self.t.jobs.items() if job.service_id in ids and job.state == "failed"
        ]
        for job_id in jobs:
            del self.t.jobs[job_id]
        purged = [
            PurgedService(s.account_id, s.service_arn, s.service_name, s.service_id) for s in doomed
        ]
        return PurgedServices(purged, len(operations), len(jobs))

    async def purge_ended_operations(self, older_than_seconds: float, batch: int) -> int:
        doomed = sorted(
            (o for o in self.t.operations.values() if self._older(o.ended_at, older_than_seconds)),
            key=lambda o: o.ended_at or self.now(),
        )[:batch]
        for op in doomed:
            del self.t.operations[op.operation_id]
        return len(doomed)

    async def purge_request_ids(self, older_than_seconds: float, batch: int) -> int:
        doomed = sorted(
            (
                key
                for key, row in self.t.request_ids.items()
                if self._older(row.created_at, older_than_seconds)
            ),
            key=lambda key: self.t.request_ids[key].created_at,
        )[:batch]
        for key in doomed:
            del self.t.request_ids[key]
        return len(doomed)

    async def purge_orphaned_failed_jobs(self, batch: int) -> int:
        doomed = sorted(
            j.job_id
            for j in self.t.jobs.values()
            if j.state == "failed"
            and j.service_id is not None
            and j.service_id not in self.t.services
        )[:batch]
        for job_id in doomed:
            del self.t.jobs[job_id]
        return len(doomed)

    async def prune_delivered_events(self, older_than_seconds: float, batch: int) -> int:
        doomed = sorted(
            (
                row
                for row in self.t.outbox.values()
                if row.position is not None and self._older(row.delivered_at, older_than_seconds)
            ),
            key=lambda row: row.position or 0,
        )[:batch]
        for row in doomed:
            del self.t.outbox[row.event_id]
        return len(doomed)


class FakeConfigResourceRepository(_Repository):
    """Rows are stored without their derived fields; every read derives `latest` and
    `has_associated_service` as the Postgres adapter's SQL does."""

    def _live_references(self) -> list[ServiceConfiguration]:
        return [
            config
            for service_id, config in self.t.configurations.items()
            if service_id in self.t.services
            and self.t.services[service_id].status is not ServiceStatus.DELETED
        ]

    def _read(self, stored: ConfigResource) -> ConfigResource:
        config = copy.deepcopy(stored)
        active = [
            c.revision
            for c in self.t.config_resources.values()
            if (c.account_id, _region(c.arn), c.kind, c.name)
            == (stored.account_id, _region(stored.arn), stored.kind, stored.name)
            and c.status is ConfigStatus.ACTIVE
        ]
        config.latest = stored.status is ConfigStatus.ACTIVE and stored.revision == max(active)
        config.has_associated_service = any(
            stored.arn in (c.auto_scaling_configuration_arn, c.observability_configuration_arn)
            for c in self._live_references()
        )
        return config

    def _of(self, account_id: str, region: str, kind: ConfigKind) -> list[ConfigResource]:
        return [
            c
            for c in self.t.config_resources.values()
            if c.account_id == account_id and _region(c.arn) == region and c.kind is kind
        ]

    async def ensure_default(self, default: ConfigResource) -> None:
        if default.config_id not in self.t.config_resources:
            await self.add(copy.deepcopy(default))

    async def get(
        self, account_id: str, kind: ConfigKind, config_id: str, *, for_update: bool = False
    ) -> ConfigResource | None:
        found = self.t.config_resources.get(config_id)
        if found is None or found.account_id != account_id or found.kind is not kind:
            return None
        if for_update:
            self._lock("config_resources", config_id)
        return self._read(found)

    async def active_revisions(
        self,
        account_id: str,
        region: str,
        kind: ConfigKind,
        name: str,
        *,
        for_update: bool = False,
    ) -> list[ConfigResource]:
        found = sorted(
            (
                c
                for c in self._of(account_id, region, kind)
                if c.name == name and c.status is ConfigStatus.ACTIVE
            ),
            key=lambda c: c.revision,
        )
        for c in found if for_update else []:
            self._lock("config_resources", c.config_id)
        return [self._read(c) for c in found]

    async def count_active_names(self, account_id: str, region: str, kind: ConfigKind) -> int:
        return len(
            {c.name for c in self._of(account_id, region, kind) if c.status is ConfigStatus.ACTIVE}
        )

    async def get_default(
        self, account_id: str, region: str, kind: ConfigKind, *, for_update: bool = False
    ) -> ConfigResource | None:
        found = next((c for c in self._of(account_id, region, kind) if c.is_default), None)
        if found is None:
            return None
        if for_update:
            self._lock("config_resources", found.config_id)
        return self._read(found)

    async def add(self, config: ConfigResource) -> ConfigResource:
        if config.config_id in self.t.config_resources or any(
            c.arn == config.arn for c in self.t.config_resources.values()
        ):
            raise FakeIntegrityError(f"duplicate configuration {config.arn}")
        mine = self._of(config.account_id, _region(config.arn), config.kind)
        if config.status is ConfigStatus.ACTIVE and any(
            c.name == config.name
            and c.revision == config.revision
            and c.status is ConfigStatus.ACTIVE
            for c in mine
        ):
            raise FakeIntegrityError(f"duplicate active revision {config.name}/{config.revision}")
        if config.is_default and any(c.is_default for c in mine):
            raise FakeIntegrityError(f"a second default for account {config.account_id}")
        stored = copy.deepcopy(config)
        stored.created_at = self.now()
        stored.latest = stored.has_associated_service = False
        stored.deleted_at = None
        self.t.config_resources[config.config_id] = stored
        config.created_at = stored.created_at
        return config

    async def mark_inactive(self, config: ConfigResource) -> None:
        stored = self._write("config_resources", config.config_id)
        if stored is None:
            raise FakeIntegrityError(f"no configuration {config.config_id}")
        stored.status = ConfigStatus.INACTIVE
        stored.is_default = False
        stored.deleted_at = self.now()
        config.status, config.is_default, config.latest = ConfigStatus.INACTIVE, False, False
        config.deleted_at = stored.deleted_at

    async def set_default(
        self, account_id: str, region: str, kind: ConfigKind, config: ConfigResource
    ) -> None:
        for other in self._of(account_id, region, kind):
            if other.is_default:
                self._write("config_resources", other.config_id).is_default = False
        self._write("config_resources", config.config_id).is_default = True
        config.is_default = True

    async def list_page(
        self,
        account_id: str,
        region: str,
        kind: ConfigKind,
        name: str | None,
        latest_only: bool,
        after: ConfigPosition | None,
        limit: int,
    ) -> list[ConfigResource]:
        rows = [
            self._read(c)
            for c in self._of(account_id, region, kind)
            if c.status is ConfigStatus.ACTIVE
            and (not name or c.name == name)
            and (after is None or (c.name, c.revision) > after)
        ]
        rows = [c for c in rows if c.latest or not latest_only]
        return sorted(rows, key=lambda c: (c.name, c.revision))[:limit]

    async def services_using(
        self, account_id: str, arn: str, after: str | None, limit: int
    ) -> list[str]:
        arns = sorted(
            self.t.services[service_id].service_arn
            for service_id, config in self.t.configurations.items()
            if service_id in self.t.services
            and self.t.services[service_id].account_id == account_id
            and self.t.services[service_id].status is not ServiceStatus.DELETED
            and arn
            in (config.auto_scaling_configuration_arn, config.observability_configuration_arn)
        )
        return [a for a in arns if after is None or a > after][:limit]

    async def in_use(self, arns: list[str]) -> bool:
        wanted = set(arns)
        if any(
            {c.auto_scaling_configuration_arn, c.observability_configuration_arn} & wanted
            for c in self._live_references()
        ):
            return True
        return any(
            j.kind == "update_service"
            and j.state in ("queued", "running")
            and {
                j.payload.get("auto_scaling_configuration_arn"),
                j.payload.get("observability_configuration_arn"),
            }
            & wanted
            for j in self.t.jobs.values()
        )


class FakeUnitOfWork:
    """`async with uow: ...; await uow.commit()`. Works on a copy of the committed tables;
    commit writes back the rows it changed (and its events, and delivers its
    notifications); leaving without commit drops everything."""

    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.committed = False
        # The events this unit of work committed, in order.
        self.events: list[Event] = []
        # (table, key) of every row read for update, in order; and those whose lock the
        # open transaction holds (until it commits or ends).
        self.locks: list[tuple[str, object]] = []
        self.held: set[tuple[str, object]] = set()
        # (step, durable) of every operation step this unit of work marked, in order.
        self.step_marks: list[tuple[str, bool]] = []
        self._pending: list[Event] = []
        self._notify_operations: list[str] = []
        self._notify_jobs: list[str] = []
        self._tables: Tables | None = None
        self._base: Tables | None = None
        self.tx_now = db.clock.now()
        self._accounts = FakeAccountRepository(self)
        self._services = FakeServiceRepository(self)
        self._operations = FakeOperationRepository(self)
        self._request_ids = FakeRequestIdRepository(self)
        self._connections = FakeConnectionRepository(self)
        self._custom_domains = FakeCustomDomainRepository(self)
        self._certificates = FakeCertificateRepository(self)
        self._jobs = FakeJobRepository(self)
        self._retention = FakeRetentionRepository(self)
        self._tags = FakeTagRepository(self)
        self._config_resources = FakeConfigResourceRepository(self)
        self._vpc = FakeVpcRepository(self)

    @property
    def tables(self) -> Tables:
        if self._tables is None:
            raise RuntimeError("the unit of work is not entered")
        if self.db.down:
            raise BackendUnavailable("database unavailable")
        return self._tables

    @property
    def accounts(self) -> FakeAccountRepository:
        return self._accounts

    @property
    def services(self) -> FakeServiceRepository:
        return self._services

    @property
    def operations(self) -> FakeOperationRepository:
        return self._operations

    @property
    def request_ids(self) -> FakeRequestIdRepository:
        return self._request_ids

    @property
    def connections(self) -> FakeConnectionRepository:
        return self._connections

    @property
    def custom_domains(self) -> FakeCustomDomainRepository:
        return self._custom_domains

    @property
    def certificates(self) -> FakeCertificateRepository:
        return self._certificates

    @property
    def jobs(self) -> FakeJobRepository:
        return self._jobs

    @property
    def retention(self) -> FakeRetentionRepository:
        return self._retention

    @property
    def tags(self) -> FakeTagRepository:
        return self._tags

    @property
    def config_resources(self) -> FakeConfigResourceRepository:
        return self._config_resources

    @property
    def vpc(self) -> FakeVpcRepository:
        return self._vpc

    def _begin(self) -> None:
        # Copy on write: the transaction's tables share the committed rows until it
        # writes one (writable()), so commit finds its changes by identity.
        committed = self.db.tables
        self._base = Tables(**{n: dict(getattr(committed, n)) for n in TABLE_NAMES})
        self._tables = Tables(**{n: dict(getattr(committed, n)) for n in TABLE_NAMES})
        self._copied: set[tuple[str, Any]] = set()
        self.held = set()
        self.db.open_units.add(self)
        self.tx_now = self.db.clock.now()
        self._pending, self._notify_operations, self._notify_jobs = [], [], []

    async def __aenter__(self) -> FakeUnitOfWork:
        if self.db.down:
            raise BackendUnavailable("database unavailable")
        self._begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._tables = self._base = None
        self._pending = []
        self.held = set()
        self.db.open_units.discard(self)

    def record(self, event: Event) -> None:
        self._pending.append(event)

    async def now(self) -> datetime:
        _ = self.tables  # entered, and the database reachable
        return self.tx_now

    async def flush_events(self) -> None:
        for event in self._pending:
            row = OutboxRow(
                event_id=str(uuid.uuid4()),
                seq=self.db.next_event_seq(),
                event=event,
                occurred_at=self.tx_now,
            )
            self.tables.outbox[row.event_id] = row
        self._pending = []

    def lock(self, table: str, key: object) -> None:
        """SELECT … FOR UPDATE: held until the transaction ends. Recorded, not enforced:
        the fake runs one coroutine at a time."""
        self.locks.append((table, key))
        self.held.add((table, key))

    def writable(self, table: str, key: Any) -> Any:
        rows = getattr(self.tables, table)
        row = rows.get(key)
        if row is not None and (table, key) not in self._copied:
            row = rows[key] = copy.deepcopy(row)
            self._copied.add((table, key))
        return row

    def notify_operation(self, operation_id: str) -> None:
        self._notify_operations.append(operation_id)

    def notify_job(self, kind: str) -> None:
        self._notify_jobs.append(kind)

    async def start_operation(
        self, operation: Operation, job: OperationJob, *, saving: Service | None = None
    ) -> None:
        if saving is not None:
            await self.services.save(saving)
        await self.operations.add(operation)
        await self.jobs.enqueue(
            kind=job.kind,
            payload=job.payload,
            max_attempts=job.max_attempts,
            operation_id=operation.operation_id,
            service_id=operation.service_id,
            account_id=operation.account_id,
            progress=job.progress,
        )

    async def commit(self) -> None:
        if self.db.down:
            raise BackendUnavailable("database unavailable")
        await self.flush_events()
        assert self._base is not None
        mine, base, live = self.tables, self._base, self.db.tables
        for name in TABLE_NAMES:
            before, after, target = getattr(base, name), getattr(mine, name), getattr(live, name)
            for key in before.keys() | after.keys():
                if key not in after:
                    target.pop(key, None)
                elif key not in before or after[key] is not before[key]:
                    target[key] = after[key]
        committed = [
            row.event
            for row in sorted(
                (r for k, r in mine.outbox.items() if k not in base.outbox), key=lambda r: r.seq
            )
        ]
        self.events += committed
        self.db.events += committed
        self.db.jobs_notified += self._notify_jobs
        self.db.notify_operations(self._notify_operations)
        self.db.commits += 1
        self.committed = True
        # As on Postgres, the next statement starts a new transaction.
        self._begin()


class FakeOperationWaiter:
    """OperationWaiter on the fake database: woken by every commit that ends an
    operation."""

    def __init__(self, db: FakeDatabase) -> None:
        self.db = db

    def subscribe(self) -> asyncio.Event:
        return self.db.subscribe()

    def unsubscribe(self, latch: asyncio.Event) -> None:
        self.db.unsubscribe(latch)


class FakeEventFeed:
    """EventFeed on the fake database's relayed outbox rows."""

    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.follows: list[tuple[str, int, str | None]] = []

    async def head(self, account_id: str) -> int:
        positions = [
            row.position or 0
            for row in self.db.relayed_events()
            if row.event.account_id == account_id
        ]
        return max(positions, default=0)

    async def follow(
        self,
        account_id: str,
        after_position: int,
        resource_arn: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> AsyncGenerator[EventRecord, None]:
        self.follows.append((account_id, after_position, resource_arn))
        position = after_position
        while stop is None or not stop.is_set():
            self.db.relayed.clear()
            for row in self.db.relayed_events():
                assert row.position is not None
                event = row.event
                if (
                    row.position <= position
                    or event.account_id != account_id
                    or resource_arn not in (None, event.resource_arn)
                ):
                    continue
                position = row.position
                yield EventRecord(
                    event_id=row.event_id,
                    position=row.position,
                    account_id=event.account_id,
                    resource_arn=event.resource_arn,
                    type=event.type,
                    payload=copy.deepcopy(event.payload),
                    occurred_at=row.occurred_at,
                )
            waits = [asyncio.ensure_future(self.db.relayed.wait())]
            if stop is not None:
                waits.append(asyncio.ensure_future(stop.wait()))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()


class FakeUnitOfWorkFactory:
    """A UnitOfWorkFactory; every unit of work it made is kept in `made` for asserts."""

    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.made: list[FakeUnitOfWork] = []

    def __call__(self) -> FakeUnitOfWork:
        uow = FakeUnitOfWork(self.db)
        self.made.append(uow)
        return uow

    @property
    def committed(self) -> list[FakeUnitOfWork]:
        return [uow for uow in self.made if uow.committed]


class FakeJobContext:
    """JobContext for one claimed attempt, with the engine's fencing: progress and
    completion are refused once the job's lease is no longer this attempt's."""

    def __init__(self, db: FakeDatabase, job: ClaimedJob) -> None:
        self.db = db
        self.job = job
        self.progress: dict[str, Any] = dict(job.progress)
        self.completed = False
        self.transactions: list[FakeUnitOfWork] = []
        # The steps this attempt showed through the context, each with whether its
        # statement's commit was durable (a save's) or not (a marker's).
        self.step_marks: list[tuple[str, bool]] = []
        self._completing: set[int] = set()

    async def save_progress(self, *, at_step: str | None = None, **changes: Any) -> None:
        self.db.save_progress(self.job.job_id, self.job.lease_token, changes)
        self.progress.update(changes)
        if at_step is not None:
            await self._show(at_step, durable=True)

    async def mark_step(self, step: str) -> None:
        self.db._leased(self.job.job_id, self.job.lease_token)  # fenced, as the statement is
        await self._show(step, durable=False)

    async def _show(self, step: str, *, durable: bool) -> None:
        self.step_marks.append((step, durable))
        async with FakeUnitOfWork(self.db) as uow:
            await uow.operations.mark_step(
                str(self.job.operation_id), step, self.job.attempts, durable=durable
            )
            uow.step_marks.clear()
            await uow.commit()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[FakeUnitOfWork]:
        async with FakeUnitOfWork(self.db) as uow:
            self.transactions.append(uow)
            yield uow
            await uow.commit()
        if id(uow) in self._completing:
            self.completed = True

    async def complete(self, uow: UnitOfWork) -> None:
        await uow.jobs.complete(self.job.job_id, self.job.lease_token)
        self._completing.add(id(uow))


@dataclass
class ObjectRecord:
    data: bytes
    written_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def etag(self) -> str:
        return hashlib.md5(self.data).hexdigest()


class FakeObjectStore:
    """ObjectStore in memory, with S3's semantics: lexicographic listings, server-side
    copies, deletes of missing keys succeed. `down` makes every call fail as an
    unreachable store does; `failing` only the methods it names."""

    def __init__(self) -> None:
        self.buckets: dict[str, dict[str, ObjectRecord]] = {}
        # Unfinished multipart uploads: bucket -> keys.
        self.uploads: dict[str, list[str]] = {}
        self.down = False
        # Names of the methods that fail as if the store were down.
        self.failing: set[str] = set()
        self.calls: list[str] = []

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.down or name in self.failing:
            raise ObjectStoreUnavailable("object store unreachable")

    def _bucket(self, bucket: str) -> dict[str, ObjectRecord]:
        """A bucket to write into: writing into a missing one fails."""
        if bucket not in self.buckets:
            raise ObjectStoreError(f"bucket {bucket} does not exist")
        return self.buckets[bucket]

    def _objects(self, bucket: str) -> dict[str, ObjectRecord]:
        """A bucket to read from: a missing one reads as empty."""
        return self.buckets.get(bucket, {})

    def ensure_bucket(self, bucket: str) -> None:
        self._call("ensure_bucket")
        self.buckets.setdefault(bucket, {})
        self.uploads.setdefault(bucket, [])

    def put_object(self, bucket: str, key: str, data: BinaryIO, length: int) -> None:
        self._call("put_object")
        body = data.read(length)
        if len(body) != length:
            raise ValueError(f"stream ended {length - len(body)} bytes short of {length}")
        self._bucket(bucket)[key] = ObjectRecord(body)

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        self._call("put_bytes")
        self._bucket(bucket)[key] = ObjectRecord(bytes(data))

    def get_bytes(self, bucket: str, key: str) -> bytes:
        self._call("get_bytes")
        found = self._objects(bucket).get(key)
        if found is None:
            raise ObjectNotFound(f"{bucket}/{key}")
        return found.data

    def stat_object(self, bucket: str, key: str) -> ObjectInfo | None:
        self._call("stat_object")
        found = self._objects(bucket).get(key)
        return ObjectInfo(key, len(found.data), found.etag) if found else None

    def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> None:
        self._call("copy_object")
        found = self._objects(src_bucket).get(src_key)
        if found is None:
            raise ObjectNotFound(f"{src_bucket}/{src_key}")
        self._bucket(dst_bucket)[dst_key] = ObjectRecord(found.data)

    def compose_object(self, bucket: str, key: str, sources: Sequence[str]) -> None:
        self._call("compose_object")
        objects = self._objects(bucket)
        missing = [source for source in sources if source not in objects]
        if missing:
            raise ObjectNotFound(f"{bucket}/{missing[0]}")
        self._bucket(bucket)[key] = ObjectRecord(b"".join(objects[s].data for s in sources))

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        self._call("list_objects")
        objects = self._objects(bucket)
        # Streamed: keys deleted while the listing runs are skipped, as on S3.
        for key in sorted(k for k in objects if k.startswith(prefix)):
            found = objects.get(key)
            if found is not None:
                yield ObjectInfo(key, len(found.data), found.etag)

    def scan_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        self._call("scan_objects")
        objects = self._objects(bucket)
        for key in [k for k in objects if k.startswith(prefix)]:
            found = objects.get(key)
            if found is not None:
                yield ObjectInfo(key, len(found.data), found.etag)

    def delete_objects(self, bucket: str, keys: Iterable[str]) -> int:
        self._call("delete_objects")
        objects = self._objects(bucket)
        asked = 0
        for key in keys:
            asked += 1
            objects.pop(key, None)
        return asked

    def abort_incomplete_uploads(self, bucket: str, prefix: str) -> int:
        self._call("abort_incomplete_uploads")
        pending = self.uploads.get(bucket, [])
        self.uploads[bucket] = [key for key in pending if not key.startswith(prefix)]
        return len(pending) - len(self.uploads[bucket])

    def reap_stale_uploads(self, bucket: str, prefix: str, before: datetime) -> int:
        self._call("reap_stale_uploads")
        objects = self._objects(bucket)
        groups: dict[str, list[str]] = {}
        for key in objects:
            if key.startswith(prefix):
                groups.setdefault(key[len(prefix) :].split("/", 1)[0], []).append(key)
        removed = 0
        for keys in groups.values():
            if max(objects[key].written_at for key in keys) < before:
                for key in keys:
                    del objects[key]
                removed += len(keys)
        # The fake's unfinished uploads carry no start time: all count as stale.
        removed += len(self.uploads.get(bucket, []))
        self.uploads[bucket] = []
        return removed

    def start_upload(self, bucket: str, key: str) -> None:
        """Leaves an unfinished upload behind, as a writer that died would."""
        self.uploads.setdefault(bucket, []).append(key)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        return sorted(k for k in self.buckets.get(bucket, {}) if k.startswith(prefix))


class FakeCompute:
    """ComputeDriver recording instance states in the fake database, as the recorded
    driver does in Postgres (so a delete's configuration removal finds them). `down`
    makes every call fail transiently."""

    def __init__(self, db: FakeDatabase) -> None:
        self.db = db
        self.down = False
        self.calls: list[tuple[str, str]] = []

    def _call(self, name: str, service_id: str) -> None:
        self.calls.append((name, service_id))
        if self.down:
            raise ComputeError("compute unreachable")

    async def start(self, service_id: str, image_prefix: str | None) -> None:
        self._call("start", service_id)
        self.db.tables.compute_instances[service_id] = "RUNNING"

    async def stop(self, service_id: str) -> None:
        self._call("stop", service_id)
        if self.db.tables.compute_instances.get(service_id) == "RUNNING":
            self.db.tables.compute_instances[service_id] = "STOPPED"

    async def release(self, service_id: str) -> None:
        await self.stop(service_id)

    def state(self, service_id: str) -> str | None:
        return self.db.tables.compute_instances.get(service_id)


class FakeDnsValidator:
    """DnsValidator on a dict of CNAME records; `failing` makes lookups raise."""

    def __init__(self) -> None:
        self.records: dict[str, str] = {}
        self.failing = False
        self.lookups: list[str] = []

    async def check(self, record_name: str, record_value: str) -> bool | None:
        self.lookups.append(record_name)
        if self.failing:
            raise OSError("resolver unreachable")
        found = self.records.get(record_name)
        if found is None:
            return None
        return found == record_value
