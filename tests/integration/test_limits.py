"""Limits: page tokens bound to their account and listing, the mutation rate limit on
both endpoints, the server's own deadline, and the largest message and body."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import grpc
import pytest
from botocore.config import Config
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from tests.support.aws import ACCESS_KEY, REGION, SECRET_KEY, raw_call
from tests.support.rpc import expect_error
from tests.support.server import (
    ACCOUNT,
    OTHER_ACCOUNT,
    Harness,
    harness_settings,
    running_harness,
)


def _tamper(token: str) -> str:
    middle = len(token) // 2
    return token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]


async def test_page_tokens_are_refused_in_another_account_listing_or_tampered(
    harness: Harness,
) -> None:
    for name in ("first", "second"):
        await harness.create(name)
        await harness.create(name, account=OTHER_ACCOUNT)
    page = await harness.stub.ListServices(
        api.ListServicesRequest(page_size=1), metadata=harness.meta()
    )
    assert page.next_page_token
    # The same token, in this account, gives the next page.
    following = await harness.stub.ListServices(
        api.ListServicesRequest(page_size=1, page_token=page.next_page_token),
        metadata=harness.meta(),
    )
    assert len(following.services) == 1
    for token, account in (
        (page.next_page_token, OTHER_ACCOUNT),
        (_tamper(page.next_page_token), ACCOUNT),
    ):
        err = await expect_error(
            harness.stub.ListServices(
                api.ListServicesRequest(page_size=1, page_token=token),
                metadata=harness.meta(account),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert err.reason == "INVALID_PAGE_TOKEN"
    err = await expect_error(
        harness.stub.ListConnections(
            api.ListConnectionsRequest(page_token=page.next_page_token), metadata=harness.meta()
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert err.reason == "INVALID_PAGE_TOKEN"


@pytest.fixture
async def limited(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    settings = harness_settings(
        database_url,
        s3_server,
        tmp_path,
        mutation_rate_per_second=1.0,
        mutation_burst=2,
        rpc_deadline_seconds=2.0,
        max_request_bytes=64 * 1024,
    )
    async with running_harness(settings, tmp_path, workers=0) as h:
        yield h


def _delete(arn: str = "") -> api.DeleteServiceRequest:
    return api.DeleteServiceRequest(
        service_arn=arn or f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/x/" + "0" * 32
    )


async def test_mutations_are_rate_limited_per_account_on_grpc(limited: Harness) -> None:
    stub, meta = limited.stub, limited.meta()
    for _ in range(2):
        await expect_error(stub.DeleteService(_delete(), metadata=meta), grpc.StatusCode.NOT_FOUND)
    try:
        await stub.DeleteService(_delete(), metadata=meta)
        raise AssertionError("the third mutation in a burst of 2 was served")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
        status = rpc_status.from_call(exc)  # type: ignore[arg-type]
        assert status is not None
        infos = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
        retry = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
        info, delay = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
        infos[0].Unpack(info)
        retry[0].Unpack(delay)
        assert info.reason == "RATE_LIMITED"
        assert 0 < delay.retry_delay.ToTimedelta().total_seconds() <= 1.0
    # Reads are not limited; another account has its own bucket.
    for _ in range(5):
        await stub.ListServices(api.ListServicesRequest(), metadata=meta)
    await expect_error(
        stub.DeleteService(
            _delete(f"arn:aws:apprunner:us-east-1:{OTHER_ACCOUNT}:service/x/" + "0" * 32),
            metadata=limited.meta(OTHER_ACCOUNT),
        ),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_mutations_are_throttled_on_app_runner_and_botocore_retries(
    limited: Harness,
) -> None:
    arn = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/x/" + "0" * 32
    answers = [
        await raw_call(limited.aws_port, "AppRunner.PauseService", {"ServiceArn": arn})
        for _ in range(3)
    ]
    assert [a.json()["__type"] for a in answers[:2]] == ["ResourceNotFoundException"] * 2
    assert (answers[2].status, answers[2].json()["__type"]) == (400, "ThrottlingException")

    client = boto3.client(
        "apprunner",
        endpoint_url=f"http://127.0.0.1:{limited.aws_port}",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=Config(retries={"mode": "standard", "total_max_attempts": 10}),
    )

    async def drain() -> None:
        for _ in range(10):
            answer = await raw_call(limited.aws_port, "AppRunner.PauseService", {"ServiceArn": arn})
            if answer.json()["__type"] == "ThrottlingException":
                return
        raise AssertionError("the bucket never ran dry")

    def pause() -> dict[str, Any]:
        try:
            client.pause_service(ServiceArn=arn)
        except client.exceptions.ResourceNotFoundException as exc:
            return dict(exc.response["ResponseMetadata"])
        raise AssertionError("paused a service that does not exist")

    # Right after the bucket ran dry: botocore's retries of ThrottlingException get through.
    await drain()
    metadata = await asyncio.to_thread(pause)
    assert metadata["RetryAttempts"] >= 1


async def test_every_unary_call_has_a_server_deadline(
    limited: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def stuck(*args: Any) -> Any:
        await asyncio.sleep(60)

    monkeypatch.setattr(limited.app.use_cases.commands, "list_services", stuck)
    err = await expect_error(
        limited.stub.ListServices(api.ListServicesRequest(), metadata=limited.meta(), timeout=30),
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )
    assert err.reason == "REQUEST_TIMED_OUT"
    # WaitOperation's deadline starts after its own wait.
    created = await limited.create("never-runs")
    response = await limited.stub.WaitOperation(
        api.WaitOperationRequest(
            operation_id=created.operation_id, timeout=duration_pb2.Duration(seconds=3)
        ),
        metadata=limited.meta(),
        timeout=30,
    )
    assert response.operation.status == pb.Operation.PENDING


async def test_largest_message_and_body(limited: Harness) -> None:
    big = api.CreateServiceRequest(service_name="big", request_id="r" * (100 * 1024))
    try:
        await limited.stub.CreateService(big, metadata=limited.meta())
        raise AssertionError("an oversize message was served")
    except grpc.aio.AioRpcError as exc:
        assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
    answer = await raw_call(
        limited.aws_port, "AppRunner.ListServices", {"NextToken": "x" * (100 * 1024)}
    )
    assert (answer.status, answer.json()["__type"]) == (400, "InvalidRequestException")
    assert "exceeds" in answer.json()["Message"]
