"""The running server's standard services: every method is found through the generic
handlers (none is registered one by one, api/server.add_services), and a method nobody
serves gets UNIMPLEMENTED, whether its service exists or not. The health service
(api/health.py) answers Check, Watch and List on the event loop, without an error in the
log, and its watchers end once the server shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from servicecontrol_server.api.health import HealthServicer
from servicecontrol_server.api.server import SERVICE_NAME, start_grpc
from tests.support.server import Harness

Status = health_pb2.HealthCheckResponse
WAIT = 10.0


@contextlib.asynccontextmanager
async def _server(
    harness: Harness,
) -> AsyncIterator[tuple[health_pb2_grpc.HealthStub, HealthServicer]]:
    """A second gRPC server over the harness's application, whose health servicer the
    test holds."""
    server, port, health = await start_grpc(harness.app.use_cases, "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield health_pb2_grpc.HealthStub(channel), health
    finally:
        await channel.close()
        await server.stop(0)


async def _next(stream: grpc.aio.UnaryStreamCall) -> int:
    message = await asyncio.wait_for(stream.read(), WAIT)
    assert message is not grpc.aio.EOF
    return message.status


async def test_check_answers_and_an_unknown_name_is_not_found(harness: Harness) -> None:
    stub = health_pb2_grpc.HealthStub(harness.channel)
    for name in ("", SERVICE_NAME):
        checked = await stub.Check(health_pb2.HealthCheckRequest(service=name))
        assert checked.status == Status.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_answers_every_status(harness: Harness) -> None:
    stub = health_pb2_grpc.HealthStub(harness.channel)
    listed = await stub.List(health_pb2.HealthListRequest())
    assert {name: s.status for name, s in listed.statuses.items()} == {
        "": Status.SERVING,
        SERVICE_NAME: Status.SERVING,
    }


async def test_watch_sends_each_change_and_ends_at_shutdown(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with _server(harness) as (stub, health):
        watched = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        unknown = stub.Watch(health_pb2.HealthCheckRequest(service="later.Service"))
        assert await _next(watched) == Status.SERVING
        # A name nobody reports yet: SERVICE_UNKNOWN, and the stream stays open for it.
        assert await _next(unknown) == Status.SERVICE_UNKNOWN
        health.set("later.Service", Status.SERVING)
        assert await _next(unknown) == Status.SERVING
        health.set(SERVICE_NAME, Status.NOT_SERVING)
        assert await _next(watched) == Status.NOT_SERVING
        health.set(SERVICE_NAME, Status.SERVING)
        assert await _next(watched) == Status.SERVING

        health.enter_graceful_shutdown()
        for stream in (watched, unknown):
            assert await _next(stream) == Status.NOT_SERVING
            assert await asyncio.wait_for(stream.read(), WAIT) is grpc.aio.EOF
            assert await stream.code() == grpc.StatusCode.OK
        # Shutting down is for good.
        health.set(SERVICE_NAME, Status.SERVING)
        checked = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
        assert checked.status == Status.NOT_SERVING
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_open_watches_do_not_hold_up_checks(harness: Harness) -> None:
    stub = health_pb2_grpc.HealthStub(harness.channel)
    watches = [stub.Watch(health_pb2.HealthCheckRequest(service="")) for _ in range(40)]
    try:
        for watch in watches:
            assert await _next(watch) == Status.SERVING
        checked = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=WAIT)
        assert checked.status == Status.SERVING
    finally:
        for watch in watches:
            watch.cancel()


@pytest.mark.parametrize(
    "method",
    ["/servicecontrol.v1.ServiceControl/NoSuchMethod", "/no.such.Service/Method"],
)
async def test_a_method_nobody_serves_is_unimplemented(harness: Harness, method: str) -> None:
    call = harness.channel.unary_unary(
        method, request_serializer=lambda b: b, response_deserializer=lambda b: b
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call(b"")
    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
