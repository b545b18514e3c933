"""The gRPC server process: the API with reflection and health, plus (by default) job
workers, the outbox relay and the TTL reaper, all stopped gracefully on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from servicecontrol.v1 import service_control_pb2, service_control_pb2_grpc

from ..application.reaper import Reaper
from ..bootstrap import Application
from ..engine.worker import Worker
from ..startup import address_in_use
from .servicer import ServiceControlServicer

log = logging.getLogger(__name__)
SERVICE_NAME = service_control_pb2.DESCRIPTOR.services_by_name["ServiceControl"].full_name


def worker_owner(role: str) -> str:
    return f"{role}:{socket.gethostname()}:{os.getpid()}"


async def start_grpc(
    app: Application, listen: str
) -> tuple[grpc.aio.Server, int, health.HealthServicer]:
    # Port reuse off: a second server on a busy port must fail, not share the port and
    # split calls between two databases.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    servicer = ServiceControlServicer(
        app.commands,
        app.settings.default_account,
        app.events,
        connections=app.connections,
        domains=app.domains,
        presence=app.presence,
    )
    service_control_pb2_grpc.add_ServiceControlServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError as exc:
        raise address_in_use("gRPC", listen, "grpc_listen") from exc
    if port == 0:
        raise address_in_use("gRPC", listen, "grpc_listen")
    await server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    return server, port, health_servicer


def background_tasks(
    app: Application, stop: asyncio.Event, *, workers: int, role: str
) -> list[asyncio.Task[None]]:
    """The engine's loops: job workers, outbox relay and TTL reaper."""
    from ..adapters.postgres.outbox import OutboxRelay
    from ..adapters.postgres.presence import announce_worker

    s = app.settings
    tasks: list[asyncio.Task[None]] = []
    if workers > 0:
        owner = worker_owner(role)
        tasks.append(
            asyncio.create_task(announce_worker(app.url, owner, stop), name="worker-presence")
        )
        worker = Worker(
            app.engine,
            app.handlers,
            owner=owner,
            concurrency=workers,
            lease_seconds=s.job_lease_seconds,
            heartbeat_seconds=s.job_heartbeat_seconds,
            poll_seconds=s.job_poll_seconds,
            backoff_base=s.job_backoff_base_seconds,
            backoff_max=s.job_backoff_max_seconds,
            shutdown_grace=s.grpc_grace_seconds,
        )
        tasks.append(asyncio.create_task(worker.run(stop), name="worker"))
    relay = OutboxRelay(app.engine)
    tasks.append(asyncio.create_task(relay.run(stop, s.job_poll_seconds), name="outbox-relay"))
    reaper = Reaper(app.engine, s, app.dns_validation)
    tasks.append(asyncio.create_task(reaper.run(stop), name="reaper"))
    return tasks


async def run_until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP (the terminal closed) stops the server as gracefully as SIGTERM.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


@dataclass(frozen=True)
class Bound:
    """Where the endpoints of a running server listen (ports resolved)."""

    grpc: str
    aws: str | None


def bound_address(listen: str, port: int) -> str:
    host = listen.rpartition(":")[0] or "0.0.0.0"
    return f"{host}:{port}"


async def serve(
    app: Application, stop: asyncio.Event, ready: Callable[[Bound], None] | None = None
) -> None:
    from .aws_json import start_aws_http

    s = app.settings
    server, port, health_servicer = await start_grpc(app, s.grpc_listen)
    aws = None
    aws_address = None
    try:
        if s.aws_listen:
            try:
                aws, aws_port = await start_aws_http(app, s.aws_listen)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                raise address_in_use("App Runner", s.aws_listen, "aws_listen") from exc
            aws_address = bound_address(s.aws_listen, aws_port)
    except BaseException:
        await server.stop(0)
        raise
    if ready is not None:
        ready(Bound(bound_address(s.grpc_listen, port), aws_address))
    tasks = background_tasks(app, stop, workers=app.settings.workers_in_server, role="serve")
    await stop.wait()
    log.info("shutting down")
    health_servicer.enter_graceful_shutdown()
    await server.stop(app.settings.grpc_grace_seconds)
    if aws is not None:
        await aws.cleanup()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def work(app: Application, stop: asyncio.Event, workers: int) -> None:
    tasks = background_tasks(app, stop, workers=workers, role="worker")
    await stop.wait()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
