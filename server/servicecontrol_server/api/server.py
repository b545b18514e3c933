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
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import grpc
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from servicecontrol.v1 import service_control_pb2, service_control_pb2_grpc

from .. import metrics
from ..application.reaper import Reaper
from ..bootstrap import Application
from ..engine.worker import Worker
from ..startup import address_in_use
from .access_log import AccessLogInterceptor
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
    server = grpc.aio.server(
        options=[("grpc.so_reuseport", 0)],
        interceptors=[AccessLogInterceptor(app.settings.default_account)],
    )
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
            on_outcome=metrics.observe_job,
        )
        tasks.append(asyncio.create_task(worker.run(stop), name="worker"))
    relay = OutboxRelay(app.engine)
    tasks.append(asyncio.create_task(relay.run(stop, s.job_poll_seconds), name="outbox-relay"))
    reaper = CountingReaper(app.engine, s, app.dns_validation)
    tasks.append(asyncio.create_task(reaper.run(stop), name="reaper"))
    return tasks


class CountingReaper(Reaper):
    """The reaper, with its purges counted in the metrics."""

    async def reap_once(self) -> dict[str, int]:
        counts = await super().reap_once()
        metrics.observe_reaped(counts)
        return counts


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
    metrics: str | None = None


def bound_address(listen: str, port: int) -> str:
    host = listen.rpartition(":")[0] or "0.0.0.0"
    return f"{host}:{port}"


async def serve(
    app: Application, stop: asyncio.Event, ready: Callable[[Bound], None] | None = None
) -> None:
    from .aws_json import start_aws_http
    from .ops_http import start_ops_http

    s = app.settings
    server, port, health_servicer = await start_grpc(app, s.grpc_listen)
    runners: list[web.AppRunner] = []
    aws_address = metrics_address = None
    try:
        if s.aws_listen:
            with _bind("App Runner", s.aws_listen, "aws_listen"):
                aws, aws_port = await start_aws_http(app, s.aws_listen)
            runners.append(aws)
            aws_address = bound_address(s.aws_listen, aws_port)
        if s.metrics_listen:
            with _bind("metrics", s.metrics_listen, "metrics_listen"):
                ops, ops_port = await start_ops_http(app, s.metrics_listen)
            runners.append(ops)
            metrics_address = bound_address(s.metrics_listen, ops_port)
    except BaseException:
        for runner in runners:
            await runner.cleanup()
        await server.stop(0)
        raise
    if ready is not None:
        ready(Bound(bound_address(s.grpc_listen, port), aws_address, metrics_address))
    tasks = background_tasks(app, stop, workers=app.settings.workers_in_server, role="serve")
    await stop.wait()
    log.info("shutting down")
    health_servicer.enter_graceful_shutdown()
    await server.stop(app.settings.grpc_grace_seconds)
    for runner in runners:
        await runner.cleanup()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.contextmanager
def _bind(what: str, listen: str, setting: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        raise address_in_use(what, listen, setting) from exc


async def work(app: Application, stop: asyncio.Event, workers: int) -> None:
    tasks = background_tasks(app, stop, workers=workers, role="worker")
    await stop.wait()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
