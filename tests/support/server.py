"""A real ServiceControl server inside the test process: real Postgres, a real S3 test
server, the gRPC API on a free port, and (unless told otherwise) job workers and the
outbox relay running as they do in `servicecontrol serve`."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import service_control_pb2_grpc as api_grpc
from servicecontrol_server.api.aws_json import start_aws_http
from servicecontrol_server.api.server import start_grpc
from servicecontrol_server.bootstrap import Application, build
from servicecontrol_server.domain.identity import NewKey, Role
from servicecontrol_server.settings import Settings
from tests.support.images import build_docker_archive

ACCOUNT = "111111111111"
OTHER_ACCOUNT = "222222222222"


@dataclass
class Harness:
    app: Application
    settings: Settings
    stub: api_grpc.ServiceControlStub
    channel: grpc.aio.Channel
    port: int
    tmp: Path
    # The App Runner (AWS JSON) endpoint's port; 0 when settings.aws_listen is empty.
    aws_port: int = 0
    # A writer key of each test account (ACCOUNT, OTHER_ACCOUNT).
    keys: dict[str, NewKey] = field(default_factory=dict)

    def meta(self, account: str = ACCOUNT) -> tuple[tuple[str, str], ...]:
        """The metadata of a call made with `account`'s writer key."""
        return bearer(self.keys[account].token)

    def aws_credentials(self, account: str = ACCOUNT) -> tuple[str, str]:
        """`account`'s writer key as an AWS access key id and secret access key."""
        key = self.keys[account]
        return key.key.key_id, key.secret

    async def new_key(
        self, account: str = ACCOUNT, role: Role = Role.WRITER, expires_in: int | None = None
    ) -> NewKey:
        await self.app.identity.create_account(account)
        return await self.app.identity.create_key(account, role, expires_in)

    def push_image(
        self, identifier: str = "hello-web:1.0", layers: int = 2, layer_size: int = 256
    ) -> str:
        from servicecontrol_server.application.images import push_docker_archive

        archive = build_docker_archive(
            self.tmp / f"{uuid.uuid4().hex}.tar",
            layers=layers,
            layer_size=layer_size,
            legacy=False,
            repo_tag=identifier,
        )
        push_docker_archive(self.app.store, self.settings.source_bucket, archive, identifier)
        return identifier

    async def create(
        self, name: str, image: str = "hello-web:1.0", account: str = ACCOUNT, **extra: Any
    ) -> api.CreateServiceResponse:
        request = api.CreateServiceRequest(
            service_name=name,
            source_configuration=pb.SourceConfiguration(
                image_repository=pb.ImageRepository(image_identifier=image)
            ),
            **extra,
        )
        return await self.stub.CreateService(request, metadata=self.meta(account))

    async def wait(
        self, operation_id: str, account: str = ACCOUNT, timeout: float = 20
    ) -> pb.Operation:
        from google.protobuf import duration_pb2

        response = await self.stub.WaitOperation(
            api.WaitOperationRequest(
                operation_id=operation_id, timeout=duration_pb2.Duration(seconds=int(timeout))
            ),
            metadata=self.meta(account),
            timeout=timeout + 5,
        )
        return response.operation

    async def describe(self, arn: str, account: str = ACCOUNT) -> pb.Service:
        response = await self.stub.DescribeService(
            api.DescribeServiceRequest(service_arn=arn), metadata=self.meta(account)
        )
        return response.service

    async def running_service(self, name: str, **kwargs: Any) -> pb.Service:
        created = await self.create(name, **kwargs)
        op = await self.wait(created.operation_id)
        assert op.status == pb.Operation.SUCCEEDED, op
        return await self.describe(created.service.service_arn)


@dataclass(frozen=True)
class TlsClient:
    """What a test client trusts and presents on a TLS server: PEM files."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    def grpc_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )


def client_channel(settings: Settings, port: int, tls: TlsClient | None) -> grpc.aio.Channel:
    """The one way tests open a channel to a harness's server."""
    target = f"127.0.0.1:{port}"
    if settings.tls_cert is None:
        return grpc.aio.insecure_channel(target)
    assert tls is not None, "a TLS server needs a TlsClient"
    return grpc.aio.secure_channel(target, tls.grpc_credentials())


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


async def refused_within_bound(
    harness: Harness, token: str, since: float, bound: float | None = None
) -> float:
    """Calls ListServices with `token` until it is refused, failing if a call begun more
    than `bound` seconds (the key cache's, by default) after `since` (the event loop's
    clock, taken once a key change committed) is admitted: what the key cache promises.
    Returns the seconds from `since` to the refusal."""
    bound = harness.settings.api_key_cache_seconds if bound is None else bound
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            await harness.stub.ListServices(api.ListServicesRequest(), metadata=bearer(token))
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED, err
            return loop.time() - since
        assert started - since < bound, (
            f"admitted {started - since:.3f} s after the change (bound {bound} s)"
        )


async def create_test_keys(app: Application) -> dict[str, NewKey]:
    keys = {}
    for account in (ACCOUNT, OTHER_ACCOUNT):
        await app.identity.create_account(account)
        keys[account] = await app.identity.create_key(account, Role.WRITER)
    return keys


def harness_settings(database_url: str, s3: Any, tmp: Path, **overrides: Any) -> Settings:
    suffix = uuid.uuid4().hex[:10]
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": tmp / "data",
        "s3_endpoint": s3.endpoint,
        "s3_access_key": s3.access_key,
        "s3_secret_key": s3.secret_key,
        "source_bucket": f"source-{suffix}",
        "image_bucket": f"images-{suffix}",
        "grpc_listen": "127.0.0.1:0",
        "aws_listen": "127.0.0.1:0",
        "default_account": ACCOUNT,
        "job_poll_seconds": 0.5,
        "job_backoff_base_seconds": 0.05,
        "job_backoff_max_seconds": 0.2,
        # Transient failures end an operation within seconds unless a test says otherwise.
        "job_retry_window_seconds": 2.0,
        "job_lease_seconds": 5.0,
        "job_heartbeat_seconds": 1.0,
        "grpc_grace_seconds": 2.0,
        "log_format": "text",
        "metrics_listen": "",
    }
    values.update(overrides)
    return Settings(**values)


@contextlib.asynccontextmanager
async def running_harness(
    settings: Settings, tmp: Path, *, workers: int = 2, tls_client: TlsClient | None = None
) -> AsyncIterator[Harness]:
    app = await build(settings, settings.database_url, migrate=False, serving=True)
    server, port, _ = await start_grpc(app.use_cases, settings.grpc_listen)
    aws_runner, aws_port = (
        await start_aws_http(app.use_cases, settings.aws_listen)
        if settings.aws_listen
        else (None, 0)
    )
    stop = asyncio.Event()
    tasks = app.background_tasks(stop, workers=workers, role="test")
    channel = client_channel(settings, port, tls_client)
    try:
        yield Harness(
            app,
            settings,
            api_grpc.ServiceControlStub(channel),
            channel,
            port,
            tmp,
            aws_port,
            await create_test_keys(app),
        )
    finally:
        stop.set()
        await channel.close()
        await server.stop(0.5)
        if aws_runner is not None:
            await aws_runner.cleanup()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 15)
        await app.close()


@pytest.fixture
async def harness(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    settings = harness_settings(database_url, s3_server, tmp_path)
    async with running_harness(settings, tmp_path) as h:
        h.push_image()
        yield h


@contextlib.asynccontextmanager
async def rate_limited_harness(
    database_url: str, s3: Any, tmp: Path, rate: float, burst: int
) -> AsyncIterator[Harness]:
    """A harness (no job workers) whose accounts may send `burst` mutations at once,
    then `rate` a second: throttling within a test's reach."""
    settings = harness_settings(
        database_url, s3, tmp, mutation_rate_per_second=rate, mutation_burst=burst
    )
    async with running_harness(settings, tmp, workers=0) as h:
        yield h
