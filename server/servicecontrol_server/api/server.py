"""The gRPC server: the ServiceControl API with reflection and health, and the signal
handling of a server process (bootstrap.serve runs it with the engine's loops)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import SERVICE_NAME as HEALTH_SERVICE_NAME
from grpc_reflection.v1alpha import reflection

from servicecontrol.v1 import service_control_pb2, service_control_pb2_grpc

from .. import tracing
from ..startup import address_in_use
from .access_log import AccessLogInterceptor
from .auth import AuthInterceptor
from .guard import RequestGuard
from .health import HealthServicer
from .reflection import enable_reflection
from .region import RegionInterceptor
from .servicer import ServiceControlServicer
from .tls import grpc_credentials, tls_enabled
from .tracing import TracingInterceptor
from .use_cases import UseCases

SERVICE_NAME = service_control_pb2.DESCRIPTOR.services_by_name["ServiceControl"].full_name


async def start_grpc(
    use_cases: UseCases, listen: str
) -> tuple[grpc.aio.Server, int, HealthServicer]:
    s = use_cases.settings
    servicer = ServiceControlServicer(
        use_cases.commands,
        use_cases.events,
        connections=use_cases.connections,
        domains=use_cases.domains,
        presence=use_cases.presence,
        tags=use_cases.tags,
        configs=use_cases.configs,
        vpc=use_cases.vpc,
    )
    guard = RequestGuard(
        deadline_seconds=s.rpc_deadline_seconds,
        limiter=use_cases.rate_limiter,
        account_of=servicer.account,
        gate=use_cases.backlog_gate,
    )
    interceptors: list[grpc.aio.ServerInterceptor] = [
        AccessLogInterceptor(),
        AuthInterceptor(use_cases.identity),
        RegionInterceptor(s),
        guard,
    ]
    if tracing.enabled():
        # Outermost: the call's span covers the access log, authentication and the guard.
        interceptors.insert(0, TracingInterceptor())
    server = grpc.aio.server(
        # The access log sees every call; authentication comes before the guard, whose
        # rate limit counts the caller's account.
        interceptors=interceptors,
        options=[
            # Port reuse off: a second server on a busy port must fail, not share the
            # port and split calls between two databases.
            ("grpc.so_reuseport", 0),
            ("grpc.max_receive_message_length", s.max_request_bytes),
            ("grpc.max_send_message_length", s.max_response_bytes),
        ],
    )
    servicer.image_uploads = use_cases.images
    health_servicer = HealthServicer()
    add_services(server, servicer, health_servicer)
    try:
        port = (
            server.add_secure_port(listen, grpc_credentials(s))
            if tls_enabled(s)
            else server.add_insecure_port(listen)
        )
    except RuntimeError as exc:
        raise address_in_use("gRPC", listen, "grpc_listen") from exc
    if port == 0:
        raise address_in_use("gRPC", listen, "grpc_listen")
    await server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer


def add_services(
    server: grpc.aio.Server,
    servicer: ServiceControlServicer,
    health_servicer: HealthServicer,
) -> None:
    """The API, health and reflection, each served through its generic handler only.

    The generated `add_*_to_server` functions also register every method with gRPC's
    core. The asyncio server then keeps one pending request per registered method (48
    here) and, for every call it accepts, waits on all of them with `asyncio.wait`,
    which adds and removes a callback on each: about 55 µs of the event loop's time per
    call, measured alone. Through the generic handler it waits on one pending request,
    and finds the method in the same dictionary the registration would have used."""
    generic = cast(grpc.aio.Server, _GenericHandlersOnly(server))
    service_control_pb2_grpc.add_ServiceControlServicer_to_server(servicer, generic)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, generic)
    enable_reflection((SERVICE_NAME, HEALTH_SERVICE_NAME, reflection.SERVICE_NAME), generic)


class _GenericHandlersOnly:
    """A server as the generated registration functions see it: their generic handler is
    added, their per-method registration is not."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: tuple[grpc.GenericRpcHandler, ...]) -> None:
        self._server.add_generic_rpc_handlers(handlers)

    def add_registered_method_handlers(self, service_name: str, handlers: object) -> None:
        """Not registered: the generic handler added with them serves the same methods."""


async def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP (the terminal closed) stops the server as gracefully as SIGTERM.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)
