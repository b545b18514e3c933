"""One access log line per call on both endpoints (method, account, status code,
duration, request id), and the calls' Prometheus metrics, recorded at the edge."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web

from .. import metrics, tracing
from .handlers import rewrapped

log = logging.getLogger("servicecontrol_server.access")

REQUEST_ID_METADATA_KEY = "x-request-id"
# Probes and tooling, logged at debug so that a health check every few seconds does not
# bury the calls people make.
_QUIET_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")
# What the App Runner endpoint learns of a request, for its access line.
ACTION_KEY = web.RequestKey("action", str)
ACCOUNT_KEY = web.RequestKey("account", str)


def request_id_of(metadata: tuple[tuple[str, Any], ...] | None) -> str:
    for key, value in metadata or ():
        if key == REQUEST_ID_METADATA_KEY and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return uuid.uuid4().hex


class AccessLogInterceptor(grpc.aio.ServerInterceptor):
    """The outermost interceptor: it sees every call, refused ones included, and learns
    the account from the authentication inside it (note_account)."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        full = handler_call_details.method
        metadata = tuple(handler_call_details.invocation_metadata or ())
        call = _Call(full, metadata)
        # A synchronous handler (none is served here) is left alone.
        return rewrapped(handler, unary=call.unary, stream=call.stream) or handler


_current: contextvars.ContextVar[_Call | None] = contextvars.ContextVar(
    "servicecontrol_access_call", default=None
)


def _reset(token: contextvars.Token[_Call | None]) -> None:
    # A stream whose client went away may be closed by the event loop's finalizer, in a
    # task and context of its own, where the token does not apply and there is nothing
    # to restore.
    with contextlib.suppress(ValueError):
        _current.reset(token)


def note_account(account_id: str) -> None:
    """Called by authentication once it knows the caller: the call's line names it."""
    call = _current.get()
    if call is not None:
        call.account = account_id
    tracing.annotate(account_id=account_id)


class _Call:
    def __init__(self, full_method: str, metadata: tuple[Any, ...]):
        self.service, _, self.method = full_method.lstrip("/").rpartition("/")
        self.request_id = request_id_of(metadata)
        # Unknown until authentication admits the call; empty on a refused one.
        self.account = ""
        self.quiet = self.service.startswith(_QUIET_SERVICES)

    def unary(self, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            tagged = _TaggedContext(context, (REQUEST_ID_METADATA_KEY, self.request_id))
            token = _current.set(self)
            try:
                response = await behavior(request, tagged)
            except BaseException as exc:
                self._done(context, started, exc)
                raise
            finally:
                _current.reset(token)
            self._done(context, started, None)
            return response

        return unary

    def stream(
        self, behavior: Callable[..., AsyncIterator[Any]]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            await self._announce(context)
            token = _current.set(self)
            try:
                async for item in behavior(request, context):
                    yield item
            except BaseException as exc:
                self._done(context, started, exc)
                raise
            finally:
                _reset(token)
            self._done(context, started, None)

        return stream

    async def _announce(self, context: grpc.aio.ServicerContext) -> None:
        # The id the log line carries, for the caller to quote: a stream's caller hears it
        # before the first message.
        await context.send_initial_metadata(((REQUEST_ID_METADATA_KEY, self.request_id),))

    def _done(
        self, context: grpc.aio.ServicerContext, started: float, exc: BaseException | None
    ) -> None:
        seconds = time.perf_counter() - started
        code = _code(context, exc)
        metrics.observe_rpc("grpc", self.method, code, seconds)
        log.log(
            logging.DEBUG if self.quiet else logging.INFO,
            "call",
            extra={
                "endpoint": "grpc",
                "method": self.method,
                "account": self.account,
                "code": code,
                "duration_ms": round(seconds * 1000, 1),
                "request_id": self.request_id,
            },
        )


class _TaggedContext:
    """A unary call's context that ends the call with the request id in its trailing
    metadata, whatever the status: the id goes out with the status, in the same write,
    where sending it ahead as initial metadata would cost the call a write of its own.
    Trailing metadata a handler or an abort names is kept beside it."""

    __slots__ = ("_context", "_pair")

    def __init__(self, context: grpc.aio.ServicerContext, pair: tuple[str, str]) -> None:
        self._context = context
        self._pair = pair
        context.set_trailing_metadata((pair,))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def set_trailing_metadata(self, metadata: Any) -> None:
        self._context.set_trailing_metadata((*(metadata or ()), self._pair))

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> None:
        await self._context.abort(code, details, (*(trailing_metadata or ()), self._pair))

    async def abort_with_status(self, status: grpc.Status) -> None:
        await self.abort(status.code, status.details, status.trailing_metadata)


def _code(context: grpc.aio.ServicerContext, exc: BaseException | None) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    if isinstance(code, int):
        for status in grpc.StatusCode:
            if status.value[0] == code:
                return str(status.name)
    if exc is None:
        return "OK"
    # GeneratorExit: the stream was closed before its end, because its client went away.
    cancelled = isinstance(exc, asyncio.CancelledError | GeneratorExit)
    return "CANCELLED" if cancelled else "UNKNOWN"


@web.middleware
async def aws_access_log(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The same line for the App Runner endpoint: the action, the account the request
    was signed for, the HTTP status and App Runner's request id."""
    started = time.perf_counter()
    response = await handler(request)
    seconds = time.perf_counter() - started
    # Only actions the endpoint serves name a label: anything else a caller sends is one.
    method = request.get(ACTION_KEY, "unknown")
    status = str(response.status)
    metrics.observe_rpc("aws", method, status, seconds)
    log.info(
        "call",
        extra={
            "endpoint": "aws",
            "method": method,
            "account": request.get(ACCOUNT_KEY, ""),
            "code": status,
            "duration_ms": round(seconds * 1000, 1),
            "request_id": response.headers.get("x-amzn-RequestId", ""),
        },
    )
    return response
