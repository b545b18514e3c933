"""A trace span per call on both endpoints (bootstrap installs these only when tracing is
on): the outermost gRPC interceptor, and the App Runner endpoint's outermost middleware.
A caller's own W3C trace context (`traceparent`) is continued."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .. import tracing
from .access_log import ACCOUNT_KEY, ACTION_KEY, REQUEST_ID_METADATA_KEY
from .handlers import rewrapped

# Probes and tooling are not traced.
_UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.")
# Codes that are the server's fault (OpenTelemetry's convention for server spans).
_SERVER_FAULTS = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
}


class TracingInterceptor(grpc.aio.ServerInterceptor):
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        full = handler_call_details.method.lstrip("/")
        if handler is None or full.startswith(_UNTRACED_SERVICES):
            return handler
        metadata = tuple(handler_call_details.invocation_metadata or ())
        call = _TracedCall(full, metadata)
        traced = rewrapped(handler, unary=call.unary, stream=call.stream, client_stream=call.unary)
        return traced or handler


class _TracedCall:
    def __init__(self, full_method: str, metadata: tuple[Any, ...]) -> None:
        self.name = full_method
        service, _, method = full_method.rpartition("/")
        carrier = {k: v for k, v in metadata if isinstance(v, str)}
        self.parent = tracing.extract(carrier)
        self.attributes: dict[str, Any] = {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": method,
        }
        request_id = carrier.get(REQUEST_ID_METADATA_KEY)
        if request_id:
            self.attributes["servicecontrol.request_id"] = request_id

    def unary(self, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with tracing.scope_span(
                self.name, SpanKind.SERVER, self.attributes, self.parent
            ) as span:
                _annotate_from(request)
                try:
                    response = await behavior(request, context)
                except BaseException:
                    _finish(span, context)
                    raise
                _annotate_from(response)
                _finish(span, context)
                return response

        return unary

    def stream(
        self, behavior: Callable[..., AsyncIterator[Any]]
    ) -> Callable[..., AsyncIterator[Any]]:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            with tracing.scope_span(
                self.name, SpanKind.SERVER, self.attributes, self.parent
            ) as span:
                _annotate_from(request)
                try:
                    async for item in behavior(request, context):
                        yield item
                finally:
                    _finish(span, context)

        return stream


def _annotate_from(message: Any) -> None:
    """A request or response that names an operation or a service (DescribeOperation,
    a mutation's answer) says which operation the call belongs to."""
    operation_id = getattr(message, "operation_id", None)
    service_arn = getattr(message, "service_arn", None)
    if not isinstance(service_arn, str):
        service = getattr(message, "service", None)
        service_arn = getattr(service, "service_arn", None)
    tracing.annotate(
        operation_id=operation_id if isinstance(operation_id, str) else None,
        service_arn=service_arn if isinstance(service_arn, str) else None,
    )


def _finish(span: Span, context: grpc.aio.ServicerContext) -> None:
    code = context.code()
    status = None
    if isinstance(code, grpc.StatusCode):
        status = code
    elif isinstance(code, int):
        status = next((s for s in grpc.StatusCode if s.value[0] == code), None)
    status = status or grpc.StatusCode.OK
    span.set_attribute("rpc.grpc.status_code", status.value[0])
    if status in _SERVER_FAULTS:
        span.set_status(Status(StatusCode.ERROR, status.name))


@web.middleware
async def aws_tracing(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """The App Runner endpoint's span: named after the action once it is known."""
    parent = tracing.extract({k.lower(): v for k, v in request.headers.items()})
    attributes = {
        "rpc.system": "aws-api",
        "rpc.service": "AppRunner",
        "http.request.method": request.method,
    }
    with tracing.scope_span("AppRunner", SpanKind.SERVER, attributes, parent) as span:
        response = await handler(request)
        action = request.get(ACTION_KEY)
        if action:
            span.update_name(f"AppRunner/{action}")
            span.set_attribute("rpc.method", action)
        account = request.get(ACCOUNT_KEY)
        if account:
            tracing.annotate(account_id=account)
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 500:
            span.set_status(Status(StatusCode.ERROR, str(response.status)))
        return response
