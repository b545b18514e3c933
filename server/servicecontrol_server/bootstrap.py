"""The composition root: builds adapters from settings and wires them into the use cases,
the job handlers and the servers. Nothing else constructs adapters."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from .adapters.compute.recorded import RecordedComputeDriver
from .adapters.postgres.database import create_engine, libpq_url, with_database
from .adapters.postgres.embedded import EmbeddedPostgres
from .adapters.postgres.migrate import upgrade_to_head
from .adapters.postgres.notifier import Notifier
from .adapters.postgres.outbox import EventLog
from .adapters.postgres.unit_of_work import PostgresUnitOfWork
from .application.jobs import ServiceJob, job_handlers
from .application.ports import ObjectStore
from .application.service_commands import ServiceCommands
from .settings import Settings

log = logging.getLogger(__name__)
EMBEDDED_DATABASE = "servicecontrol"


@contextlib.contextmanager
def database_url(settings: Settings) -> Iterator[str]:
    """The configured URL, or an embedded server's (started here, stopped on exit)."""
    if settings.database_url:
        yield settings.database_url
        return
    server = EmbeddedPostgres(settings.data_dir / "postgres")
    server.start()
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

        store = LocalDirectoryObjectStore(settings.data_dir / "objects")
    for bucket in (settings.source_bucket, settings.image_bucket):
        store.ensure_bucket(bucket)
    return store


@dataclass
class Application:
    settings: Settings
    url: str
    engine: AsyncEngine
    store: ObjectStore
    commands: ServiceCommands
    handlers: dict[str, ServiceJob]
    operations_notifier: Notifier
    events: EventLog

    async def close(self) -> None:
        await self.operations_notifier.close()
        await self.engine.dispose()


async def build(settings: Settings, url: str, *, migrate: bool | None = None) -> Application:
    if settings.migrate_on_start if migrate is None else migrate:
        upgrade_to_head(url)
    engine = create_engine(url)
    store = object_store(settings)
    notifier = Notifier(url, "servicecontrol_operations")
    notifier.start()
    commands = ServiceCommands(lambda: PostgresUnitOfWork(engine), settings, store, notifier)
    handlers = job_handlers(engine, settings, store, RecordedComputeDriver(engine))
    events = EventLog(engine, poll_seconds=settings.job_poll_seconds)
    return Application(settings, url, engine, store, commands, handlers, notifier, events)
