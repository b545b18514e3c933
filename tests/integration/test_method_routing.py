"""The running server finds every method through its generic handlers (none is registered
one by one, api/server.add_services): the health check answers, and a method nobody serves
gets UNIMPLEMENTED, whether its service exists or not."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from servicecontrol_server.api.server import SERVICE_NAME
from tests.support.server import Harness


async def test_health_answers(harness: Harness) -> None:
    stub = health_pb2_grpc.HealthStub(harness.channel)
    checked = await stub.Check(health_pb2.HealthCheckRequest(service=""))
    assert checked.status == health_pb2.HealthCheckResponse.SERVING
    service = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    assert service.status == health_pb2.HealthCheckResponse.SERVING


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
