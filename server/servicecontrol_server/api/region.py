"""The region of every gRPC call: the `x-servicecontrol-region` metadata names one of
the regions this server serves; without it, the default (the first configured). A call
for a region not served is INVALID_ARGUMENT with reason REGION_NOT_SERVED and a field
violation naming the metadata key, and runs no further. The use cases read the region
from application/regions.py."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from ..application.regions import in_region, served_region
from ..domain.errors import DomainError
from ..settings import Settings
from .errors import abort, to_status
from .handlers import Rewraps, rewrapped

REGION_METADATA = "x-servicecontrol-region"
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def _wanted(context: grpc.aio.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == REGION_METADATA:
            return (value.decode() if isinstance(value, bytes) else str(value)).strip()
    return ""


class RegionInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._rewraps = Rewraps()

    async def _region(self, context: grpc.aio.ServicerContext) -> str:
        try:
            return served_region(self.settings, _wanted(context), REGION_METADATA)
        except DomainError as exc:
            await abort(context, to_status(exc))
            raise AssertionError("unreachable") from exc

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_PREFIXES):
            return handler
        return self._rewraps.get(handler_call_details.method, handler, self._regional)

    def _regional(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        # A client stream's behaviour answers once, as a unary one does; a bidirectional
        # stream (none is served) is left as it is.
        regional = rewrapped(
            handler,
            unary=self._unary,
            stream=self._stream,
            client_stream=self._unary,
            only_async=False,
        )
        return regional or handler

    def _unary(self, behavior: Any) -> Any:
        async def in_its_region(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with in_region(await self._region(context)):
                result = behavior(request, context)
                return await result if inspect.isawaitable(result) else result

        return in_its_region

    def _stream(self, behavior: Any) -> Any:
        async def in_its_region(request: Any, context: grpc.aio.ServicerContext) -> Any:
            with in_region(await self._region(context)):
                stream = behavior(request, context)
                if hasattr(stream, "__aiter__"):
                    async for item in stream:
                        yield item
                else:
                    for item in stream:
                        yield item

        return in_its_region
