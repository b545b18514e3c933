"""Re-wrapping a gRPC method handler's behaviour, as the server's interceptors do."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import grpc

Wrap = Callable[[Any], Any]


def rewrapped(
    handler: grpc.RpcMethodHandler,
    *,
    unary: Wrap | None = None,
    stream: Wrap | None = None,
    client_stream: Wrap | None = None,
    only_async: bool = True,
) -> grpc.RpcMethodHandler | None:
    """`handler` with its behaviour passed through the wrapper for its shape (unary,
    server stream, client stream), with the same (de)serializers; None when there is no
    wrapper for its shape, for the caller to leave the handler as it is or refuse it.
    With `only_async`, a synchronous behaviour counts as
    one without a wrapper: wrapping it in a coroutine would change how the server runs
    it."""
    shapes = (
        (handler.unary_unary, unary, grpc.unary_unary_rpc_method_handler, True),
        (handler.unary_stream, stream, grpc.unary_stream_rpc_method_handler, False),
        (handler.stream_unary, client_stream, grpc.stream_unary_rpc_method_handler, True),
    )
    for behaviour, wrap, make, answers_once in shapes:
        if behaviour is None:
            continue
        is_async = (
            inspect.iscoroutinefunction(behaviour)
            if answers_once
            else inspect.isasyncgenfunction(behaviour)
        )
        if wrap is None or (only_async and not is_async):
            return None
        return make(
            wrap(behaviour),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
    return None


class Rewraps:
    """An interceptor's rewrapped handlers, kept per method: the server hands each call
    of a method the same handler object, and a wrapping that depends on nothing but the
    method and that handler is built on its first call only (not once per call):
    `wrap(method, handler)`. A different handler for the same method (another server, a
    test) is wrapped anew."""

    # Methods are the served ones (a call to any other has no handler and is not kept).
    LIMIT = 1024

    def __init__(self) -> None:
        self._by_method: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def get(
        self,
        method: str,
        handler: grpc.RpcMethodHandler,
        wrap: Callable[[str, grpc.RpcMethodHandler], grpc.RpcMethodHandler],
    ) -> grpc.RpcMethodHandler:
        found = self._by_method.get(method)
        if found is not None and found[0] is handler:
            return found[1]
        wrapped = wrap(method, handler)
        if found is not None or len(self._by_method) < self.LIMIT:
            self._by_method[method] = (handler, wrapped)
        return wrapped
