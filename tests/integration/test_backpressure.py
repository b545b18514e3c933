"""Backpressure on both endpoints: past the backlog of ready jobs, mutations are refused
with a retry delay; reads are served; once workers drain the queue, mutations pass."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.api.console import start_console
from tests.support.aws import raw_call
from tests.support.console import ConsoleClient
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, Harness, harness_settings, running_harness
from tests.support.waiting import wait_until

MAX_READY = 3


@pytest.fixture
async def queued(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    """A server without workers (jobs stay queued) and a small backlog limit."""
    settings = harness_settings(
        database_url,
        s3_server,
        tmp_path,
        max_ready_jobs=MAX_READY,
        backlog_check_seconds=0.05,
        backlog_retry_seconds=7,
        mutation_rate_per_second=0,
    )
    async with running_harness(settings, tmp_path, workers=0) as h:
        h.push_image()
        yield h


async def fill_the_backlog(h: Harness) -> list[str]:
    arns = []
    for i in range(MAX_READY + 1):
        created = await h.create(f"queued-{i}")
        arns.append(created.service.service_arn)
    return arns


@contextlib.asynccontextmanager
async def workers(h: Harness) -> AsyncIterator[None]:
    stop = asyncio.Event()
    tasks = h.app.background_tasks(stop, workers=2, role="drain")
    try:
        yield
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, 15)


async def test_grpc_mutations_are_refused_past_the_backlog_and_reads_are_not(
    queued: Harness,
) -> None:
    h = queued
    arns = await fill_the_backlog(h)

    async def refused() -> grpc.aio.AioRpcError | None:
        try:
            await h.stub.PauseService(
                api.PauseServiceRequest(service_arn=arns[0]), metadata=h.meta()
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return exc
            # OPERATION_IN_PROGRESS: admitted (the create is still queued).
        return None

    await wait_until(refused, timeout=10)
    exc = await refused()
    assert exc is not None
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    assert status is not None
    info, delay = error_details_pb2.ErrorInfo(), error_details_pb2.RetryInfo()
    [packed_info] = [d for d in status.details if d.Is(error_details_pb2.ErrorInfo.DESCRIPTOR)]
    [packed_delay] = [d for d in status.details if d.Is(error_details_pb2.RetryInfo.DESCRIPTOR)]
    packed_info.Unpack(info)
    packed_delay.Unpack(delay)
    assert info.reason == "BACKLOG_FULL"
    assert delay.retry_delay.ToTimedelta().total_seconds() == 7
    # A refused create adds nothing to the queue.
    await expect_error(h.create("one-too-many"), grpc.StatusCode.RESOURCE_EXHAUSTED)
    listed = await h.stub.ListServices(api.ListServicesRequest(), metadata=h.meta())
    assert sorted(s.service_name for s in listed.services) == sorted(
        f"queued-{i}" for i in range(MAX_READY + 1)
    )
    # Reads are served.
    await h.describe(arns[0])
    await h.stub.ListOperations(api.ListOperationsRequest(service_arn=arns[0]), metadata=h.meta())

    async with workers(h):

        async def admitted() -> bool:
            try:
                await h.create("after-the-drain")
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, exc
                return False
            return True

        await wait_until(admitted, timeout=30, interval=0.1)


async def test_app_runner_mutations_are_throttled_past_the_backlog_and_reads_are_not(
    queued: Harness,
) -> None:
    h = queued
    arns = await fill_the_backlog(h)
    signed = h.aws_credentials()

    async def throttled() -> bool:
        answer = await raw_call(
            h.aws_port, "AppRunner.PauseService", {"ServiceArn": arns[0]}, credentials=signed
        )
        return answer.json()["__type"] == "ThrottlingException"

    await wait_until(throttled, timeout=10)
    answer = await raw_call(
        h.aws_port, "AppRunner.PauseService", {"ServiceArn": arns[0]}, credentials=signed
    )
    # ThrottlingException, HTTP 400: botocore and the other SDKs retry it with backoff.
    assert (answer.status, answer.json()["__type"]) == (400, "ThrottlingException")
    listed = await raw_call(h.aws_port, "AppRunner.ListServices", {}, credentials=signed)
    assert listed.status == 200
    assert len(listed.json()["ServiceSummaryList"]) == MAX_READY + 1
    described = await raw_call(
        h.aws_port, "AppRunner.DescribeService", {"ServiceArn": arns[0]}, credentials=signed
    )
    assert described.status == 200

    async with workers(h):

        async def admitted() -> bool:
            answer = await raw_call(
                h.aws_port, "AppRunner.PauseService", {"ServiceArn": arns[0]}, credentials=signed
            )
            return answer.json().get("__type") != "ThrottlingException"

        await wait_until(admitted, timeout=30, interval=0.1)


async def test_console_mutations_are_refused_past_the_backlog_and_pages_are_served(
    queued: Harness,
) -> None:
    h = queued
    arns = await fill_the_backlog(h)
    runner, port = await start_console(h.app.use_cases, "127.0.0.1:0")
    client = ConsoleClient(f"http://127.0.0.1:{port}")
    try:
        assert (await client.sign_in(h.keys[ACCOUNT].token)).status == 200

        async def refused() -> bool:
            answer = await client.post("/service/pause", {"arn": arns[0]})
            return answer.status == 429

        await wait_until(refused, timeout=10)
        answer = await client.post("/service/pause", {"arn": arns[0]})
        assert "BACKLOG_FULL" in await answer.text()
        assert (await client.get("/services")).status == 200
    finally:
        await client.close()
        await runner.cleanup()
