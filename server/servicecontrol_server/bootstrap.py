"""The composition root: builds adapters from settings and wires them into the use cases,
the job handlers and the servers. Nothing else constructs adapters."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import psycopg
from sqlalchemy.ext.asyncio import AsyncEngine

from . import tracing
from .adapters.compute.recorded import RecordedComputeDriver
from .adapters.crypto.aesgcm import AesGcmSecretBox, decode_kek, load_or_create_kek
from .adapters.dns.zone_file import ZoneFileValidator
from .adapters.objectstore.bounded import BoundedObjectStore
from .adapters.objectstore.timed import TimedObjectStore
from .adapters.postgres import direct, stats
from .adapters.postgres.database import (
    create_engine,
    libpq_url,
    single_statement,
    sqlalchemy_url,
)
from .adapters.postgres.direct_reads import DirectReadUnitOfWork
from .adapters.postgres.embedded import EmbeddedPostgres, EmbeddedPostgresError
from .adapters.postgres.event_hub import EventHub
from .adapters.postgres.identity import PostgresIdentityStore
from .adapters.postgres.jobqueue import JOBS_CHANNEL, JobQueue
from .adapters.postgres.key_cache import KeyCache
from .adapters.postgres.key_changes import KeyChangeListener
from .adapters.postgres.listen import PgListener
from .adapters.postgres.migrate import head_revision, upgrade_to_head
from .adapters.postgres.outbox import EVENTS_CHANNEL, OutboxRelay
from .adapters.postgres.presence import AdvisoryLockPresence, announce_worker
from .adapters.postgres.repositories import OPERATIONS_CHANNEL
from .adapters.postgres.traced import TracedPostgresUnitOfWork
from .adapters.postgres.unit_of_work import PostgresUnitOfWork
from .api.use_cases import UseCases
from .application.backpressure import BacklogGate
from .application.config_commands import ConfigCommands
from .application.connection_commands import ConnectionCommands
from .application.dns import DnsValidation
from .application.domain_commands import DomainCommands
from .application.events import EventQueries
from .application.identity import Identity
from .application.image_upload import ImageUploads
from .application.jobs import ServiceJob, job_handlers
from .application.ports import ObjectStore, ObjectStoreUnavailable, UnitOfWorkFactory
from .application.rate_limit import MutationRateLimiter
from .application.reaper import Reaper
from .application.service_commands import ServiceCommands
from .application.tag_commands import TagCommands
from .application.vpc_commands import VpcCommands
from .engine.worker import Worker
from .metrics import observe_job, observe_reaped, set_backlog
from .settings import Settings
from .startup import StartupError, address_in_use, check_data_dir, redact, setting_hint

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
        # Not the superuser: a role that owns the application's schema and nothing else.
        yield server.application_url(EMBEDDED_DATABASE)
    finally:
        server.stop()


# How long a start waits for a database that is starting, recovering or restarting.
DATABASE_STARTING_WAIT_SECONDS = 60.0


def check_database(
    url: str, timeout: float = 5.0, starting_wait: float = DATABASE_STARTING_WAIT_SECONDS
) -> None:
    """Connects once, so an unreachable or refused database is one clear line. A server
    that answers but is still starting up or recovering (after a crash or an immediate
    restart) is waited for, up to `starting_wait` seconds, with one line saying so."""
    hint = f"check {setting_hint('database_url')}"
    try:
        sqlalchemy_url(url)
    except ValueError as exc:
        raise StartupError(f"database URL is not valid ({exc}): {hint}") from exc
    deadline = time.monotonic() + starting_wait
    said = False
    while True:
        try:
            with psycopg.connect(libpq_url(url), connect_timeout=max(1, int(timeout))):
                return
        except (psycopg.Error, ValueError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            if database_starting(exc) and time.monotonic() < deadline:
                if not said:
                    log.warning("the database is starting or recovering; waiting: %s", reason)
                    said = True
                time.sleep(0.5)
                continue
            raise StartupError(
                f"cannot reach the database at {redact(url)} ({reason}): {hint}"
            ) from exc


@contextlib.contextmanager
def starting_on_database(url: str) -> Iterator[None]:
    """Startup steps that query the database: losing it meanwhile (a restart, a failover)
    is one clear line and exit status 2, so a supervisor starts the process again."""
    from sqlalchemy.exc import DBAPIError

    from .domain.errors import BackendUnavailable

    try:
        yield
    except (DBAPIError, psycopg.Error, BackendUnavailable) as exc:
        reason = " ".join(str(getattr(exc, "orig", None) or exc).split()) or type(exc).__name__
        raise StartupError(
            f"lost the database at {redact(url)} while starting ({reason}); "
            "start again once it is back"
        ) from exc


def database_starting(exc: BaseException) -> bool:
    """Whether the server refused a connection only because it is starting, recovering
    or shutting down (SQLSTATE 57P03), which passes by itself."""
    if getattr(exc, "sqlstate", None) == "57P03":
        return True
    return "the database system is" in str(exc)


def object_store(settings: Settings) -> ObjectStore:
    if settings.s3_endpoint:
        from .adapters.objectstore.minio_store import MinioObjectStore

        store: ObjectStore = MinioObjectStore(
            settings.s3_endpoint,
            settings.s3_access_key,
            settings.s3_secret_key,
            secure=settings.s3_secure,
            region=settings.s3_region,
            # A stuck read gives its thread back after the per-call bound.
            read_timeout=settings.object_store_call_timeout_seconds,
        )
    else:
        from .adapters.objectstore.local_store import LocalDirectoryObjectStore

        objects = check_data_dir(settings.data_dir) / "objects"
        # Images are the users' data: no other local user may list or read them.
        objects.mkdir(mode=0o700, parents=True, exist_ok=True)
        objects.chmod(0o700)
        store = LocalDirectoryObjectStore(objects)
    # Every call's latency goes to the metrics, and, when tracing is on, a span.
    timed = cast(ObjectStore, TimedObjectStore(store))
    if tracing.enabled():
        from .adapters.objectstore.traced import TracedObjectStore

        return cast(ObjectStore, TracedObjectStore(timed))
    return timed


def bounded_store(store: ObjectStore, settings: Settings, lane: str) -> BoundedObjectStore:
    """`store` with every call bounded in time, on a pool of threads for `lane` alone."""
    threads = (
        settings.object_store_job_threads
        if lane == "jobs"
        else settings.object_store_request_threads
    )
    return BoundedObjectStore(
        store,
        lane=lane,
        call_timeout=settings.object_store_call_timeout_seconds,
        threads=threads,
    )


def ensure_buckets(store: ObjectStore, settings: Settings) -> bool:
    """Creates the buckets if missing; False (and one line) when the object store cannot
    be reached right now. A process still starts then: most calls need no object store,
    and a replica restarted during an object-store outage must not stay down with it."""
    try:
        for bucket in (settings.source_bucket, settings.image_bucket):
            store.ensure_bucket(bucket)
    except ObjectStoreUnavailable as exc:
        log.warning("object store unreachable at start; buckets checked once it is back: %s", exc)
        return False
    return True


async def ensure_buckets_eventually(
    store: ObjectStore, settings: Settings, *, first_delay: float = 0.5, max_delay: float = 10.0
) -> None:
    """Retries ensure_buckets, with capped backoff, until it succeeds."""
    delay = first_delay
    while True:
        await asyncio.sleep(delay)
        try:
            for bucket in (settings.source_bucket, settings.image_bucket):
                await asyncio.to_thread(store.ensure_bucket, bucket)
        except ObjectStoreUnavailable:
            delay = min(delay * 2, max_delay)
            continue
        log.info("object store reachable; buckets checked")
        return


KEK_FILE = "kek"
CREDENTIALS_FILE = "credentials"


def secret_box(settings: Settings) -> AesGcmSecretBox:
    """The key-encryption key from settings, or the data dir's (created on first use)."""
    if settings.key_encryption_key:
        return AesGcmSecretBox(
            decode_kek(settings.key_encryption_key, "SERVICECONTROL_KEY_ENCRYPTION_KEY")
        )
    if settings.key_encryption_key_file is not None:
        return AesGcmSecretBox(load_or_create_kek(settings.key_encryption_key_file, create=False))
    return AesGcmSecretBox(load_or_create_kek(settings.data_dir / KEK_FILE, create=True))


def identity(engine: AsyncEngine, settings: Settings) -> Identity:
    return Identity(PostgresIdentityStore(engine), secret_box(settings))


def cached_identity(
    plain: Identity, engine: AsyncEngine, url: str, settings: Settings
) -> tuple[Identity, KeyChangeListener | None]:
    """The identity of a process that answers calls: its key lookups answered from the
    key cache while the cache's listener proves it current (docs/security.md, "The API
    key cache"), unless SERVICECONTROL_API_KEY_CACHE_SECONDS is 0."""
    if settings.api_key_cache_seconds <= 0:
        return plain, None
    cache = KeyCache(settings.api_key_cache_seconds)
    listener = KeyChangeListener(url, cache)
    listener.start()
    return Identity(PostgresIdentityStore(engine, cache), plain.box), listener


def unit_of_work_factory(engine: AsyncEngine) -> UnitOfWorkFactory:
    # A span per transaction when tracing is on.
    kind = TracedPostgresUnitOfWork if tracing.enabled() else PostgresUnitOfWork

    def uow() -> PostgresUnitOfWork:
        return kind(engine)

    return uow


def read_unit_of_work_factory(engine: AsyncEngine) -> UnitOfWorkFactory:
    """Units of work for queries that read with one statement: no transaction around it
    (on the engine's direct pool when it has one and nothing is traced)."""
    kind = TracedPostgresUnitOfWork if tracing.enabled() else PostgresUnitOfWork
    autocommit = single_statement(engine)
    pool = direct.attached(engine)
    if pool is not None and kind is PostgresUnitOfWork:

        def direct_uow() -> PostgresUnitOfWork:
            return DirectReadUnitOfWork(autocommit, pool)

        return direct_uow

    def uow() -> PostgresUnitOfWork:
        return kind(autocommit, read_only=True)

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
    identity: Identity
    presence: AdvisoryLockPresence
    # The bounded object-store lanes, whose idle threads stop on close.
    lanes: tuple[BoundedObjectStore, ...] = ()
    # The one reader of the event log that every WatchEvents stream of this process shares.
    event_hub: EventHub | None = None
    # Checks the buckets once the object store is back, when it was not at start.
    buckets_pending: asyncio.Task[None] | None = None
    # Keeps the key cache current (a process that answers calls, the cache on).
    key_changes: KeyChangeListener | None = None

    async def close(self) -> None:
        if self.buckets_pending is not None:
            self.buckets_pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.buckets_pending
        if self.event_hub is not None:
            await self.event_hub.close()
        if self.key_changes is not None:
            await self.key_changes.close()
        await self.listener.close()
        await direct.detach(self.engine)
        await self.engine.dispose()
        # What is still buffered is exported before the process ends.
        await asyncio.to_thread(tracing.shutdown)
        for lane in self.lanes:
            lane.close()

    def background_tasks(
        self, stop: asyncio.Event, *, workers: int, role: str, relay_and_reaper: bool = True
    ) -> list[asyncio.Task[None]]:
        """The engine's loops: job workers, outbox relay and TTL reaper, until `stop`."""
        s = self.settings
        tasks: list[asyncio.Task[None]] = []
        if workers > 0:
            owner = worker_owner(role)
            # Held while this process runs workers: how others know one is alive.
            tasks.append(
                asyncio.create_task(announce_worker(self.url, owner, stop), name="presence")
            )
            worker = Worker(
                JobQueue(self.engine),
                self.uow,
                self.handlers,
                wakeups=lambda: PgListener(self.url, [JOBS_CHANNEL]),
                owner=owner,
                concurrency=workers,
                lease_seconds=s.job_lease_seconds,
                heartbeat_seconds=s.job_heartbeat_seconds,
                poll_seconds=s.job_poll_seconds,
                backoff_base=s.job_backoff_base_seconds,
                backoff_max=s.job_backoff_max_seconds,
                retry_window=s.job_retry_window_seconds,
                shutdown_grace=s.grpc_grace_seconds,
                on_outcome=observe_job,
                tracer=tracing.AttemptTracing() if tracing.enabled() else None,
            )
            tasks.append(asyncio.create_task(worker.run(stop), name="worker"))
        if not relay_and_reaper:
            return tasks
        relay = OutboxRelay(self.engine)
        tasks.append(asyncio.create_task(relay.run(stop, s.job_poll_seconds), name="outbox-relay"))
        reaper = CountingReaper(self.uow, s, self.dns_validation, store=self.store)
        tasks.append(asyncio.create_task(reaper.run(stop), name="reaper"))
        return tasks


async def build(
    settings: Settings, url: str, *, migrate: bool | None = None, serving: bool = False
) -> Application:
    """Everything one process runs. `serving`: it answers API calls (`serve`), so its key
    lookups go through the key cache; a worker process never builds one."""
    if settings.migrate_on_start if migrate is None else migrate:
        upgrade_to_head(url)
    # Before anything traced is built: off unless an OTLP endpoint is configured.
    tracing.configure(settings)
    engine = create_engine(url)
    # The request path's hot single-statement reads (key lookup, Describe, List).
    direct.attach(engine, url)
    raw_store = object_store(settings)
    buckets_pending = (
        None
        if ensure_buckets(raw_store, settings)
        else asyncio.create_task(ensure_buckets_eventually(raw_store, settings), name="buckets")
    )
    # The request path and the job workers never share threads: a hung store delays
    # neither the other's calls nor requests that do not touch it.
    store = bounded_store(raw_store, settings, "request")
    job_store = bounded_store(raw_store, settings, "jobs")
    uow = unit_of_work_factory(engine)
    # One LISTEN connection per process, shared by every WaitOperation and WatchEvents call.
    listener = PgListener(url, [OPERATIONS_CHANNEL, EVENTS_CHANNEL])
    listener.start()
    event_hub = EventHub(
        engine,
        listener,
        poll_seconds=settings.job_poll_seconds,
        buffer_size=settings.watch_stream_buffer,
    )
    resources = resource_commands(engine, settings)
    callers, key_changes = (
        cached_identity(resources.identity, engine, url, settings)
        if serving
        else (resources.identity, None)
    )
    presence = AdvisoryLockPresence(engine)
    use_cases = UseCases(
        commands=ServiceCommands(
            uow, settings, store, listener, reader=read_unit_of_work_factory(engine)
        ),
        connections=resources.connections,
        domains=resources.domains,
        tags=TagCommands(uow, settings),
        configs=ConfigCommands(uow, settings),
        vpc=VpcCommands(uow, settings),
        events=EventQueries(
            event_hub,
            per_account=settings.watch_streams_per_account,
            per_server=settings.watch_streams_per_server,
        ),
        identity=callers,
        settings=settings,
        rate_limiter=MutationRateLimiter(
            settings.mutation_rate_per_second, settings.mutation_burst
        ),
        presence=presence,
        images=ImageUploads(store, settings.source_bucket),
        backlog_gate=BacklogGate(
            stats.PostgresJobBacklog(engine),
            max_ready=settings.max_ready_jobs,
            check_seconds=settings.backlog_check_seconds,
            retry_seconds=settings.backlog_retry_seconds,
        ),
    )
    handlers = job_handlers(
        uow,
        settings,
        job_store,
        RecordedComputeDriver(engine, None if tracing.enabled() else direct.attached(engine)),
        reader=read_unit_of_work_factory(engine),
    )
    return Application(
        settings,
        url,
        engine,
        store,
        uow,
        use_cases,
        handlers,
        listener,
        resources.dns_validation,
        callers,
        presence,
        (store, job_store),
        event_hub,
        buckets_pending,
        key_changes,
    )


@dataclass(frozen=True)
class Bound:
    """Where the endpoints of a running server listen (ports resolved)."""

    grpc: str
    aws: str | None
    metrics: str | None = None
    console: str | None = None


def bound_address(listen: str, port: int) -> str:
    host = listen.rpartition(":")[0] or "0.0.0.0"
    return f"{host}:{port}"


@contextlib.contextmanager
def _binding(what: str, listen: str, setting: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise address_in_use(what, listen, setting) from exc


class CountingReaper(Reaper):
    """The reaper, with its purges counted in the metrics."""

    async def reap_once(self) -> dict[str, int]:
        counts = await super().reap_once()
        observe_reaped(counts)
        return counts


def ops_probes(app: Application) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """What /metrics samples from the database, and what /readyz checks."""
    head: list[str | None] = []

    async def sample() -> None:
        b = await stats.backlog(app.engine)
        set_backlog(b.ready, b.oldest_ready_seconds, b.outbox_pending, b.outbox_lag_seconds)

    async def readiness() -> str | None:
        if not head:
            head.append(await asyncio.to_thread(head_revision))
        current = await stats.schema_revision(app.engine)
        if current != head[0]:
            return (
                f"database schema at {current or 'no revision'}, expected {head[0]}: "
                "run `servicecontrol migrate`"
            )
        return None

    return sample, readiness


def settle_heap() -> None:
    """Once a process has built what it serves with (`serve`: before it announces itself
    ready; `work`: before its loops start): one collection, then every object alive (its
    modules, the application, its pools and servers; ≈150,000 in a server) is moved where
    the cyclic garbage collector no longer looks (`gc.freeze`). A full collection walks
    every tracked object, and on a server those startup objects made it a stop of the
    event loop of 100–130 ms, every call waiting behind it; afterwards it walks only what
    the process made since. Frozen
    objects are still freed when their last reference goes; only a cycle among them
    would stay, and they live as long as the process anyway."""
    gc.collect()
    gc.freeze()


async def serve(
    app: Application, stop: asyncio.Event, ready: Callable[[Bound], None] | None = None
) -> None:
    """`servicecontrol serve`: the gRPC API, the App Runner endpoint, the operator's
    metrics and health endpoint and (unless told otherwise) the engine's loops, until
    `stop`; then a graceful shutdown."""
    from aiohttp import web

    from .api.aws_json import start_aws_http
    from .api.console import start_console
    from .api.ops_http import start_ops_http
    from .api.server import start_grpc

    s = app.settings
    server, port, health_servicer = await start_grpc(app.use_cases, s.grpc_listen)
    runners: list[web.AppRunner] = []
    aws_address = metrics_address = console_address = None
    try:
        if s.aws_listen:
            with _binding("App Runner", s.aws_listen, "aws_listen"):
                aws, aws_port = await start_aws_http(app.use_cases, s.aws_listen)
            runners.append(aws)
            aws_address = bound_address(s.aws_listen, aws_port)
        if s.metrics_listen:
            with _binding("metrics", s.metrics_listen, "metrics_listen"):
                ops, ops_port = await start_ops_http(s.metrics_listen, *ops_probes(app))
            runners.append(ops)
            metrics_address = bound_address(s.metrics_listen, ops_port)
        if s.console_listen:
            with _binding("console", s.console_listen, "console_listen"):
                console, console_port = await start_console(app.use_cases, s.console_listen)
            runners.append(console)
            console_address = bound_address(s.console_listen, console_port)
    except BaseException:
        for runner in runners:
            await runner.cleanup()
        await server.stop(0)
        raise
    settle_heap()
    if ready is not None:
        ready(
            Bound(bound_address(s.grpc_listen, port), aws_address, metrics_address, console_address)
        )
    # Job workers on this event loop only when asked: by default they run in processes
    # of their own (supervisor.py), started beside this.
    in_process = s.workers_in_server if s.worker_mode == "in-process" else 0
    tasks = app.background_tasks(stop, workers=in_process, role="serve")
    await stop.wait()
    log.info("shutting down", extra={"grace_seconds": s.grpc_grace_seconds})
    health_servicer.enter_graceful_shutdown()
    # Both APIs drain at once, each within the grace, while the workers (which saw `stop`
    # too) finish their jobs or hand them back.
    await asyncio.gather(
        server.stop(s.grpc_grace_seconds), *(runner.cleanup() for runner in runners)
    )
    await _finish(tasks)
    log.info("stopped")


async def work(
    app: Application,
    stop: asyncio.Event,
    workers: int,
    *,
    role: str = "worker",
    relay_and_reaper: bool = True,
) -> None:
    """`servicecontrol worker`: the engine's loops only, until `stop`."""
    settle_heap()
    await _finish(
        app.background_tasks(stop, workers=workers, role=role, relay_and_reaper=relay_and_reaper)
    )


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
    identity: Identity


def resource_commands(engine: AsyncEngine, settings: Settings) -> ResourceCommands:
    uow = unit_of_work_factory(engine)
    return ResourceCommands(
        ConnectionCommands(uow, settings),
        DomainCommands(uow, settings),
        DnsValidation(uow, ZoneFileValidator(settings.dns_zone_file)),
        identity(engine, settings),
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
