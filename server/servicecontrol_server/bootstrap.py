"""The composition root: builds adapters from settings and wires them into the use cases,
the job handlers and the servers. Nothing else constructs adapters."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from .adapters.compute.recorded import RecordedComputeDriver
from .adapters.dns.zone_file import ZoneFileValidator
from .adapters.postgres.database import create_engine
from .adapters.postgres.embedded import EmbeddedPostgres
from .adapters.postgres.jobqueue import JOBS_CHANNEL, JobQueue
from .adapters.postgres.listen import PgListener
from .adapters.postgres.migrate import upgrade_to_head
from .adapters.postgres.outbox import EVENTS_CHANNEL, EventLog, OutboxRelay
from .adapters.postgres.repositories import OPERATIONS_CHANNEL
from .adapters.postgres.unit_of_work import PostgresUnitOfWork
from .api.use_cases import UseCases
from .application.connection_commands import ConnectionCommands
from .application.dns import DnsValidation
from .application.domain_commands import DomainCommands
from .application.events import EventQueries
from .application.image_upload import ImageUploads
from .application.jobs import ServiceJob, job_handlers
from .application.ports import ObjectStore, UnitOfWorkFactory
from .application.rate_limit import MutationRateLimiter
from .application.reaper import Reaper
from .application.service_commands import ServiceCommands
from .application.tag_commands import TagCommands
from .engine.worker import Worker
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
        # Not the superuser: a role that owns the application's schema and nothing else.
        yield server.application_url(EMBEDDED_DATABASE)
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

        objects = settings.data_dir / "objects"
        # Images are the users' data: no other local user may list or read them.
        objects.mkdir(mode=0o700, parents=True, exist_ok=True)
        objects.chmod(0o700)
        store = LocalDirectoryObjectStore(objects)
    for bucket in (settings.source_bucket, settings.image_bucket):
        store.ensure_bucket(bucket)
    return store


def unit_of_work_factory(engine: AsyncEngine) -> UnitOfWorkFactory:
    def uow() -> PostgresUnitOfWork:
        return PostgresUnitOfWork(engine)

    return uow


def worker_owner(role: str) -> str:
    return f"{role}:{socket.gethostname()}:{os.getpid()}"


@dataclass
class Application:
    """Everything one process runs, built from settings: the use cases the API layers
    call, the job handlers, and the engine's loops (workers, outbox relay, reaper)."""

    settings: Settings
    url: str
    engine: AsyncEngine
    store: ObjectStore
    uow: UnitOfWorkFactory
    use_cases: UseCases
    handlers: dict[str, ServiceJob]
    listener: PgListener
    dns_validation: DnsValidation

    async def close(self) -> None:
        await self.listener.close()
        await self.engine.dispose()

    def background_tasks(
        self, stop: asyncio.Event, *, workers: int, role: str
    ) -> list[asyncio.Task[None]]:
        """The engine's loops: job workers, outbox relay and TTL reaper, until `stop`."""
        s = self.settings
        tasks: list[asyncio.Task[None]] = []
        if workers > 0:
            worker = Worker(
                JobQueue(self.engine),
                self.uow,
                self.handlers,
                wakeups=lambda: PgListener(self.url, [JOBS_CHANNEL]),
                owner=worker_owner(role),
                concurrency=workers,
                lease_seconds=s.job_lease_seconds,
                heartbeat_seconds=s.job_heartbeat_seconds,
                poll_seconds=s.job_poll_seconds,
                backoff_base=s.job_backoff_base_seconds,
                backoff_max=s.job_backoff_max_seconds,
                shutdown_grace=s.grpc_grace_seconds,
            )
            tasks.append(asyncio.create_task(worker.run(stop), name="worker"))
        relay = OutboxRelay(self.engine)
        tasks.append(asyncio.create_task(relay.run(stop, s.job_poll_seconds), name="outbox-relay"))
        reaper = Reaper(self.uow, s, self.dns_validation)
        tasks.append(asyncio.create_task(reaper.run(stop), name="reaper"))
        return tasks


async def build(settings: Settings, url: str, *, migrate: bool | None = None) -> Application:
    if settings.migrate_on_start if migrate is None else migrate:
        upgrade_to_head(url)
    engine = create_engine(url)
    store = object_store(settings)
    uow = unit_of_work_factory(engine)
    # One LISTEN connection per process, shared by every WaitOperation and WatchEvents call.
    listener = PgListener(url, [OPERATIONS_CHANNEL, EVENTS_CHANNEL])
    listener.start()
    resources = resource_commands(engine, settings)
    use_cases = UseCases(
        commands=ServiceCommands(uow, settings, store, listener),
        connections=resources.connections,
        domains=resources.domains,
        tags=TagCommands(uow, settings),
        events=EventQueries(
            EventLog(engine, listener=listener, poll_seconds=settings.job_poll_seconds)
        ),
        settings=settings,
        rate_limiter=MutationRateLimiter(
            settings.mutation_rate_per_second, settings.mutation_burst
        ),
        images=ImageUploads(store, settings.source_bucket),
    )
    handlers = job_handlers(uow, settings, store, RecordedComputeDriver(engine))
    return Application(
        settings, url, engine, store, uow, use_cases, handlers, listener, resources.dns_validation
    )


async def serve(
    app: Application, stop: asyncio.Event, ready: Callable[[int], None] | None = None
) -> None:
    """`servicecontrol serve`: the gRPC API, the App Runner endpoint and (unless told
    otherwise) the engine's loops, until `stop`; then a graceful shutdown."""
    from .api.aws_json import start_aws_http
    from .api.server import start_grpc

    server, port, health_servicer = await start_grpc(app.use_cases, app.settings.grpc_listen)
    log.info("serving", extra={"port": port, "listen": app.settings.grpc_listen})
    aws = None
    if app.settings.aws_listen:
        aws, _ = await start_aws_http(app.use_cases, app.settings.aws_listen)
    if ready is not None:
        ready(port)
    tasks = app.background_tasks(stop, workers=app.settings.workers_in_server, role="serve")
    await stop.wait()
    log.info("shutting down")
    health_servicer.enter_graceful_shutdown()
    await server.stop(app.settings.grpc_grace_seconds)
    if aws is not None:
        await aws.cleanup()
    await _finish(tasks)


async def work(app: Application, stop: asyncio.Event, workers: int) -> None:
    """`servicecontrol worker`: the engine's loops only, until `stop`."""
    await _finish(app.background_tasks(stop, workers=workers, role="worker"))


async def _finish(tasks: list[asyncio.Task[None]]) -> None:
    """Waits for the loops to wind down (they stop themselves once `stop` is set)."""
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


@dataclass
class ResourceCommands:
    """The connection and custom domain use cases, and certificate DNS validation: all
    an operator's command needs, without the object store or the job engine."""

    connections: ConnectionCommands
    domains: DomainCommands
    dns_validation: DnsValidation


def resource_commands(engine: AsyncEngine, settings: Settings) -> ResourceCommands:
    uow = unit_of_work_factory(engine)
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
