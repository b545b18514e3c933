"""The standard gRPC health service (grpc.health.v1.Health) on the server's event loop:
Check, Watch and List, unauthenticated like every probe.

The stock servicer of grpcio-health-checking is written for the threaded server: on the
asyncio server each `Check` ran on a thread of the default executor, `Watch` failed on
its first call (it asks the context for `add_callback`, which an asyncio context does not
have) and `List` is not implemented; each failure was logged with a traceback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


class HealthServicer(health_pb2_grpc.HealthServicer):
    """Statuses by service name ("" is the server as a whole).

    - `Check` answers a name's status, NOT_FOUND for a name it does not know.
    - `Watch` sends a name's status (SERVICE_UNKNOWN for one it does not know, and stays
      open), then each change; once the server is shutting down it sends NOT_SERVING and
      ends, so that a watcher does not hold the graceful stop for its whole grace.
    - `List` answers every name's status.

    `set` and `enter_graceful_shutdown` are called on the server's event loop."""

    def __init__(self) -> None:
        self._statuses: dict[str, Any] = {"": SERVING}
        # Replaced on every change: a watcher waits on the one it saw before reading.
        self._changed = asyncio.Event()
        self._closing = False

    def set(self, service: str, status: Any) -> None:
        """Sets a name's status; ignored once the server is shutting down."""
        if self._closing:
            return
        self._statuses[service] = status
        self._notify()

    def enter_graceful_shutdown(self) -> None:
        """Every name NOT_SERVING for good, and watchers told so."""
        if self._closing:
            return
        self._closing = True
        for name in self._statuses:
            self._statuses[name] = NOT_SERVING
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self._statuses.get(request.service)
        if status is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"No health is reported for {request.service!r}."
            )
        return health_pb2.HealthCheckResponse(status=status)

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        sent = None
        while True:
            changed = self._changed
            status = self._statuses.get(request.service, SERVICE_UNKNOWN)
            if status != sent:
                yield health_pb2.HealthCheckResponse(status=status)
                sent = status
            if self._closing:
                return
            await changed.wait()

    async def List(
        self, request: health_pb2.HealthListRequest, context: grpc.aio.ServicerContext
    ) -> health_pb2.HealthListResponse:
        return health_pb2.HealthListResponse(
            statuses={
                name: health_pb2.HealthCheckResponse(status=status)
                for name, status in self._statuses.items()
            }
        )
