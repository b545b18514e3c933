"""One behavioural contract per repository port, run against the in-memory fakes of
tests/unit/fakes.py and against Postgres (adapters/postgres/): what the use cases rely on
(orderings and keyset pages, what each write sets from the database clock, the fenced
job writes, request-id replay, retention purges on both sides of their expiry). A fake
that drifts from Postgres fails here, not silently in the unit tier.

Time moves by `backend.travel(seconds)`: the fake's clock advances; on Postgres every
timestamp is moved back by as much, which is the same thing to a query about now()."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.compute.recorded import RecordedComputeDriver
from servicecontrol_server.adapters.postgres.jobqueue import JobQueue
from servicecontrol_server.adapters.postgres.listen import PgListener, engine_libpq_url
from servicecontrol_server.adapters.postgres.outbox import EventLog, OutboxRelay
from servicecontrol_server.adapters.postgres.repositories import OPERATIONS_CHANNEL
from servicecontrol_server.adapters.postgres.unit_of_work import PostgresUnitOfWork
from servicecontrol_server.application.ports import (
    ClaimedJob,
    ComputeDriver,
    EventFeed,
    EventRecord,
    LeaseLost,
    OperationWaiter,
    UnitOfWork,
)
from servicecontrol_server.domain import names, vpc
from servicecontrol_server.domain.config_resources import (
    ConfigKind,
    ConfigResource,
    ConfigStatus,
    config_arn,
    default_auto_scaling,
)
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
    OperationType,
    ProviderType,
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
from tests.integration import test_objectstore_contract as store_contract
from tests.support.s3 import StoreUnderTest
from tests.unit.fakes import (
    FakeCompute,
    FakeDatabase,
    FakeEventFeed,
    FakeIntegrityError,
    FakeObjectStore,
    FakeOperationWaiter,
    FakeUnitOfWork,
)

ACCOUNT = "111122223333"
OTHER = "444455556666"
REGION = "us-east-1"
DAY = 24 * 3600
PLACEHOLDER = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass
class Backend:
    name: str
    uow: Callable[[], UnitOfWork]
    compute: ComputeDriver
    feed: EventFeed
    integrity_errors: tuple[type[Exception], ...]
    _travel: Callable[[float], Any]
    _claim: Callable[[], Any]
    _relay: Callable[[], Any]
    _jobs: Callable[[], Any]
    _is_locked: Callable[[str, str], Any]
    # An OperationWaiter, ready to be woken, as an async context manager.
    waiter: Callable[[], contextlib.AbstractAsyncContextManager[OperationWaiter]]

    async def travel(self, seconds: float) -> None:
        await self._travel(seconds)

    async def claim(self) -> ClaimedJob:
        job: ClaimedJob | None = await self._claim()
        assert job is not None, "no job to claim"
        return job

    async def relay(self) -> int:
        return int(await self._relay())

    async def jobs(self) -> dict[int, tuple[str, str, dict[str, Any]]]:
        """job id -> (kind, state, progress) of every job."""
        found: dict[int, tuple[str, str, dict[str, Any]]] = await self._jobs()
        return found

    async def is_locked(self, table: str, key: str) -> bool:
        """Whether some open transaction holds the lock of the row with primary key
        `key`."""
        return bool(await self._is_locked(table, key))


def fake_backend() -> Backend:
    db = FakeDatabase()

    async def travel(seconds: float) -> None:
        db.clock.advance(seconds)

    async def claim() -> ClaimedJob | None:
        return db.claim()

    async def relay() -> int:
        return db.relay()

    async def jobs() -> dict[int, tuple[str, str, dict[str, Any]]]:
        return {j.job_id: (j.kind, j.state, dict(j.progress)) for j in db.tables.jobs.values()}

    async def is_locked(table: str, key: str) -> bool:
        return db.is_locked(table, key)

    @contextlib.asynccontextmanager
    async def waiter() -> AsyncIterator[OperationWaiter]:
        yield FakeOperationWaiter(db)

    return Backend(
        "fake",
        lambda: FakeUnitOfWork(db),
        FakeCompute(db),
        FakeEventFeed(db),
        (FakeIntegrityError,),
        travel,
        claim,
        relay,
        jobs,
        is_locked,
        waiter,
    )


def postgres_backend(engine: AsyncEngine) -> Backend:
    queue = JobQueue(engine)
    relay_ = OutboxRelay(engine)

    async def travel(seconds: float) -> None:
        async with engine.begin() as conn:
            columns = (
                await conn.execute(
                    text(
                        "select table_name, column_name from information_schema.columns"
                        " where table_schema = 'public'"
                        " and data_type = 'timestamp with time zone'"
                    )
                )
            ).all()
            for table, column in columns:
                await conn.execute(
                    text(
                        f'update "{table}" set "{column}" = "{column}" - make_interval(secs => :s)'
                    ),
                    {"s": float(seconds)},
                )

    async def claim() -> ClaimedJob | None:
        claimed = await queue.claim("contract", 1, 60.0)
        return claimed[0] if claimed else None

    async def relay() -> int:
        return await relay_.relay_all()

    async def jobs() -> dict[int, tuple[str, str, dict[str, Any]]]:
        async with engine.connect() as conn:
            rows = (
                await conn.execute(text("select job_id, kind, state, progress from jobs"))
            ).all()
        return {r.job_id: (r.kind, r.state, dict(r.progress)) for r in rows}

    async def is_locked(table: str, key: str) -> bool:
        async with engine.connect() as conn:
            pk = (
                await conn.execute(
                    text(
                        "select a.attname from pg_index i join pg_attribute a"
                        " on a.attrelid = i.indrelid and a.attnum = any(i.indkey)"
                        " where i.indrelid = cast(:t as regclass) and i.indisprimary"
                    ),
                    {"t": table},
                )
            ).scalar_one()
            try:
                await conn.execute(
                    text(f'select 1 from "{table}" where "{pk}"::text = :k for update nowait'),
                    {"k": key},
                )
            except DBAPIError as exc:
                if isinstance(exc.orig, psycopg.errors.LockNotAvailable):
                    return True
                raise
            finally:
                await conn.rollback()
        return False

    @contextlib.asynccontextmanager
    async def waiter() -> AsyncIterator[OperationWaiter]:
        async with PgListener(engine_libpq_url(engine), [OPERATIONS_CHANNEL]) as listener:
            await asyncio.wait_for(listener.connected.wait(), 10)
            yield listener

    return Backend(
        "postgres",
        lambda: PostgresUnitOfWork(engine),
        RecordedComputeDriver(engine),
        EventLog(engine, poll_seconds=0.2),
        (IntegrityError,),
        travel,
        claim,
        relay,
        jobs,
        is_locked,
        waiter,
    )


@pytest.fixture(params=["fake", "postgres"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "fake":
        return fake_backend()
    return postgres_backend(request.getfixturevalue("engine"))


# ----- builders -----


def new_service(account: str = ACCOUNT, name: str | None = None, **kw: Any) -> Service:
    service_id = names.new_resource_id()
    name = name or f"svc-{service_id[:8]}"
    values: dict[str, Any] = {
        "service_id": service_id,
        "account_id": account,
        "region": REGION,
        "service_name": name,
        "service_arn": names.service_arn(REGION, account, name, service_id),
        "service_url": f"{names.new_url_label()}.example",
        "status": ServiceStatus.RUNNING,
        "version": 1,
        "created_at": PLACEHOLDER,
        "updated_at": PLACEHOLDER,
        "configuration": ServiceConfiguration(
            source={"image_repository": {"image_identifier": "shop/web:v1"}},
            instance={"cpu": "1 vCPU"},
            health_check={"protocol": "TCP"},
            image_identifier="shop/web:v1",
            image_bucket="images",
            image_prefix=f"services/{service_id}/",
        ),
    }
    values.update(kw)
    return Service(**values)


def new_operation(
    service: Service, op_type: OperationType = OperationType.CREATE_SERVICE
) -> Operation:
    return Operation(
        operation_id=str(uuid.uuid4()),
        account_id=service.account_id,
        service_id=service.service_id,
        target_arn=service.service_arn,
        type=op_type,
        status=OperationStatus.PENDING,
        started_at=PLACEHOLDER,
        updated_at=PLACEHOLDER,
        current_step="queued",
    )


def new_connection(account: str = ACCOUNT, name: str | None = None) -> Connection:
    connection_id = names.new_resource_id()
    name = name or f"conn-{connection_id[:8]}"
    return Connection(
        connection_id=connection_id,
        account_id=account,
        connection_name=name,
        connection_arn=names.connection_arn(REGION, account, name, connection_id),
        provider_type=ProviderType.GITHUB,
        status=ConnectionStatus.PENDING_HANDSHAKE,
        created_at=PLACEHOLDER,
    )


def new_certificate(domain: str, service: Service | None, account: str = ACCOUNT) -> Certificate:
    certificate_id = names.new_resource_id()
    return Certificate(
        certificate_id=certificate_id,
        account_id=account,
        certificate_arn=names.certificate_arn(REGION, account, certificate_id),
        domain_name=domain,
        status=CertificateStatus.PENDING_VALIDATION,
        validation_records=[{"domain": domain, "name": f"_x.{domain}.", "value": "_y."}],
        created_at=PLACEHOLDER,
        service_id=service.service_id if service else None,
        service_arn=service.service_arn if service else None,
    )


def new_domain(service: Service, cert: Certificate, status: CustomDomainStatus) -> CustomDomain:
    return CustomDomain(
        service_id=service.service_id,
        domain_name=cert.domain_name,
        enable_www_subdomain=False,
        status=status,
        certificate_id=cert.certificate_id,
        created_at=PLACEHOLDER,
    )


async def add_services(backend: Backend, *services: Service) -> datetime:
    """Adds the services in one transaction; returns its clock."""
    async with backend.uow() as uow:
        for account in {s.account_id for s in services}:
            await uow.accounts.lock(account)
        for service in services:
            await uow.services.add(service)
        now = await uow.now()
        await uow.commit()
    return now


# ----- services -----


async def test_services_add_get_save(backend: Backend) -> None:
    svc = new_service()
    now = await add_services(backend, svc)
    assert svc.created_at == svc.updated_at == now
    async with backend.uow() as uow:
        got = await uow.services.get(ACCOUNT, svc.service_id)
        locked = await uow.services.get(ACCOUNT, svc.service_id, for_update=True)
        assert await uow.services.get(OTHER, svc.service_id) is None
        assert await uow.services.get(ACCOUNT, names.new_resource_id()) is None
    assert got == locked == svc

    await backend.travel(5)
    async with backend.uow() as uow:
        got = await uow.services.get(ACCOUNT, svc.service_id, for_update=True)
        assert got is not None
        got.start_operation(OperationType.PAUSE_SERVICE, str(uuid.uuid4()))
        # save writes the state, not the configuration.
        assert got.configuration is not None
        got.configuration.instance = {"cpu": "4 vCPU"}
        await uow.services.save(got)
        saved_at = await uow.now()
        await uow.commit()
    assert (got.version, got.updated_at) == (2, saved_at)
    async with backend.uow() as uow:
        again = await uow.services.get(ACCOUNT, svc.service_id)
    assert again is not None
    assert again.status is ServiceStatus.OPERATION_IN_PROGRESS
    assert again.status_before_operation is ServiceStatus.RUNNING
    assert again.current_operation_id == got.current_operation_id
    assert (again.version, again.updated_at) == (2, saved_at)
    # Created before the five seconds the clock moved on (plus the real time spent).
    assert saved_at - again.created_at >= timedelta(seconds=5)
    assert again.configuration == svc.configuration


async def test_services_without_a_configuration(backend: Backend) -> None:
    svc = new_service(configuration=None)
    await add_services(backend, svc)
    async with backend.uow() as uow:
        got = await uow.services.get(ACCOUNT, svc.service_id)
        assert got is not None and got.configuration is None
        config = ServiceConfiguration(source={"a": 1}, instance={}, health_check={})
        await uow.services.save_configuration(svc.service_id, config)
        await uow.services.save_configuration(svc.service_id, config)
        got = await uow.services.get(ACCOUNT, svc.service_id)
        await uow.commit()
    assert got is not None and got.configuration == config


async def test_services_names_counts_and_connections(backend: Backend) -> None:
    connection = "arn:aws:apprunner:us-east-1:111122223333:connection/gh/" + "0" * 32
    a = new_service(name="alpha", connection_arn=connection)
    b = new_service(name="bravo", connection_arn=connection)
    other = new_service(OTHER, name="alpha")
    await add_services(backend, a, b, other)
    async with backend.uow() as uow:
        assert await uow.services.live_arn_with_name(ACCOUNT, REGION, "alpha") == a.service_arn
        assert await uow.services.live_arn_with_name(ACCOUNT, REGION, "charlie") is None
        assert await uow.services.count_live(ACCOUNT, REGION) == 2
        assert await uow.services.live_arns_using_connection(connection) == sorted(
            [a.service_arn, b.service_arn]
        )
        loaded = await uow.services.get(ACCOUNT, a.service_id, for_update=True)
        assert loaded is not None
        await uow.services.mark_deleted(loaded, 3600)
        now = await uow.now()
        await uow.commit()
    assert loaded.status is ServiceStatus.DELETED
    assert loaded.connection_arn is None
    assert loaded.version == 2
    assert (loaded.deleted_at, loaded.updated_at) == (now, now)
    assert loaded.purge_at == now + timedelta(seconds=3600)
    async with backend.uow() as uow:
        assert await uow.services.live_arn_with_name(ACCOUNT, REGION, "alpha") is None
        assert await uow.services.count_live(ACCOUNT, REGION) == 1
        assert await uow.services.live_arns_using_connection(connection) == [b.service_arn]
        stored = await uow.services.get(ACCOUNT, a.service_id)
        # A deleted name may be taken again.
        await uow.services.add(new_service(name="alpha"))
        await uow.commit()
    assert stored == loaded


async def test_services_a_live_name_is_unique(backend: Backend) -> None:
    await add_services(backend, new_service(name="alpha"))
    with pytest.raises(backend.integrity_errors):
        await add_services(backend, new_service(name="alpha"))


async def test_services_list_live_is_newest_first_in_keyset_pages(backend: Backend) -> None:
    older = [new_service() for _ in range(3)]  # one transaction: one created_at
    await add_services(backend, *older)
    await backend.travel(10)  # ... ten seconds older than what follows
    newer = [new_service() for _ in range(2)]
    await add_services(backend, *newer)
    gone = new_service()
    await add_services(backend, gone, new_service(OTHER))
    async with backend.uow() as uow:
        doomed = await uow.services.get(ACCOUNT, gone.service_id)
        assert doomed is not None
        await uow.services.mark_deleted(doomed, 60)
        await uow.commit()

    expected = sorted(newer, key=lambda s: s.service_id, reverse=True) + sorted(
        older, key=lambda s: s.service_id, reverse=True
    )
    async with backend.uow() as uow:
        everything = await uow.services.list_live(ACCOUNT, REGION, None, 10)
        pages: list[list[Service]] = []
        after = None
        while True:
            page = await uow.services.list_live(ACCOUNT, REGION, after, 2)
            if not page:
                break
            pages.append(page)
            after = (page[-1].created_at, page[-1].service_id)
    assert [s.service_id for s in everything] == [s.service_id for s in expected]
    assert [len(p) for p in pages] == [2, 2, 1]
    assert [s.service_id for p in pages for s in p] == [s.service_id for s in expected]
    # With their configurations.
    configs = {s.service_id: s.configuration for s in older + newer}
    assert all(s.configuration == configs[s.service_id] for s in everything)


async def test_services_delete_configuration_reports_what_it_removed(backend: Backend) -> None:
    with_compute, without = new_service(), new_service()
    await add_services(backend, with_compute, without)
    await backend.compute.start(with_compute.service_id, "services/x/")
    async with backend.uow() as uow:
        assert await uow.services.delete_configuration(with_compute.service_id) == [
            "service_configuration",
            "compute_instance",
        ]
        assert await uow.services.delete_configuration(without.service_id) == [
            "service_configuration"
        ]
        assert await uow.services.delete_configuration(without.service_id) == []
        got = await uow.services.get(ACCOUNT, with_compute.service_id)
        await uow.commit()
    assert got is not None and got.configuration is None


async def test_services_tombstone_removes_what_goes_with_the_service(backend: Backend) -> None:
    svc, other = new_service(), new_service()
    await add_services(backend, svc, other)
    await backend.compute.start(svc.service_id, "services/x/")
    b, a = new_certificate("b.example.com", svc), new_certificate("a.example.com", svc)
    kept = new_certificate("c.example.com", other)
    async with backend.uow() as uow:
        for cert, owner in ((b, svc), (a, svc), (kept, other)):
            await uow.certificates.insert_if_absent(cert)
            await uow.custom_domains.add(new_domain(owner, cert, CustomDomainStatus.ACTIVE))
        await uow.tags.put(ACCOUNT, svc.service_arn, {"team": "web"})
        await uow.tags.put(ACCOUNT, other.service_arn, {"team": "api"})
        await uow.vpc.add_ingress(new_ingress(svc, "in-1"))
        await uow.commit()

    async with backend.uow() as uow:
        locked = await uow.services.get(ACCOUNT, svc.service_id, for_update=True)
        assert locked is not None
        removal = await uow.services.tombstone(locked, 600, 3600)
        now = await uow.now()
        stored = await uow.services.get(ACCOUNT, svc.service_id)
        await uow.commit()
    assert removal.configuration_records == ["service_configuration", "compute_instance"]
    assert [c.domain_name for c in removal.retained_certificates] == [
        "a.example.com",
        "b.example.com",
    ]
    for cert in removal.retained_certificates:
        assert (cert.service_id, cert.service_arn) == (None, None)
        assert (cert.unlinked_at, cert.expires_at) == (now, now + timedelta(seconds=3600))
    assert removal.live_ingress
    # The service object and its row both say DELETED, as mark_deleted leaves them.
    assert stored is not None and stored.configuration is None
    for got in (locked, stored):
        assert got.status is ServiceStatus.DELETED and got.connection_arn is None
        assert got.current_operation_id is None and got.status_before_operation is None
        assert (got.deleted_at, got.purge_at) == (now, now + timedelta(seconds=600))
    assert locked.version == stored.version == svc.version + 1
    async with backend.uow() as uow:
        assert await uow.custom_domains.for_service(svc.service_id) == []
        assert await uow.tags.for_resource(svc.service_arn) == {}
        # Another service's records are untouched.
        assert [d.domain_name for d in await uow.custom_domains.for_service(other.service_id)]
        assert await uow.tags.for_resource(other.service_arn) == {"team": "api"}
        untouched = await uow.certificates.get(kept.certificate_id)
    assert untouched is not None and untouched.service_id == other.service_id

    # Without domains, configuration or ingress connections: nothing else to report.
    bare = new_service()
    await add_services(backend, bare)
    async with backend.uow() as uow:
        await uow.services.delete_configuration(bare.service_id)
        locked = await uow.services.get(ACCOUNT, bare.service_id, for_update=True)
        assert locked is not None
        removal = await uow.services.tombstone(locked, 600, 3600)
        await uow.commit()
    assert (removal.configuration_records, removal.retained_certificates) == ([], [])
    assert not removal.live_ingress


async def test_for_update_locks_the_row_until_the_transaction_ends(backend: Backend) -> None:
    svc = new_service()
    await add_services(backend, svc)
    op = new_operation(svc)
    connection = new_connection()
    cert = new_certificate("a.example.com", svc)
    async with backend.uow() as uow:
        await uow.operations.add(op)
        await uow.connections.add(connection)
        await uow.certificates.insert_if_absent(cert)
        await uow.commit()
    rows = [
        ("services", svc.service_id),
        ("operations", op.operation_id),
        ("connections", connection.connection_id),
        ("certificates", cert.certificate_id),
        ("accounts", ACCOUNT),
    ]

    async def read_all(uow: UnitOfWork, for_update: bool) -> None:
        assert await uow.services.get(ACCOUNT, svc.service_id, for_update=for_update)
        assert await uow.operations.get(ACCOUNT, op.operation_id, for_update=for_update)
        arn = connection.connection_arn
        assert await uow.connections.get_by_arn(ACCOUNT, arn, for_update=for_update)
        domain = cert.domain_name
        assert await uow.certificates.get_for_domain(ACCOUNT, REGION, domain, for_update=for_update)

    async with backend.uow() as uow:
        await read_all(uow, for_update=False)
        assert [await backend.is_locked(*row) for row in rows] == [False] * 5
    async with backend.uow() as uow:
        await read_all(uow, for_update=True)
        await uow.accounts.lock(ACCOUNT)
        assert [await backend.is_locked(*row) for row in rows] == [True] * 5
        await uow.commit()
        # Committing released them.
        assert [await backend.is_locked(*row) for row in rows] == [False] * 5
    async with backend.uow() as uow:
        await read_all(uow, for_update=True)
    # So does leaving without a commit.
    assert [await backend.is_locked(*row) for row in rows] == [False] * 5


# ----- operations -----


async def test_operations_lifecycle(backend: Backend) -> None:
    svc = new_service()
    await add_services(backend, svc)
    op = new_operation(svc)
    async with backend.uow() as uow:
        await uow.operations.add(op)
        now = await uow.now()
        await uow.commit()
    assert op.started_at == op.updated_at == now
    async with backend.uow() as uow:
        got = await uow.operations.get(ACCOUNT, op.operation_id)
        assert await uow.operations.get(ACCOUNT, op.operation_id, for_update=True) == got
        assert await uow.operations.get(OTHER, op.operation_id) is None
    assert got == op

    await backend.travel(1)
    async with backend.uow() as uow:
        await uow.operations.mark_step(op.operation_id, "copy_image", 1)
        stepped = await uow.operations.get(ACCOUNT, op.operation_id)
        step_at = await uow.now()
        await uow.operations.note_retry(op.operation_id, "X: broke", 1, 2.5)
        retried = await uow.operations.get(ACCOUNT, op.operation_id)
        await uow.commit()
    assert stepped is not None and retried is not None
    assert (stepped.status, stepped.current_step, stepped.attempt) == (
        OperationStatus.IN_PROGRESS,
        "copy_image",
        1,
    )
    assert stepped.updated_at == step_at and stepped.next_attempt_at is None
    assert retried.last_error == "X: broke"
    assert retried.next_attempt_at == step_at + timedelta(seconds=2.5)
    assert retried.status is OperationStatus.IN_PROGRESS

    async with backend.uow() as uow:
        await uow.operations.mark_step(op.operation_id, "start_compute", 2)
        with pytest.raises(ValueError):
            await uow.operations.finish(op.operation_id, OperationStatus.IN_PROGRESS, 2)
        await uow.operations.finish(
            op.operation_id, OperationStatus.SUCCEEDED, 2, deletion_report={"image_objects": 3}
        )
        end = await uow.now()
        await uow.commit()
    async with backend.uow() as uow:
        done = await uow.operations.get(ACCOUNT, op.operation_id)
    assert done is not None
    assert (done.status, done.current_step, done.attempt, done.last_error) == (
        OperationStatus.SUCCEEDED,
        "done",
        2,
        "",
    )
    assert (done.ended_at, done.next_attempt_at, done.error) == (end, None, None)
    assert done.deletion_report == {"image_objects": 3}


async def test_operations_a_failure_keeps_its_step_and_error(backend: Backend) -> None:
    svc = new_service()
    await add_services(backend, svc)
    op = new_operation(svc)
    error = {"reason": "R", "message": "m", "metadata": {"attempts": "3"}}
    async with backend.uow() as uow:
        await uow.operations.add(op)
        await uow.operations.mark_step(op.operation_id, "deploy", 3)
        await uow.operations.note_retry(op.operation_id, "R: m", 3, 1.0)
        await uow.operations.finish(
            op.operation_id, OperationStatus.ROLLBACK_SUCCEEDED, 3, error=error
        )
        got = await uow.operations.get(ACCOUNT, op.operation_id)
        await uow.commit()
    assert got is not None
    assert (got.status, got.current_step, got.last_error, got.error) == (
        OperationStatus.ROLLBACK_SUCCEEDED,
        "deploy",
        "R: m",
        error,
    )
    assert got.next_attempt_at is None and got.deletion_report is None


async def test_operations_finish_wakes_waiters_at_commit(backend: Backend) -> None:
    svc = new_service()
    await add_services(backend, svc)
    op = new_operation(svc)
    async with backend.uow() as uow:
        await uow.operations.add(op)
        await uow.commit()
    async with backend.waiter() as waiter:
        latch = waiter.subscribe()
        latch.clear()
        try:
            async with backend.uow() as uow:
                await uow.operations.finish(op.operation_id, OperationStatus.SUCCEEDED, 1)
                await asyncio.sleep(0)
                assert not latch.is_set()
                await uow.commit()
            await asyncio.wait_for(latch.wait(), 10)
        finally:
            waiter.unsubscribe(latch)


async def test_operations_one_active_per_service(backend: Backend) -> None:
    svc = new_service()
    await add_services(backend, svc)
    async with backend.uow() as uow:
        await uow.operations.add(new_operation(svc))
        await uow.commit()
    with pytest.raises(backend.integrity_errors):
        async with backend.uow() as uow:
            await uow.operations.add(new_operation(svc, OperationType.PAUSE_SERVICE))
            await uow.commit()


async def test_operations_list_newest_first_in_keyset_pages(backend: Backend) -> None:
    svc, other = new_service(), new_service()
    await add_services(backend, svc, other)
    made: list[Operation] = []
    for i in range(3):
        async with backend.uow() as uow:
            op = new_operation(svc, OperationType.PAUSE_SERVICE)
            await uow.operations.add(op)
            await uow.operations.finish(op.operation_id, OperationStatus.SUCCEEDED, 1)
            if i == 2:
                await uow.operations.add(new_operation(other))
            await uow.commit()
        made.append(op)
        await backend.travel(1)
    async with backend.uow() as uow:
        first = await uow.operations.list_for_service(ACCOUNT, svc.service_id, None, 2)
        cursor = (first[-1].started_at, first[-1].operation_id)
        rest = await uow.operations.list_for_service(ACCOUNT, svc.service_id, cursor, 2)
        assert await uow.operations.list_for_service(OTHER, svc.service_id, None, 5) == []
    assert [o.operation_id for o in first + rest] == [o.operation_id for o in reversed(made)]


# ----- request ids -----


async def test_request_ids_claim_replays_the_first_call(backend: Backend) -> None:
    async with backend.uow() as uow:
        assert await uow.request_ids.claim(ACCOUNT, "r1", "fp", "operation", "op-1") is None
        assert await uow.request_ids.claim(ACCOUNT, "r1", "other", "operation", "op-2") == (
            "fp",
            "operation",
            "op-1",
        )
        assert await uow.request_ids.claim(OTHER, "r1", "fp2", "connection", "c-1") is None
        await uow.commit()
    async with backend.uow() as uow:
        assert await uow.request_ids.claim(ACCOUNT, "r1", "x", "y", "z") == (
            "fp",
            "operation",
            "op-1",
        )
    # Rolled back with its transaction: the key is free again.
    async with backend.uow() as uow:
        assert await uow.request_ids.claim(ACCOUNT, "r2", "fp", "k", "1") is None
    async with backend.uow() as uow:
        assert await uow.request_ids.claim(ACCOUNT, "r2", "fp", "k", "2") is None


# ----- tags -----


async def test_tags_put_replace_remove_and_delete_all(backend: Backend) -> None:
    arn = f"arn:aws:apprunner:{REGION}:{ACCOUNT}:service/web/{'a' * 32}"
    other = f"arn:aws:apprunner:{REGION}:{ACCOUNT}:service/api/{'b' * 32}"
    async with backend.uow() as uow:
        await uow.tags.put(ACCOUNT, arn, {"team": "web", "env": "prod"})
        await uow.tags.put(ACCOUNT, other, {"team": "api"})
        await uow.tags.put(ACCOUNT, arn, {"team": "platform"})
        await uow.commit()
    async with backend.uow() as uow:
        # By key, whatever the order they were written in.
        assert await uow.tags.for_resource(arn) == {"env": "prod", "team": "platform"}
        assert list(await uow.tags.for_resource(arn)) == ["env", "team"]
        assert await uow.tags.remove(arn, ["env", "absent"]) == ["env"]
        assert await uow.tags.for_resource(arn) == {"team": "platform"}
    # Rolled back: the removal did not happen.
    async with backend.uow() as uow:
        assert await uow.tags.for_resource(arn) == {"env": "prod", "team": "platform"}
        assert await uow.tags.delete_all(arn) == 2
        await uow.commit()
    async with backend.uow() as uow:
        assert await uow.tags.for_resource(arn) == {}
        assert await uow.tags.for_resource(other) == {"team": "api"}


# ----- connections -----


async def test_connections(backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.accounts.lock(ACCOUNT)
        await uow.accounts.lock(OTHER)
        first = await uow.connections.add(new_connection(name="github"))
        now = await uow.now()
        await uow.connections.add(new_connection(OTHER, name="github"))
        await uow.commit()
    assert first.created_at == now
    async with backend.uow() as uow:
        assert await uow.connections.get_by_arn(ACCOUNT, first.connection_arn) == first
        assert await uow.connections.get_by_arn(OTHER, first.connection_arn) is None
        locked = await uow.connections.get_by_arn(ACCOUNT, first.connection_arn, for_update=True)
        assert locked == first
        assert await uow.connections.get(ACCOUNT, first.connection_id) == first
        assert await uow.connections.get(OTHER, first.connection_id) is None
        assert (
            await uow.connections.live_arn_with_name(ACCOUNT, REGION, "github")
            == first.connection_arn
        )
        assert await uow.connections.count_live(ACCOUNT, REGION) == 1
    await backend.travel(1)
    async with backend.uow() as uow:
        second = await uow.connections.add(new_connection(name="bitbucket"))
        assert await uow.connections.count_live(ACCOUNT, REGION) == 2
        locked = await uow.connections.get_by_arn(ACCOUNT, first.connection_arn, for_update=True)
        assert locked is not None
        await uow.connections.set_status(locked, ConnectionStatus.AVAILABLE)
        await uow.connections.mark_deleted(locked, 60)
        deleted_at = await uow.now()
        await uow.commit()
    assert locked.status is ConnectionStatus.DELETED
    assert (locked.deleted_at, locked.purge_at) == (deleted_at, deleted_at + timedelta(seconds=60))
    async with backend.uow() as uow:
        assert await uow.connections.live_arn_with_name(ACCOUNT, REGION, "github") is None
        assert await uow.connections.count_live(ACCOUNT, REGION) == 1
        listed = await uow.connections.list_page(ACCOUNT, REGION, None, None, 10)
        page = await uow.connections.list_page(ACCOUNT, REGION, None, None, 1)
        rest = await uow.connections.list_page(
            ACCOUNT, REGION, None, (page[-1].created_at, page[-1].connection_id), 5
        )
        named = await uow.connections.list_page(ACCOUNT, REGION, "github", None, 10)
        assert await uow.connections.get(ACCOUNT, first.connection_id) == locked
    # Newest first, tombstones included.
    assert [c.connection_id for c in listed] == [second.connection_id, first.connection_id]
    assert [c.connection_id for c in page + rest] == [c.connection_id for c in listed]
    assert [(c.connection_id, c.status) for c in named] == [
        (first.connection_id, ConnectionStatus.DELETED)
    ]


# ----- certificates and custom domains -----


async def service_with_account(backend: Backend, account: str = ACCOUNT) -> Service:
    svc = new_service(account)
    await add_services(backend, svc)
    return svc


async def test_certificates(backend: Backend) -> None:
    svc = await service_with_account(backend)
    cert = new_certificate("b.example.com", svc)
    async with backend.uow() as uow:
        assert await uow.certificates.insert_if_absent(cert)
        now = await uow.now()
        assert not await uow.certificates.insert_if_absent(new_certificate("b.example.com", svc))
        assert await uow.certificates.insert_if_absent(new_certificate("a.example.com", None))
        assert await uow.certificates.insert_if_absent(new_certificate("c.example.com", None))
        await uow.commit()
    assert cert.created_at == now
    async with backend.uow() as uow:
        assert await uow.certificates.get(cert.certificate_id) == cert
        assert await uow.certificates.get_for_domain(ACCOUNT, REGION, "b.example.com") == cert
        locked = await uow.certificates.get_for_domain(
            ACCOUNT, REGION, "b.example.com", for_update=True
        )
        assert locked == cert
        assert await uow.certificates.get_for_domain(OTHER, REGION, "b.example.com") is None
        everything = await uow.certificates.list_page(ACCOUNT, REGION, None, None, 10)
        page = await uow.certificates.list_page(ACCOUNT, REGION, None, "a.example.com", 1)
        one = await uow.certificates.list_page(ACCOUNT, REGION, "c.example.com", None, 10)
        records = [{"domain": "b.example.com", "status": "SUCCESS"}]
        await uow.certificates.set_validation(
            cert.certificate_id, CertificateStatus.ISSUED, records
        )
        validated = await uow.certificates.get(cert.certificate_id)
        await uow.commit()
    assert [c.domain_name for c in everything] == [
        "a.example.com",
        "b.example.com",
        "c.example.com",
    ]
    assert [c.domain_name for c in page] == ["b.example.com"]
    assert [c.domain_name for c in one] == ["c.example.com"]
    assert validated is not None
    assert (validated.status, validated.validation_records) == (CertificateStatus.ISSUED, records)


async def test_certificates_retain_link_and_purge_if_expired(backend: Backend) -> None:
    svc = await service_with_account(backend)
    b, a = new_certificate("b.example.com", svc), new_certificate("a.example.com", svc)
    async with backend.uow() as uow:
        await uow.certificates.insert_if_absent(b)
        await uow.certificates.insert_if_absent(a)
        assert await uow.certificates.retain([], 60) == []
        retained = await uow.certificates.retain([b.certificate_id, a.certificate_id], 3600)
        now = await uow.now()
        await uow.commit()
    assert [c.domain_name for c in retained] == ["a.example.com", "b.example.com"]
    for cert in retained:
        assert (cert.service_id, cert.service_arn) == (None, None)
        assert (cert.unlinked_at, cert.expires_at) == (now, now + timedelta(seconds=3600))

    async with backend.uow() as uow:
        assert await uow.certificates.purge_if_expired(a.certificate_id) is None
    await backend.travel(3600 + 60)
    async with backend.uow() as uow:
        # Linked again, it is kept whatever its old expiry said.
        stored_b = await uow.certificates.get(b.certificate_id)
        assert stored_b is not None
        records = [{"domain": "b.example.com", "status": "PENDING_VALIDATION"}]
        await uow.certificates.link(
            stored_b, svc.service_id, svc.service_arn, CertificateStatus.PENDING_VALIDATION, records
        )
        assert await uow.certificates.purge_if_expired(b.certificate_id) is None
        purged = await uow.certificates.purge_if_expired(a.certificate_id)
        assert await uow.certificates.get(a.certificate_id) is None
        relinked = await uow.certificates.get(b.certificate_id)
        await uow.commit()
    assert purged is not None and purged.certificate_id == a.certificate_id
    assert relinked == stored_b
    assert (relinked.service_id, relinked.expires_at, relinked.unlinked_at) == (
        svc.service_id,
        None,
        None,
    )
    assert relinked.validation_records == records


async def test_certificates_referenced_by_a_domain_are_not_purged(backend: Backend) -> None:
    svc = await service_with_account(backend)
    cert = new_certificate("a.example.com", svc)
    async with backend.uow() as uow:
        await uow.certificates.insert_if_absent(cert)
        await uow.custom_domains.add(new_domain(svc, cert, CustomDomainStatus.ACTIVE))
        await uow.certificates.retain([cert.certificate_id], 0)
        await uow.commit()
    await backend.travel(60)
    async with backend.uow() as uow:
        assert await uow.certificates.purge_if_expired(cert.certificate_id) is None
        assert await uow.retention.purge_expired_certificates(10) == []


async def test_custom_domains(backend: Backend) -> None:
    svc, other = await service_with_account(backend), await service_with_account(backend)
    certs = [new_certificate(f"{n}.example.com", svc) for n in ("b", "a", "c")]
    async with backend.uow() as uow:
        for cert in certs:
            await uow.certificates.insert_if_absent(cert)
            await uow.custom_domains.add(
                new_domain(svc, cert, CustomDomainStatus.PENDING_CERTIFICATE_DNS_VALIDATION)
            )
        now = await uow.now()
        await uow.commit()
    async with backend.uow() as uow:
        listed = await uow.custom_domains.for_service(svc.service_id)
        page = await uow.custom_domains.page_for_service(svc.service_id, "a.example.com", 1)
        assert await uow.custom_domains.count_for_service(svc.service_id) == 3
        assert await uow.custom_domains.count_for_service(other.service_id) == 0
        got = await uow.custom_domains.get(svc.service_id, "a.example.com")
        assert await uow.custom_domains.get(other.service_id, "a.example.com") is None
        await uow.custom_domains.set_status(
            svc.service_id, "a.example.com", CustomDomainStatus.ACTIVE
        )
        active = await uow.custom_domains.get(svc.service_id, "a.example.com")
        await uow.commit()
    assert [d.domain_name for d in listed] == ["a.example.com", "b.example.com", "c.example.com"]
    assert all(d.created_at == now for d in listed)
    # Validation records are the certificate's.
    by_name = {c.domain_name: c for c in certs}
    assert all(d.validation_records == by_name[d.domain_name].validation_records for d in listed)
    assert [d.domain_name for d in page] == ["b.example.com"]
    assert got == listed[0]
    assert active is not None and active.status is CustomDomainStatus.ACTIVE

    async with backend.uow() as uow:
        assert await uow.custom_domains.remove(svc.service_id, "a.example.com") == (
            by_name["a.example.com"].certificate_id
        )
        assert await uow.custom_domains.remove(svc.service_id, "a.example.com") is None
        removed = await uow.custom_domains.remove_all(svc.service_id)
        assert await uow.custom_domains.remove_all(svc.service_id) == []
        assert await uow.custom_domains.for_service(svc.service_id) == []
        await uow.commit()
    assert sorted(removed) == sorted(
        by_name[n].certificate_id for n in ("b.example.com", "c.example.com")
    )


async def test_custom_domains_awaiting_validation_in_a_stable_order(backend: Backend) -> None:
    mine = [await service_with_account(backend) for _ in range(2)]
    theirs = await service_with_account(backend, OTHER)
    waiting: list[tuple[str, str]] = []
    for round_ in range(2):
        async with backend.uow() as uow:
            for svc in [*mine, theirs]:
                for n in ("y", "x"):
                    cert = new_certificate(f"{n}{round_}.{svc.service_id[:6]}.example.com", svc)
                    cert.account_id = svc.account_id
                    cert.certificate_arn = names.certificate_arn(
                        REGION, svc.account_id, cert.certificate_id
                    )
                    await uow.certificates.insert_if_absent(cert)
                    status = CustomDomainStatus.PENDING_CERTIFICATE_DNS_VALIDATION
                    if n == "y" and svc is mine[0]:
                        status = CustomDomainStatus.ACTIVE
                    await uow.custom_domains.add(new_domain(svc, cert, status))
                    if status is not CustomDomainStatus.ACTIVE and svc is not theirs:
                        waiting.append((svc.service_id, cert.domain_name))
            await uow.commit()
        await backend.travel(1)
    # Rounds were a second apart, older first; within one: by service id, then name.
    expected = sorted(waiting[: len(waiting) // 2]) + sorted(waiting[len(waiting) // 2 :])
    async with backend.uow() as uow:
        everything = await uow.custom_domains.awaiting_validation(ACCOUNT, None, 100)
        walked: list[tuple[str, str]] = []
        after = None
        while batch := await uow.custom_domains.awaiting_validation(ACCOUNT, after, 2):
            walked += [(d.service_id, d.domain_name) for d, _ in batch]
            last = batch[-1][0]
            after = (last.created_at, last.service_id, last.domain_name)
        all_accounts = await uow.custom_domains.awaiting_validation(None, None, 100)
    assert [(d.service_id, d.domain_name) for d, _ in everything] == expected
    assert walked == expected
    assert all(c.certificate_id == d.certificate_id for d, c in everything)
    assert all(d.validation_records == c.validation_records for d, c in everything)
    assert len(all_accounts) == len(expected) + 4


async def test_custom_domains_binding_only_those_being_bound(backend: Backend) -> None:
    mine = await service_with_account(backend)
    theirs = await service_with_account(backend, OTHER)
    async with backend.uow() as uow:
        for svc in (mine, theirs):
            for n, status in (
                ("bind", CustomDomainStatus.BINDING_CERTIFICATE),
                ("wait", CustomDomainStatus.PENDING_CERTIFICATE_DNS_VALIDATION),
                ("done", CustomDomainStatus.ACTIVE),
            ):
                cert = new_certificate(f"{n}.{svc.service_id[:6]}.example.com", svc)
                cert.account_id = svc.account_id
                cert.certificate_arn = names.certificate_arn(
                    REGION, svc.account_id, cert.certificate_id
                )
                await uow.certificates.insert_if_absent(cert)
                await uow.custom_domains.add(new_domain(svc, cert, status))
        await uow.commit()
    async with backend.uow() as uow:
        found = await uow.custom_domains.binding(ACCOUNT, 100)
        everyone = await uow.custom_domains.binding(None, 100)
        one = await uow.custom_domains.binding(None, 1)
    assert [(d.service_id, d.domain_name[:4]) for d, _ in found] == [(mine.service_id, "bind")]
    assert all(d.certificate_id == c.certificate_id for d, c in found)
    assert sorted(d.service_id for d, _ in everyone) == sorted([mine.service_id, theirs.service_id])
    assert len(one) == 1


# ----- jobs -----


async def test_jobs_complete_and_fail_only_under_their_lease(backend: Backend) -> None:
    async with backend.uow() as uow:
        first = await uow.jobs.enqueue(
            kind="pause_service", payload={"a": 1}, max_attempts=3, service_id="s1"
        )
        second = await uow.jobs.enqueue(
            kind="pause_service", payload={}, max_attempts=3, progress={"p": 1}
        )
        await uow.commit()
    assert second > first
    one = await backend.claim()
    assert (one.job_id, one.kind, one.payload, one.attempts) == (
        first,
        "pause_service",
        {"a": 1},
        1,
    )
    two = await backend.claim()
    assert (two.job_id, two.progress) == (second, {"p": 1})
    # A completion may be held until the commit: LeaseLost comes by then, and nothing
    # of the transaction is committed.
    with pytest.raises(LeaseLost):
        async with backend.uow() as uow:
            await uow.jobs.complete(one.job_id, str(uuid.uuid4()))
            await uow.commit()
    # ...or by the next statement of the transaction, whatever it is.
    with pytest.raises(LeaseLost):
        async with backend.uow() as uow:
            await uow.jobs.complete(one.job_id, str(uuid.uuid4()))
            await uow.operations.get(ACCOUNT, str(uuid.uuid4()))
    async with backend.uow() as uow:
        await uow.jobs.complete(one.job_id, one.lease_token)
        await uow.jobs.mark_failed(two.job_id, two.lease_token, "R: broke")
        await uow.commit()
    assert await backend.jobs() == {second: ("pause_service", "failed", {"p": 1})}
    with pytest.raises(LeaseLost):
        async with backend.uow() as uow:
            await uow.jobs.complete(two.job_id, two.lease_token)
            await uow.commit()
    async with backend.uow() as uow:
        with pytest.raises(LeaseLost):
            await uow.jobs.mark_failed(two.job_id, two.lease_token, "again")
    # Rolled back with its transaction, a completion never happened.
    async with backend.uow() as uow:
        await uow.jobs.enqueue(kind="k", payload={}, max_attempts=1)
        await uow.commit()
    three = await backend.claim()
    async with backend.uow() as uow:
        await uow.jobs.complete(three.job_id, three.lease_token)
    assert (await backend.jobs())[three.job_id][1] == "running"


async def test_jobs_take_failed_progress_hands_the_newest_over_once(backend: Backend) -> None:
    async def failed_job(kind: str, service_id: str, progress: dict[str, Any]) -> int:
        async with backend.uow() as uow:
            job_id = await uow.jobs.enqueue(
                kind=kind, payload={}, max_attempts=1, service_id=service_id, progress=progress
            )
            await uow.commit()
        job = await backend.claim()
        assert job.job_id == job_id
        async with backend.uow() as uow:
            await uow.jobs.mark_failed(job.job_id, job.lease_token, "broke")
            await uow.commit()
        return job_id

    await failed_job("delete_service", "s1", {"image_objects": 1})
    await failed_job("delete_service", "s1", {"image_objects": 2})
    kept_kind = await failed_job("update_service", "s1", {"x": 1})
    kept_service = await failed_job("delete_service", "s2", {"x": 2})
    async with backend.uow() as uow:
        queued = await uow.jobs.enqueue(
            kind="delete_service", payload={}, max_attempts=1, service_id="s1"
        )
        await uow.commit()
    async with backend.uow() as uow:
        assert await uow.jobs.take_failed_progress("delete_service", "s3") is None
        assert await uow.jobs.take_failed_progress("delete_service", "s1") == {"image_objects": 2}
        assert await uow.jobs.take_failed_progress("delete_service", "s1") is None
        await uow.commit()
    assert set(await backend.jobs()) == {kept_kind, kept_service, queued}


# ----- retention -----


async def test_retention_purges_what_is_due_in_batches(backend: Backend) -> None:
    svc, kept = await service_with_account(backend), await service_with_account(backend)
    connection = new_connection()
    async with backend.uow() as uow:
        # A retained certificate, a tombstoned connection, a tombstoned service with an
        # ended operation and a failed job, a request id, a delivered event.
        certs = [new_certificate(f"{n}.example.com", svc) for n in ("a", "b", "c")]
        for cert in certs:
            await uow.certificates.insert_if_absent(cert)
        await uow.certificates.retain([c.certificate_id for c in certs], 100)
        await uow.connections.add(connection)
        await uow.connections.mark_deleted(connection, 100)
        op = new_operation(svc)
        await uow.operations.add(op)
        await uow.operations.finish(op.operation_id, OperationStatus.SUCCEEDED, 1)
        kept_op = new_operation(kept)
        await uow.operations.add(kept_op)
        await uow.operations.finish(kept_op.operation_id, OperationStatus.FAILED, 1)
        await uow.operations.add(new_operation(kept, OperationType.PAUSE_SERVICE))  # active
        loaded = await uow.services.get(ACCOUNT, svc.service_id, for_update=True)
        assert loaded is not None
        await uow.services.mark_deleted(loaded, 100)
        await uow.jobs.enqueue(
            kind="delete_service", payload={}, max_attempts=1, service_id=svc.service_id
        )
        await uow.jobs.enqueue(kind="delete_service", payload={}, max_attempts=1, service_id="gone")
        await uow.request_ids.claim(ACCOUNT, "r1", "fp", "operation", op.operation_id)
        uow.record(Event(ACCOUNT, svc.service_arn, "service.deleted", {}))
        await uow.commit()
    for _ in range(2):
        job = await backend.claim()
        async with backend.uow() as uow:
            await uow.jobs.mark_failed(job.job_id, job.lease_token, "broke")
            await uow.commit()
    assert await backend.relay() == 1

    async def purge_all(uow: UnitOfWork, batch: int) -> dict[str, Any]:
        r = uow.retention
        services = await r.purge_service_tombstones(batch)
        return {
            "certificates": sorted(
                c.domain_name for c in await r.purge_expired_certificates(batch)
            ),
            "connections": [c.connection_name for c in await r.purge_connection_tombstones(batch)],
            "services": [(s.service_id, s.service_name) for s in services.services],
            "with_service": (services.operations, services.jobs),
            "operations": await r.purge_ended_operations(100, batch),
            "request_ids": await r.purge_request_ids(100, batch),
            "orphaned_jobs": await r.purge_orphaned_failed_jobs(batch),
            "events": await r.prune_delivered_events(100, batch),
        }

    nothing = {
        "certificates": [],
        "connections": [],
        "services": [],
        "with_service": (0, 0),
        "operations": 0,
        "request_ids": 0,
        "orphaned_jobs": 0,
        "events": 0,
    }
    await backend.travel(90)
    async with backend.uow() as uow:
        # Nothing is due yet but the orphaned failed job, which no time protects
        # (rolled back with this transaction).
        assert await purge_all(uow, 10) == {**nothing, "orphaned_jobs": 1}
    await backend.travel(20)
    async with backend.uow() as uow:
        # Batches are bounded: one certificate, and the rest in the next call.
        one = await uow.retention.purge_expired_certificates(1)
        first = await purge_all(uow, 10)
        await uow.commit()
    assert len(one) == 1
    first["certificates"] = sorted(first["certificates"] + [one[0].domain_name])
    assert first == {
        "certificates": ["a.example.com", "b.example.com", "c.example.com"],
        "connections": [connection.connection_name],
        "services": [(svc.service_id, svc.service_name)],
        # The tombstone's operation and its failed job go with it.
        "with_service": (1, 1),
        # The other service's ended operation, by age; not the active one.
        "operations": 1,
        "request_ids": 1,
        # The failed job of a service that never existed here.
        "orphaned_jobs": 1,
        "events": 1,
    }
    async with backend.uow() as uow:
        assert await purge_all(uow, 10) == nothing
        assert await uow.services.get(ACCOUNT, kept.service_id) is not None
        assert [
            o.status
            for o in await uow.operations.list_for_service(ACCOUNT, kept.service_id, None, 10)
        ] == [OperationStatus.PENDING]


# ----- the event feed -----


async def test_event_feed_follows_an_accounts_relayed_events(backend: Backend) -> None:
    arn_a = "arn:aws:apprunner:us-east-1:111122223333:service/a/" + "a" * 32
    arn_b = "arn:aws:apprunner:us-east-1:111122223333:service/b/" + "b" * 32

    async def record(*events: Event) -> None:
        async with backend.uow() as uow:
            for event in events:
                uow.record(event)
            await uow.commit()

    assert await backend.feed.head(ACCOUNT) == 0
    await record(Event(ACCOUNT, arn_a, "one", {"n": 1}), Event(OTHER, arn_a, "theirs", {}))
    await record(Event(ACCOUNT, arn_b, "two", {"n": 2}))
    await record(Event(ACCOUNT, arn_a, "three", {"n": 3}))
    assert await backend.relay() == 4

    async def take(n: int, after: int, arn: str | None = None) -> list[EventRecord]:
        got: list[EventRecord] = []
        async with contextlib.aclosing(backend.feed.follow(ACCOUNT, after, arn)) as stream:
            async for record in stream:
                got.append(record)
                if len(got) == n:
                    break
        return got

    everything = await asyncio.wait_for(take(3, 0), 10)
    assert [(r.type, r.payload, r.account_id) for r in everything] == [
        ("one", {"n": 1}, ACCOUNT),
        ("two", {"n": 2}, ACCOUNT),
        ("three", {"n": 3}, ACCOUNT),
    ]
    positions = [r.position for r in everything]
    assert positions == sorted(positions) and len(set(positions)) == 3
    # The head is the account's latest relayed position: "from now on" as a cursor.
    assert await backend.feed.head(ACCOUNT) == positions[-1]
    assert 0 < await backend.feed.head(OTHER) < positions[-1]
    after_first = await asyncio.wait_for(take(2, positions[0]), 10)
    assert [r.type for r in after_first] == ["two", "three"]
    of_a = await asyncio.wait_for(take(2, 0, arn_a), 10)
    assert [r.type for r in of_a] == ["one", "three"]

    # Then what is relayed after the stream started, until stopped.
    stop = asyncio.Event()
    stream = backend.feed.follow(ACCOUNT, positions[-1], None, stop)
    waiting = asyncio.ensure_future(anext(stream))
    await record(Event(ACCOUNT, arn_b, "four", {}))
    await backend.relay()
    live = await asyncio.wait_for(waiting, 10)
    assert live.type == "four" and live.position > positions[-1]
    assert await backend.feed.head(ACCOUNT) == live.position
    stop.set()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), 10)
    # A stream asked for with its stop already set yields nothing.
    assert [r async for r in backend.feed.follow(ACCOUNT, 0, None, stop)] == []


# ----- auto scaling and observability configurations -----


def new_config(
    name: str,
    revision: int,
    kind: ConfigKind = ConfigKind.AUTO_SCALING,
    account: str = ACCOUNT,
    settings: dict[str, Any] | None = None,
) -> ConfigResource:
    config_id = names.new_resource_id()
    return ConfigResource(
        config_id=config_id,
        account_id=account,
        kind=kind,
        name=name,
        revision=revision,
        arn=config_arn(REGION, account, kind, name, revision, config_id),
        status=ConfigStatus.ACTIVE,
        created_at=PLACEHOLDER,
        settings=settings or {"max_concurrency": 100, "min_size": 1, "max_size": 25},
    )


async def test_config_resources_revisions_latest_default_and_listing(backend: Backend) -> None:
    default = default_auto_scaling(REGION, ACCOUNT, PLACEHOLDER)
    one, two, beta = new_config("alpha", 1), new_config("alpha", 2), new_config("beta", 1)
    tracing = new_config("alpha", 1, ConfigKind.OBSERVABILITY, settings={"trace_vendor": "AWSXRAY"})
    async with backend.uow() as uow:
        await uow.config_resources.ensure_default(default)
        await uow.config_resources.ensure_default(default)
        for config in (one, two, beta, tracing, new_config("alpha", 1, account=OTHER)):
            await uow.config_resources.add(config)
        now = await uow.now()
        await uow.commit()
    assert one.created_at == now
    repo_kind = ConfigKind.AUTO_SCALING
    async with backend.uow() as uow:
        repo = uow.config_resources
        got = await repo.get(ACCOUNT, repo_kind, one.config_id)
        assert got is not None and (got.latest, got.has_associated_service) == (False, False)
        assert got.settings == one.settings and got.created_at == now
        assert await repo.get(OTHER, repo_kind, one.config_id) is None
        assert await repo.get(ACCOUNT, ConfigKind.OBSERVABILITY, one.config_id) is None
        assert [
            c.revision for c in await repo.active_revisions(ACCOUNT, REGION, repo_kind, "alpha")
        ] == [
            1,
            2,
        ]
        assert await repo.count_active_names(ACCOUNT, REGION, repo_kind) == 3
        assert await repo.count_active_names(ACCOUNT, REGION, ConfigKind.OBSERVABILITY) == 1
        found = await repo.get_default(ACCOUNT, REGION, repo_kind)
        assert found is not None and found.arn == default.arn and found.is_default
        latest = await repo.list_page(ACCOUNT, REGION, repo_kind, None, True, None, 10)
        assert [(c.name, c.revision) for c in latest] == [
            ("DefaultConfiguration", 1),
            ("alpha", 2),
            ("beta", 1),
        ]
        every = await repo.list_page(ACCOUNT, REGION, repo_kind, None, False, ("alpha", 1), 2)
        assert [(c.name, c.revision, c.latest) for c in every] == [
            ("alpha", 2, True),
            ("beta", 1, True),
        ]
        named = await repo.list_page(ACCOUNT, REGION, repo_kind, "alpha", False, None, 10)
        assert [c.revision for c in named] == [1, 2]
        [traced] = await repo.list_page(
            ACCOUNT, REGION, ConfigKind.OBSERVABILITY, None, True, None, 10
        )
        assert traced.settings == {"trace_vendor": "AWSXRAY"}
        # Deleting the latest moves `latest` back; the default moves.
        await repo.mark_inactive(two)
        assert two.status is ConfigStatus.INACTIVE and two.deleted_at is not None
        await repo.set_default(ACCOUNT, REGION, repo_kind, one)
        await uow.commit()
    async with backend.uow() as uow:
        repo = uow.config_resources
        again = await repo.get(ACCOUNT, repo_kind, two.config_id)
        assert again is not None and again.status is ConfigStatus.INACTIVE
        assert not again.latest and again.deleted_at == two.deleted_at
        first = await repo.get(ACCOUNT, repo_kind, one.config_id)
        assert first is not None and first.latest and first.is_default
        moved = await repo.get_default(ACCOUNT, REGION, repo_kind)
        assert moved is not None and moved.config_id == one.config_id
        assert not (await repo.get(ACCOUNT, repo_kind, default.config_id)).is_default  # type: ignore[union-attr]
        # A deleted default is not made again.
        await repo.mark_inactive(default)
        await repo.ensure_default(default_auto_scaling(REGION, ACCOUNT, PLACEHOLDER))
        back = await repo.get(ACCOUNT, repo_kind, default.config_id)
        assert back is not None and back.status is ConfigStatus.INACTIVE


async def test_config_resources_one_active_revision_per_number(backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.config_resources.add(new_config("alpha", 1))
        await uow.commit()
    with pytest.raises(backend.integrity_errors):
        async with backend.uow() as uow:
            await uow.config_resources.add(new_config("alpha", 1))
            await uow.commit()


async def test_config_resources_services_using_them(backend: Backend) -> None:
    scaling = new_config("alpha", 1)
    tracing = new_config("tracing", 1, ConfigKind.OBSERVABILITY, settings={})
    unused = new_config("beta", 1)
    async with backend.uow() as uow:
        for config in (scaling, tracing, unused):
            await uow.config_resources.add(config)
        await uow.commit()
    first, second, gone = new_service(), new_service(), new_service()
    for svc in (first, second, gone):
        assert svc.configuration is not None
        svc.configuration.auto_scaling_configuration_arn = scaling.arn
    assert first.configuration is not None
    first.configuration.observability_configuration_arn = tracing.arn
    await add_services(backend, first, second, gone)
    async with backend.uow() as uow:
        await uow.services.mark_deleted(gone, 60)
        await uow.commit()
    async with backend.uow() as uow:
        repo = uow.config_resources
        assert await repo.in_use([scaling.arn]) and await repo.in_use([tracing.arn])
        assert not await repo.in_use([unused.arn])
        using = await repo.services_using(ACCOUNT, scaling.arn, None, 10)
        assert using == sorted([first.service_arn, second.service_arn])
        assert await repo.services_using(ACCOUNT, scaling.arn, using[0], 10) == using[1:]
        assert await repo.services_using(OTHER, scaling.arn, None, 10) == []
        got = await repo.get(ACCOUNT, ConfigKind.AUTO_SCALING, scaling.config_id)
        assert got is not None and got.has_associated_service
        got = await repo.get(ACCOUNT, ConfigKind.AUTO_SCALING, unused.config_id)
        assert got is not None and not got.has_associated_service
        # An update waiting to be applied counts as a use.
        await uow.jobs.enqueue(
            kind="update_service",
            payload={"auto_scaling_configuration_arn": unused.arn},
            max_attempts=3,
            service_id=second.service_id,
            account_id=ACCOUNT,
        )
        assert await repo.in_use([unused.arn])


# ----- the object store: the adapters' contract, run against the fake -----


@pytest.fixture
def any_store() -> StoreUnderTest:
    """The fake in place of each adapter, for the contract the adapters keep
    (test_objectstore_contract.py); the tests below are that module's."""
    store = FakeObjectStore()
    store.ensure_bucket("source")
    store.ensure_bucket("images")
    return StoreUnderTest("fake", store, "source", "images", store.start_upload)


test_fake_store_round_trip = store_contract.test_put_get_stat_round_trip
test_fake_store_overwrites = store_contract.test_put_overwrites
test_fake_store_missing_objects = store_contract.test_missing_objects
test_fake_store_not_found_is_not_transient = store_contract.test_not_found_is_not_transient
test_fake_store_copy_across_buckets = store_contract.test_copy_across_buckets
test_fake_store_list_order = store_contract.test_list_is_prefix_isolated_and_in_key_order
test_fake_store_list_missing_bucket = store_contract.test_list_of_missing_bucket_is_empty
test_fake_store_many_keys = store_contract.test_many_keys_list_and_delete
test_fake_store_delete_missing = store_contract.test_delete_missing_keys_is_not_an_error
test_fake_store_abort_uploads = store_contract.test_abort_incomplete_uploads_only_under_prefix
test_fake_store_abort_partial = (
    store_contract.test_abort_incomplete_uploads_with_a_partial_name_prefix
)
test_fake_store_ensure_bucket = store_contract.test_ensure_bucket_is_idempotent


# ----- VPC connectors, ingress connections and services' network configuration -----


def new_connector(account: str = ACCOUNT, name: str = "egress", revision: int = 1) -> VpcConnector:
    connector_id = names.new_resource_id()
    return VpcConnector(
        connector_id=connector_id,
        account_id=account,
        name=name,
        revision=revision,
        arn=vpc.connector_arn(REGION, account, name, revision, connector_id),
        subnets=["subnet-1", "subnet-2"],
        security_groups=["sg-1"],
        status=VpcConnectorStatus.ACTIVE,
        created_at=PLACEHOLDER,
    )


def new_ingress(service: Service, name: str = "ingress") -> VpcIngressConnection:
    connection_id = names.new_resource_id()
    return VpcIngressConnection(
        connection_id=connection_id,
        account_id=service.account_id,
        name=name,
        arn=vpc.ingress_connection_arn(REGION, service.account_id, name, connection_id),
        service_arn=service.service_arn,
        service_id=service.service_id,
        vpc_id="vpc-1",
        vpc_endpoint_id="vpce-1",
        domain_name="abc.example",
        status=VpcIngressConnectionStatus.AVAILABLE,
        created_at=PLACEHOLDER,
    )


async def test_vpc_connectors(backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.accounts.lock(ACCOUNT)
        await uow.accounts.lock(OTHER)
        first = await uow.vpc.add_connector(new_connector())
        now = await uow.now()
        await uow.vpc.add_connector(new_connector(OTHER))
        await uow.commit()
    assert first.created_at == now
    async with backend.uow() as uow:
        assert await uow.vpc.connector_by_arn(ACCOUNT, first.arn) == first
        assert await uow.vpc.connector_by_arn(OTHER, first.arn) is None
        assert await uow.vpc.connector(ACCOUNT, first.connector_id) == first
        assert await uow.vpc.connector(OTHER, first.connector_id) is None
        assert await uow.vpc.active_connector_arn_with_name(ACCOUNT, REGION, "egress") == first.arn
        assert await uow.vpc.count_active_connectors(ACCOUNT, REGION) == 1
        assert await uow.vpc.last_connector_revision(ACCOUNT, REGION, "egress") == 1
        assert await uow.vpc.last_connector_revision(ACCOUNT, REGION, "other") == 0
    # One ACTIVE revision per name.
    with pytest.raises(backend.integrity_errors):
        async with backend.uow() as uow:
            await uow.vpc.add_connector(new_connector(revision=2))
    await backend.travel(1)
    async with backend.uow() as uow:
        locked = await uow.vpc.connector_by_arn(ACCOUNT, first.arn, for_update=True)
        assert locked is not None
        await uow.vpc.deactivate_connector(locked, 60)
        deleted_at = await uow.now()
        second = await uow.vpc.add_connector(new_connector(revision=2))
        await uow.commit()
    assert locked.status is VpcConnectorStatus.INACTIVE
    assert (locked.deleted_at, locked.purge_at) == (deleted_at, deleted_at + timedelta(seconds=60))
    async with backend.uow() as uow:
        assert await uow.vpc.active_connector_arn_with_name(ACCOUNT, REGION, "egress") == second.arn
        assert await uow.vpc.last_connector_revision(ACCOUNT, REGION, "egress") == 2
        assert await uow.vpc.count_active_connectors(ACCOUNT, REGION) == 1
        listed = await uow.vpc.list_connectors(ACCOUNT, REGION, None, 10)
        page = await uow.vpc.list_connectors(ACCOUNT, REGION, None, 1)
        rest = await uow.vpc.list_connectors(
            ACCOUNT, REGION, (page[-1].created_at, page[-1].connector_id), 5
        )
        assert await uow.vpc.connector(ACCOUNT, first.connector_id) == locked
    # Newest first, INACTIVE ones included.
    assert [c.connector_id for c in listed] == [second.connector_id, first.connector_id]
    assert [c.connector_id for c in page + rest] == [c.connector_id for c in listed]


async def test_vpc_network_configuration_and_the_services_using_a_connector(
    backend: Backend,
) -> None:
    user, other, gone = new_service(), new_service(), new_service()
    await add_services(backend, user, other, gone)
    connector = new_connector()
    network = {
        "egress_configuration": {"egress_type": "VPC", "vpc_connector_arn": connector.arn},
        "ingress_configuration": {"is_publicly_accessible": False},
        "ip_address_type": "IPV4",
    }
    async with backend.uow() as uow:
        await uow.vpc.add_connector(connector)
        await uow.vpc.save_network(user.service_id, network)
        await uow.vpc.save_network(gone.service_id, network)
        # Not VPC egress: does not use the connector, whatever ARN it holds.
        await uow.vpc.save_network(
            other.service_id,
            {
                **network,
                "egress_configuration": {"egress_type": "DEFAULT", "vpc_connector_arn": ""},
            },
        )
        await uow.commit()
    async with backend.uow() as uow:
        read = await uow.services.get(ACCOUNT, user.service_id)
        assert read is not None and read.configuration is not None
        assert read.configuration.network == network
        listed = await uow.services.list_live(ACCOUNT, REGION, None, 10)
        assert {s.service_id: s.configuration.network for s in listed if s.configuration}[
            user.service_id
        ] == network
        assert await uow.vpc.services_using_connector(connector.arn) == sorted(
            [user.service_arn, gone.service_arn]
        )
        # The configuration written by an update job keeps the network configuration.
        assert read.configuration is not None
        await uow.services.save_configuration(
            user.service_id,
            ServiceConfiguration(
                source=read.configuration.source,
                instance={"cpu": "2 vCPU"},
                health_check=read.configuration.health_check,
            ),
        )
        doomed = await uow.services.get(ACCOUNT, gone.service_id, for_update=True)
        assert doomed is not None
        await uow.services.delete_configuration(gone.service_id)
        await uow.services.mark_deleted(doomed, 60)
        await uow.commit()
    async with backend.uow() as uow:
        again = await uow.services.get(ACCOUNT, user.service_id)
        assert again is not None and again.configuration is not None
        assert again.configuration.network == network
        assert await uow.vpc.services_using_connector(connector.arn) == [user.service_arn]
    with pytest.raises(LookupError):
        async with backend.uow() as uow:
            await uow.vpc.save_network(gone.service_id, network)


async def test_vpc_ingress_connections(backend: Backend) -> None:
    svc, other_svc = new_service(), new_service()
    await add_services(backend, svc, other_svc)
    async with backend.uow() as uow:
        first = await uow.vpc.add_ingress(new_ingress(svc, "in-1"))
        now = await uow.now()
        await uow.commit()
    assert first.created_at == now
    # One live connection per service, and one live connection per name.
    for duplicate in (new_ingress(svc, "in-2"), new_ingress(other_svc, "in-1")):
        with pytest.raises(backend.integrity_errors):
            async with backend.uow() as uow:
                await uow.vpc.add_ingress(duplicate)
    async with backend.uow() as uow:
        assert await uow.vpc.ingress_by_arn(ACCOUNT, first.arn) == first
        assert await uow.vpc.ingress_by_arn(OTHER, first.arn) is None
        assert await uow.vpc.ingress(ACCOUNT, first.connection_id) == first
        assert await uow.vpc.live_ingress_arn_with_name(ACCOUNT, REGION, "in-1") == first.arn
        assert await uow.vpc.live_ingress_for_service(svc.service_id) == [first]
    await backend.travel(1)
    async with backend.uow() as uow:
        second = await uow.vpc.add_ingress(new_ingress(other_svc, "in-2"))
        locked = await uow.vpc.ingress_by_arn(ACCOUNT, first.arn, for_update=True)
        assert locked is not None
        locked.vpc_id, locked.vpc_endpoint_id = "vpc-2", "vpce-2"
        await uow.vpc.update_ingress(locked)
        await uow.commit()
    async with backend.uow() as uow:
        everything = await uow.vpc.list_ingress(ACCOUNT, REGION, None, None, None, 10)
        page = await uow.vpc.list_ingress(ACCOUNT, REGION, None, None, None, 1)
        rest = await uow.vpc.list_ingress(
            ACCOUNT, REGION, None, None, (page[-1].created_at, page[-1].connection_id), 5
        )
        by_service = await uow.vpc.list_ingress(ACCOUNT, REGION, svc.service_arn, None, None, 10)
        by_endpoint = await uow.vpc.list_ingress(ACCOUNT, REGION, None, "vpce-2", None, 10)
        both = await uow.vpc.list_ingress(
            ACCOUNT, REGION, other_svc.service_arn, "vpce-2", None, 10
        )
    assert [c.connection_id for c in everything] == [second.connection_id, first.connection_id]
    assert [c.connection_id for c in page + rest] == [c.connection_id for c in everything]
    assert [(c.connection_id, c.vpc_id) for c in by_service] == [(first.connection_id, "vpc-2")]
    assert [c.connection_id for c in by_endpoint] == [first.connection_id]
    assert both == []
    async with backend.uow() as uow:
        locked = await uow.vpc.ingress_by_arn(ACCOUNT, first.arn, for_update=True)
        assert locked is not None
        await uow.vpc.mark_ingress_deleted(locked, 60)
        deleted_at = await uow.now()
        await uow.commit()
    assert locked.status is VpcIngressConnectionStatus.DELETED
    assert (locked.deleted_at, locked.purge_at) == (deleted_at, deleted_at + timedelta(seconds=60))
    async with backend.uow() as uow:
        assert await uow.vpc.live_ingress_for_service(svc.service_id) == []
        assert await uow.vpc.live_ingress_arn_with_name(ACCOUNT, REGION, "in-1") is None
        # The name and the service's slot are free again; the tombstone stays listed.
        third = await uow.vpc.add_ingress(new_ingress(svc, "in-1"))
        listed = await uow.vpc.list_ingress(ACCOUNT, REGION, svc.service_arn, None, None, 10)
        await uow.commit()
    assert {c.connection_id for c in listed} == {first.connection_id, third.connection_id}


async def test_services_get_locked_with_ingress(backend: Backend) -> None:
    svc, bare = new_service(), new_service()
    await add_services(backend, svc, bare)
    async with backend.uow() as uow:
        connection = await uow.vpc.add_ingress(new_ingress(svc, "in-1"))
        await uow.commit()
    async with backend.uow() as uow:
        found, ingress = await uow.services.get_locked_with_ingress(ACCOUNT, svc.service_id)
        assert found == await uow.services.get(ACCOUNT, svc.service_id)
        assert ingress == [connection]
        # The service's row is locked until the transaction ends, as get(for_update=True).
        assert await backend.is_locked("services", svc.service_id)
        assert await uow.services.get_locked_with_ingress(ACCOUNT, bare.service_id) == (
            await uow.services.get(ACCOUNT, bare.service_id),
            [],
        )
        # Another account's service, or none, is not found (and has nothing to show).
        assert await uow.services.get_locked_with_ingress(OTHER, svc.service_id) == (None, [])
        assert await uow.services.get_locked_with_ingress(ACCOUNT, "nope") == (None, [])
    assert not await backend.is_locked("services", svc.service_id)
    async with backend.uow() as uow:
        locked = await uow.vpc.ingress_by_arn(ACCOUNT, connection.arn, for_update=True)
        assert locked is not None
        await uow.vpc.mark_ingress_deleted(locked, 60)
        await uow.commit()
    async with backend.uow() as uow:
        _, ingress = await uow.services.get_locked_with_ingress(ACCOUNT, svc.service_id)
        assert ingress == []


async def test_vpc_tombstones_are_purged_once_due_in_batches(backend: Backend) -> None:
    svc = new_service()
    await add_services(backend, svc)
    async with backend.uow() as uow:
        connectors = [
            await uow.vpc.add_connector(new_connector(name=f"egress-{i}")) for i in range(3)
        ]
        live = await uow.vpc.add_connector(new_connector(name="live"))
        ingress = await uow.vpc.add_ingress(new_ingress(svc))
        for connector in connectors:
            await uow.vpc.deactivate_connector(connector, 60)
        await uow.vpc.mark_ingress_deleted(ingress, 60)
        await uow.commit()
    async with backend.uow() as uow:
        assert await uow.vpc.purge_connector_tombstones(10) == []
        assert await uow.vpc.purge_ingress_tombstones(10) == []
    await backend.travel(61)
    async with backend.uow() as uow:
        first = await uow.vpc.purge_connector_tombstones(2)
        second = await uow.vpc.purge_connector_tombstones(2)
        purged_ingress = await uow.vpc.purge_ingress_tombstones(2)
        await uow.commit()
    assert len(first) == 2 and len(second) == 1
    assert {c.connector_id for c in first + second} == {c.connector_id for c in connectors}
    assert [c.connection_id for c in purged_ingress] == [ingress.connection_id]
    async with backend.uow() as uow:
        assert [
            c.connector_id for c in await uow.vpc.list_connectors(ACCOUNT, REGION, None, 10)
        ] == [live.connector_id]
        assert await uow.vpc.ingress(ACCOUNT, ingress.connection_id) is None


async def test_names_counts_and_listings_are_per_region(backend: Backend) -> None:
    """The same name lives once in each region; counts and listings see one region."""
    away = "eu-west-1"
    home_svc = new_service(name="alpha")
    service_id = names.new_resource_id()
    away_svc = new_service(
        name="alpha",
        service_id=service_id,
        region=away,
        service_arn=names.service_arn(away, ACCOUNT, "alpha", service_id),
    )
    await add_services(backend, home_svc, away_svc)
    home_conn = new_connection(name="github")
    away_conn = dataclasses.replace(
        new_connection(name="github"),
        connection_arn=names.connection_arn(away, ACCOUNT, "github", names.new_resource_id()),
    )
    async with backend.uow() as uow:
        await uow.connections.add(home_conn)
        await uow.connections.add(away_conn)
        await uow.commit()
    async with backend.uow() as uow:
        for region, svc, conn in ((REGION, home_svc, home_conn), (away, away_svc, away_conn)):
            assert (
                await uow.services.live_arn_with_name(ACCOUNT, region, "alpha") == svc.service_arn
            )
            assert await uow.services.count_live(ACCOUNT, region) == 1
            listed = await uow.services.list_live(ACCOUNT, region, None, 10)
            assert [s.service_id for s in listed] == [svc.service_id]
            assert await uow.connections.live_arn_with_name(ACCOUNT, region, "github") == (
                conn.connection_arn
            )
            assert await uow.connections.count_live(ACCOUNT, region) == 1
            page = await uow.connections.list_page(ACCOUNT, region, None, None, 10)
            assert [c.connection_arn for c in page] == [conn.connection_arn]
        assert await uow.services.count_live(ACCOUNT, "ap-south-1") == 0
