"""Bad input that once reached PostgreSQL or grpcio's defaults: NUL bytes, huge
durations, malformed protobuf bodies; and infrastructure details kept out of answers."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from moto.server import ThreadedMotoServer
from sqlalchemy import text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from tests.support.aws import raw_call
from tests.support.rpc import expect_error
from tests.support.server import Harness, harness_settings, running_harness

ENV_FIELD = (
    "source_configuration.image_repository.image_configuration.runtime_environment_variables"
)


async def rows(h: Harness) -> dict[str, int]:
    async with h.app.engine.connect() as conn:
        return {
            table: int((await conn.execute(text(f"select count(*) from {table}"))).scalar_one())
            for table in ("services", "operations", "jobs", "outbox", "connections")
        }


def with_env(env: dict[str, str], name: str = "nul-env") -> api.CreateServiceRequest:
    return api.CreateServiceRequest(
        service_name=name,
        source_configuration=pb.SourceConfiguration(
            image_repository=pb.ImageRepository(
                image_identifier="hello-web:1.0",
                image_configuration=pb.ImageConfiguration(runtime_environment_variables=env),
            )
        ),
    )


async def test_nul_bytes_are_invalid_arguments_on_grpc(harness: Harness) -> None:
    before = await rows(harness)
    for env in ({"GREETING": "hi\x00there"}, {"BAD\x00NAME": "x"}):
        err = await expect_error(
            harness.stub.CreateService(with_env(env), metadata=harness.meta()),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert any(f.startswith(ENV_FIELD) for f in err.field_violations), err
        assert "NUL" in err.message
    err = await expect_error(
        harness.stub.CreateService(
            api.CreateServiceRequest(service_name="a\x00b"), metadata=harness.meta()
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "service_name" in err.field_violations
    err = await expect_error(
        harness.stub.ListServices(
            api.ListServicesRequest(page_token="abc\x00"), metadata=harness.meta()
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "page_token" in err.field_violations
    err = await expect_error(
        harness.stub.DescribeOperation(
            api.DescribeOperationRequest(operation_id="\x00"), metadata=harness.meta()
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "operation_id" in err.field_violations
    assert await rows(harness) == before


async def test_nul_in_watch_events_resource_arn_is_invalid_argument(harness: Harness) -> None:
    call = harness.stub.WatchEvents(
        api.WatchEventsRequest(resource_arn="arn:aws:apprunner:us-east-1:1\x00"),
        metadata=harness.meta(),
    )
    try:
        async for _ in call:
            raise AssertionError("an event was streamed")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc
        assert "select" not in (exc.details() or "").lower()
    else:
        raise AssertionError("the stream ended without an error")


async def test_nul_bytes_are_invalid_request_on_app_runner(harness: Harness) -> None:
    before = await rows(harness)
    body: dict[str, Any] = {
        "ServiceName": "nul-env",
        "SourceConfiguration": {
            "ImageRepository": {
                "ImageIdentifier": "hello-web:1.0",
                "ImageRepositoryType": "ECR",
                "ImageConfiguration": {"RuntimeEnvironmentVariables": {"A": "b\x00c"}},
            }
        },
    }
    answer = await raw_call(harness.aws_port, "AppRunner.CreateService", body)
    assert answer.status == 400, answer.body
    assert answer.json()["__type"] == "InvalidRequestException"
    assert "RuntimeEnvironmentVariables" in answer.json()["Message"]
    # A lone surrogate is valid JSON but cannot be stored as text either.
    answer = await raw_call(
        harness.aws_port,
        "AppRunner.ListOperations",
        b'{"ServiceArn": "arn:aws:apprunner:us-east-1:111111111111:service/x/\\ud800"}',
    )
    assert (answer.status, answer.json()["__type"]) == (400, "InvalidRequestException")
    answer = await raw_call(harness.aws_port, "AppRunner.ListServices", {"NextToken": "\x00"})
    assert (answer.status, answer.json()["__type"]) == (400, "InvalidRequestException")
    assert await rows(harness) == before


async def test_wait_operation_timeout_out_of_range_is_invalid_argument(harness: Harness) -> None:
    created = await harness.create("waiter")
    for timeout in (
        duration_pb2.Duration(seconds=10**15),
        duration_pb2.Duration(seconds=-5),
        duration_pb2.Duration(seconds=1, nanos=-1),
        duration_pb2.Duration(nanos=2_000_000_000),
    ):
        err = await expect_error(
            harness.stub.WaitOperation(
                api.WaitOperationRequest(operation_id=created.operation_id, timeout=timeout),
                metadata=harness.meta(),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "timeout" in err.field_violations
    # A NUL elsewhere in the request, with a Duration no JSON form can express.
    err = await expect_error(
        harness.stub.WaitOperation(
            api.WaitOperationRequest(
                operation_id="\x00" + created.operation_id,
                timeout=duration_pb2.Duration(seconds=-(2**63)),
            ),
            metadata=harness.meta(),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "operation_id" in err.field_violations
    # A large valid timeout is bounded (at 10 minutes), not refused.
    op = await harness.stub.WaitOperation(
        api.WaitOperationRequest(
            operation_id=created.operation_id, timeout=duration_pb2.Duration(seconds=86400)
        ),
        metadata=harness.meta(),
        timeout=30,
    )
    assert op.operation.status == pb.Operation.SUCCEEDED


async def test_malformed_protobuf_body_is_invalid_argument(harness: Harness) -> None:
    for method in ("CreateService", "DescribeService", "ListServices"):
        call = harness.channel.unary_unary(
            f"/servicecontrol.v1.ServiceControl/{method}",
            request_serializer=lambda raw: raw,
            response_deserializer=lambda raw: raw,
        )
        # A truncated length-delimited field, and (field 1 is a string there) a string
        # that is not UTF-8.
        bodies = [b"\x0a\xff\xff\xff\xff\x0f"]
        if method != "ListServices":
            bodies.append(b"\x0a\x02\xc3\x28")
        for body in bodies:
            err = await expect_error(
                call(body, metadata=harness.meta()), grpc.StatusCode.INVALID_ARGUMENT
            )
            assert err.reason == "INVALID_REQUEST"
            assert "DecodeError" not in err.message
    stream = harness.channel.unary_stream(
        "/servicecontrol.v1.ServiceControl/WatchEvents",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )
    try:
        async for _ in stream(b"\x0a\xff\xff", metadata=harness.meta()):
            raise AssertionError("an event was streamed")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc


async def test_callers_never_see_infrastructure_details(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An S3 server of this test's own, stopped once the server has its buckets.
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, port = s3.get_host_and_port()
    store = SimpleNamespace(endpoint=f"{host}:{port}", access_key="k", secret_key="s")
    settings = harness_settings(database_url, store, tmp_path, job_max_attempts=2)
    async with running_harness(settings, tmp_path) as h:
        s3.stop()
        created = await h.create("no-store")
        op = await h.wait(created.operation_id)
        assert op.status == pb.Operation.FAILED, op
        service = await h.describe(created.service.service_arn)
        infos = []
        for detail in op.error.details:
            info = error_details_pb2.ErrorInfo()
            assert detail.Unpack(info)
            infos.append(str(info))
        said = " ".join([op.last_error, op.error.message, service.status_message, *infos])
        assert "image store is unavailable" in said
        for secret in (
            str(port),
            "127.0.0.1",
            settings.source_bucket,
            settings.image_bucket,
            "Error",
            "Exception",
            "urllib3",
        ):
            assert secret not in said, (secret, said)
    # Operators still find out what failed, and where.
    assert any(str(port) in str(getattr(r, "error", "")) for r in caplog.records)
