"""The composition root: builds adapters from settings and wires them into the use cases,
the job handlers and the servers. Nothing else constructs adapters."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import cast

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from .adapters.compute.recorded import RecordedComputeDriver
from .adapters.dns.zone_file import ZoneFileValidator
from .adapters.postgres.database import create_engine, libpq_url, with_database
from .adapters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresError
from .adapters.postgres.listen import PgListener
from .adapters.postgres.migrate import upgrade_to_head
from .adapters.postgres.outbox import EVENTS_CHANNEL, EventLog
from .adapters.postgres.presence import AdvisoryLockPresence
from .adapters.postgres.repositories import OPERATIONS_CHANNEL
from .adapters.postgres.unit_of_work import PostgresUnitOfWork
from .application.connection_commands import ConnectionCommands
from .application.dns import DnsValidation
from .application.domain_commands import DomainCommands
from .application.jobs import ServiceJob, job_handlers
from .application.ports import ObjectStore
from .application.service_commands import ServiceCommands
from .metrics import TimedObjectStore
from .settings import Settings
from .startup import StartupError, check_data_dir, check_database, setting_hint

log = logging.getLogger(__name__)
EMBEDDED_DATABASE = "servicecontrol"


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The configured URL, or an embedded server's (started here, stopped on exit)."""
    if settings.database_url:
        check_database(settings.database_url)
        yield settings.database_url
        return
    server = EmbeddedPostgres(check_data_dir(settings.data_dir) / "postgres")
    try:
        server.start()
    except EmbeddedPostgresError as exc:
        raise StartupError(
            f"{exc}: fix what it reports, or use another database with "
            f"{setting_hint('database_url')}"
        ) from exc
    try:
        admin = server.url("postgres")
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
        yield with_database(admin, EMBEDDED_DATABASE)
    finally:
        server.stop()


def object_store(settings: Settings) -> ObjectStore:
    if settings.s3_endpoint:
        from .adapters.objectstore.minio_store import MinioObjectStore

        store: ObjectStore = MinioObjectStore(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
        )
    else:
        from .adapters.objectstore.local_store import LocalDirectoryObjectStore

        store = LocalDirectoryObjectStore(check_data_dir(settings.data_dir) / "objects")
    for bucket in (settings.source_bucket, settings.image_bucket):
        store.ensure_bucket(bucket)
    return cast(ObjectStore, TimedObjectStore(store))


@dataclass
class Application:
    settings: Settings
    url: str
    engine: AsyncEngine
    store: ObjectStore
    commands: ServiceCommands
    handlers: dict[str, ServiceJob]
    listener: PgListener
    events: EventLog
    connections: ConnectionCommands
    domains: DomainCommands
    dns_validation: DnsValidation
    presence: AdvisoryLockPresence

    async def close(self) -> None:
        await self.listener.close()
        await self.engine.dispose()


async def build(settings: Settings, url: str, *, migrate: bool | None = None) -> Application:
    if settings.migrate_on_start if migrate is None else migrate:
        upgrade_to_head(url)
    engine = create_engine(url)
    store = object_store(settings)
    # One LISTEN connection per process, shared by every WaitOperation and WatchEvents call.
    listener = PgListener(url, [OPERATIONS_CHANNEL, EVENTS_CHANNEL])
    listener.start()
    commands = ServiceCommands(lambda: PostgresUnitOfWork(engine), settings, store, listener)
    handlers = job_handlers(
        lambda: PostgresUnitOfWork(engine),
        PostgresUnitOfWork.bound,
        settings,
        store,
        RecordedComputeDriver(engine),
    )
    events = EventLog(engine, listener=listener, poll_seconds=settings.job_poll_seconds)
    resources = resource_commands(engine, settings)
    return Application(
        settings,
        url,
        engine,
        store,
        commands,
        handlers,
        listener,
        events,
        resources.connections,
        resources.domains,
        resources.dns_validation,
        AdvisoryLockPresence(engine),
    )


@dataclass
class ResourceCommands:
    """The connection and custom domain use cases, and certificate DNS validation: all
    an operator's command needs, without the object store or the job engine."""

    connections: ConnectionCommands
    domains: DomainCommands
    dns_validation: DnsValidation


def resource_commands(engine: AsyncEngine, settings: Settings) -> ResourceCommands:
    def uow() -> PostgresUnitOfWork:
        return PostgresUnitOfWork(engine)

    return ResourceCommands(
        ConnectionCommands(uow, settings),
        DomainCommands(uow, settings),
        DnsValidation(uow, ZoneFileValidator(settings.dns_zone_file)),
    )


@contextlib.asynccontextmanager
async def operator_commands(settings: Settings) -> AsyncIterator[ResourceCommands]:
    """For `servicecontrol` commands an operator runs against a migrated database."""
    with database_url(settings) as url:
        engine = create_engine(url, pool_size=2)
        try:
            yield resource_commands(engine, settings)
        finally:
            await engine.dispose()
