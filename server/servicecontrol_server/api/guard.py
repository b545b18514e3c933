"""What every gRPC call goes through before its handler: a request body that does not
parse, or holds text PostgreSQL cannot store, is INVALID_ARGUMENT (not grpcio's
UNKNOWN); mutations are rate-limited per account; every unary call has a server-side
deadline."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from google.rpc import status_pb2

from ..application.backpressure import BacklogGate
from ..application.rate_limit import MutationRateLimiter
from ..application.service_commands import MAX_WAIT_SECONDS
from ..domain.errors import DomainError, FieldViolation, InvalidRequest, RequestTimedOut
from ..domain.text import MAX_FIELD_CHARS, text_violations
from .errors import abort, internal_status, malformed_message, to_status
from .handlers import Rewraps

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/servicecontrol.v1.ServiceControl/"


@dataclass(frozen=True)
class _Refused:
    """What the deserializer hands on instead of a request it refused."""

    status: status_pb2.Status


def request_violations(message: Message) -> list[FieldViolation]:
    """The text rules of domain.text, applied to every string field of a request."""
    return text_violations(_texts(message))


def _texts(message: Message) -> dict[str, Any]:
    """The message's set fields by proto name, messages as nested dicts, and nothing
    checked on the way (unlike json_format, which refuses out-of-range Durations)."""
    out: dict[str, Any] = {}
    for f, value in message.ListFields():
        entry = f.message_type
        if f.type != FieldDescriptor.TYPE_MESSAGE or entry is None:
            out[f.name] = list(value) if f.is_repeated else value
        elif entry.GetOptions().map_entry:
            nested = entry.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE
            out[f.name] = {k: _texts(v) if nested else v for k, v in value.items()}
        elif f.is_repeated:
            out[f.name] = [_texts(v) for v in value]
        else:
            out[f.name] = _texts(value)
    return out


def _deserializer(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(raw: bytes) -> Any:
        try:
            message = parse(raw)
        except Exception as exc:  # noqa: BLE001 - any parse failure is the caller's body
            log.info("malformed request body", extra={"error": type(exc).__name__})
            return _Refused(to_status(malformed_message()))
        # Only a body holding a 0x00 byte or a very long field can break a text rule
        # (the parser already refuses invalid UTF-8): the common case costs one scan.
        if isinstance(message, Message) and (b"\x00" in raw or len(raw) > MAX_FIELD_CHARS):
            try:
                violations = request_violations(message)
            except Exception as exc:  # noqa: BLE001 - grpcio would answer UNKNOWN with its class
                return _Refused(internal_status(exc))
            if violations:
                return _Refused(to_status(InvalidRequest(violations)))
        return message

    return deserialize


class RequestGuard(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        *,
        deadline_seconds: float,
        limiter: MutationRateLimiter,
        account_of: Callable[[grpc.aio.ServicerContext], str],
        gate: BacklogGate | None = None,
    ) -> None:
        self.deadline_seconds = deadline_seconds
        self.limiter = limiter
        self.gate = gate
        self.account_of = account_of
        self._rewraps = Rewraps()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming or handler.request_deserializer is None:
            return handler
        method = handler_call_details.method
        return self._rewraps.get(method, handler, self._guarding)

    def _guarding(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        name = method.removeprefix(SERVICE_PREFIX) if method.startswith(SERVICE_PREFIX) else ""
        deserialize = _deserializer(handler.request_deserializer)
        if handler.unary_unary is not None:
            return handler._replace(
                request_deserializer=deserialize,
                unary_unary=self._unary(handler.unary_unary, name),
            )
        return handler._replace(
            request_deserializer=deserialize,
            unary_stream=self._stream(handler.unary_stream, name),
        )

    async def _admit(self, request: Any, context: grpc.aio.ServicerContext, name: str) -> None:
        if isinstance(request, _Refused):
            await abort(context, request.status)
        if name:
            try:
                # The backlog first: a refused call must not use up a rate-limit token.
                if self.gate is not None:
                    await self.gate.check(name)
                self.limiter.check(self.account_of(context), name)
            except DomainError as exc:
                await abort(context, to_status(exc))

    def _unary(self, behavior: Any, name: str) -> Any:
        # WaitOperation waits by design: its deadline starts after its longest wait.
        deadline = self.deadline_seconds + (MAX_WAIT_SECONDS if name == "WaitOperation" else 0)

        async def run(request: Any, context: grpc.aio.ServicerContext) -> Any:
            # grpc.aio serves plain functions too (none is served here).
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._admit(request, context, name)
            # Work stops when the caller stops waiting: nobody reads the answer after
            # the caller's own deadline, and the work may hold scarce threads.
            remaining = context.time_remaining()
            bound = deadline if remaining is None else min(deadline, max(remaining, 0.0))
            # In the call's own task (no task of its own per call, as wait_for makes).
            try:
                async with asyncio.timeout(bound):
                    return await run(request, context)
            except TimeoutError:
                if bound < deadline:
                    # The caller has its DEADLINE_EXCEEDED already: say the same.
                    log.info("caller's deadline passed; work stopped", extra={"rpc": name})
                    await context.abort(
                        grpc.StatusCode.DEADLINE_EXCEEDED, "The caller's deadline passed."
                    )
                log.warning("call ran past the server deadline", extra={"rpc": name})
                await abort(
                    context,
                    to_status(
                        RequestTimedOut(
                            f"The call did not finish within the server's deadline of "
                            f"{deadline:g}s."
                        )
                    ),
                )
                raise

        return guarded

    def _stream(self, behavior: Any, name: str) -> Any:
        async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._admit(request, context, name)
            stream = behavior(request, context)
            if hasattr(stream, "__aiter__"):
                async for item in stream:
                    yield item
            else:
                for item in stream:
                    yield item

        return guarded
