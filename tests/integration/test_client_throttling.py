"""The Python client under throttling: a throttled call (RESOURCE_EXHAUSTED, RATE_LIMITED
or BACKLOG_FULL) is retried after the server's RetryInfo delay, a bounded number of
times and never past the call's deadline; with retries off it raises a
ThrottlingException carrying the reason and the delay. A real server with a low mutation
rate shows a burst going through; a scripted one, the bounds."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_client import ServiceControlClient, ThrottlingException
from tests.integration.test_python_client import FakeServer, _pack, client_for, fake
from tests.support.server import ACCOUNT, Harness, rate_limited_harness

__all__ = ["fake"]  # the scripted server's fixture

RATE = 1.0  # mutations per second and account, after a burst of BURST
BURST = 2


@pytest.fixture
async def limited(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    async with rate_limited_harness(database_url, s3_server, tmp_path, RATE, BURST) as h:
        yield h


def real_client(h: Harness, **kwargs: Any) -> ServiceControlClient:
    return ServiceControlClient(f"127.0.0.1:{h.port}", api_key=h.keys[ACCOUNT].token, **kwargs)


def burst(client: ServiceControlClient, prefix: str, count: int, done: list[str]) -> None:
    """`count` CreateConnection calls back to back, without request ids (calls a retry
    could apply twice, were the refusal not made before the call runs); `done` gathers
    the names of those that were served."""
    for n in range(count):
        name = f"{prefix}-{n}"
        client.create_connection(connection_name=name, request_id="")
        done.append(name)


async def test_a_burst_goes_through_with_retries_each_call_applied_once(limited: Harness) -> None:
    client = real_client(limited)
    try:
        started = time.monotonic()
        names: list[str] = []
        await asyncio.to_thread(burst, client, "burst", 6, names)
        took = time.monotonic() - started
        listed = await asyncio.to_thread(client.list_connections)
    finally:
        client.close()
    assert sorted(c.connection_name for c in listed.connections) == names
    # Four calls beyond the burst had to wait for tokens at RATE per second.
    assert took >= (6 - BURST - 1) / RATE


async def test_with_retries_off_the_burst_fails_typed(limited: Harness) -> None:
    client = real_client(limited, retry_throttled=False)
    served: list[str] = []
    try:
        # However slow the machine, ten calls back to back outrun one token a second.
        with pytest.raises(ThrottlingException) as raised:
            await asyncio.to_thread(burst, client, "eager", 10, served)
        listed = await asyncio.to_thread(client.list_connections)
    finally:
        client.close()
    error = raised.value
    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
    assert error.retry_after is not None and 0 < error.retry_after <= 1 / RATE
    assert len(served) >= BURST
    # The refused call changed nothing.
    assert sorted(c.connection_name for c in listed.connections) == served


def throttled(times: int, delay: float, reason: str = "RATE_LIMITED") -> Any:
    """Refuses the first `times` calls as the server's throttle does, then answers."""
    seen = 0

    async def behaviour(request: Message, context: grpc.aio.ServicerContext) -> Any:
        nonlocal seen
        seen += 1
        if seen <= times:
            retry = duration_pb2.Duration()
            retry.FromTimedelta(timedelta(seconds=delay))
            status = status_pb2.Status(
                code=code_pb2.RESOURCE_EXHAUSTED,
                message="Too many mutating requests for this account.",
                details=[
                    _pack(error_details_pb2.ErrorInfo(reason=reason, domain="servicecontrol")),
                    _pack(error_details_pb2.RetryInfo(retry_delay=retry)),
                ],
            )
            await context.abort_with_status(rpc_status.to_status(status))
        return api.DeleteServiceResponse(operation_id="op-1")

    return behaviour


ARN = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/hello-web/" + "a" * 32


async def test_retries_wait_the_servers_delay_and_are_bounded(fake: FakeServer) -> None:
    fake.behaviours["DeleteService"] = throttled(2, 0.05, "BACKLOG_FULL")
    client = client_for(fake.port)
    started = time.monotonic()
    answer = await asyncio.to_thread(client.delete_service, ARN, request_id="")
    assert answer.operation_id == "op-1"
    assert time.monotonic() - started >= 2 * 0.05  # never earlier than the server said
    assert len(fake.named("DeleteService")) == 3

    fake.calls.clear()
    fake.behaviours["DeleteService"] = throttled(100, 0.01)
    bounded = client_for(fake.port, throttle_retries=3)
    with pytest.raises(ThrottlingException) as raised:
        await asyncio.to_thread(bounded.delete_service, ARN)
    assert raised.value.reason == "RATE_LIMITED"
    assert len(fake.named("DeleteService")) == 1 + 3


async def test_no_retry_past_the_calls_deadline(fake: FakeServer) -> None:
    fake.behaviours["DeleteService"] = throttled(100, 30.0)
    client = client_for(fake.port)
    started = time.monotonic()
    with pytest.raises(ThrottlingException) as raised:
        await asyncio.to_thread(client.delete_service, ARN, call_timeout=5.0)
    # The server's delay is beyond the deadline: the refusal comes back at once.
    assert time.monotonic() - started < 5.0
    assert raised.value.retry_after == 30.0
    assert len(fake.named("DeleteService")) == 1
