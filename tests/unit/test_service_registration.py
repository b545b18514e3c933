"""How the gRPC server is given its services: every method of the API, health and
reflection is served through a generic handler, and none is registered per method (the
asyncio server would then wait on one pending request per registered method for every
call it accepts)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from servicecontrol.v1 import service_control_pb2
from servicecontrol_server.api.health import HealthServicer
from servicecontrol_server.api.server import add_services
from servicecontrol_server.api.servicer import ServiceControlServicer


class _RecordingServer:
    def __init__(self) -> None:
        self.generic: list[grpc.GenericRpcHandler] = []
        self.registered: list[str] = []

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: Any) -> None:
        self.registered.append(service_name)


def _added() -> _RecordingServer:
    server = _RecordingServer()
    # The registration functions only look the servicer's methods up.
    servicer = ServiceControlServicer.__new__(ServiceControlServicer)
    add_services(cast(grpc.aio.Server, server), servicer, HealthServicer())
    return server


def _methods() -> list[str]:
    services = [
        service_control_pb2.DESCRIPTOR.services_by_name["ServiceControl"],
        health_pb2.DESCRIPTOR.services_by_name["Health"],
        reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"],
    ]
    return [f"/{s.full_name}/{m.name}" for s in services for m in s.methods]


def test_no_method_is_registered_one_by_one() -> None:
    assert _added().registered == []


def test_every_method_of_the_three_services_has_a_generic_handler() -> None:
    server = _added()
    methods = _methods()
    assert len(methods) > 40
    assert reflection.SERVICE_NAME in {m.split("/")[1] for m in methods}
    missing = [
        method
        for method in methods
        if not any(
            h.service(cast(grpc.HandlerCallDetails, SimpleNamespace(method=method)))
            for h in server.generic
        )
    ]
    assert missing == []
