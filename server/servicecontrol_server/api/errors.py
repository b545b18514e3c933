"""Domain errors → gRPC statuses with google.rpc details (AIP-193): every error carries
an ErrorInfo whose reason comes from servicecontrol.v1.ErrorReason."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..domain import errors

ERROR_DOMAIN = "servicecontrol"
log = logging.getLogger(__name__)

_CODES: list[tuple[type[errors.DomainError], int]] = [
    (errors.InvalidRequest, code_pb2.INVALID_ARGUMENT),
    (errors.InvalidPageToken, code_pb2.INVALID_ARGUMENT),
    (errors.RequestIdReused, code_pb2.INVALID_ARGUMENT),
    (errors.NotFound, code_pb2.NOT_FOUND),
    (errors.FailedPrecondition, code_pb2.FAILED_PRECONDITION),
    (errors.EtagMismatch, code_pb2.ABORTED),
    (errors.AlreadyExists, code_pb2.ALREADY_EXISTS),
    (errors.QuotaExceeded, code_pb2.RESOURCE_EXHAUSTED),
    (errors.BackendUnavailable, code_pb2.UNAVAILABLE),
    (errors.RateLimited, code_pb2.RESOURCE_EXHAUSTED),
    (errors.RequestTimedOut, code_pb2.DEADLINE_EXCEEDED),
]


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def to_status(exc: errors.DomainError) -> status_pb2.Status:
    code = next((c for cls, c in _CODES if isinstance(exc, cls)), code_pb2.INTERNAL)
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=exc.reason, domain=ERROR_DOMAIN, metadata=exc.metadata
            )
        )
    ]
    if isinstance(exc, errors.InvalidRequest):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in exc.violations
                    ]
                )
            )
        )
    if isinstance(exc, errors.QuotaExceeded):
        details.append(
            _pack(
                error_details_pb2.QuotaFailure(
                    violations=[
                        error_details_pb2.QuotaFailure.Violation(
                            subject=exc.subject,
                            description=f"{exc.quota} limit {exc.limit}, in use {exc.usage}",
                        )
                    ]
                )
            )
        )
    if isinstance(exc, errors.FailedPrecondition):
        details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=exc.reason,
                            subject=exc.metadata.get("serviceArn")
                            or exc.metadata.get("connectionArn", ""),
                            description=exc.message,
                        )
                    ]
                )
            )
        )
    if isinstance(exc, errors.RateLimited):
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(exc.retry_after_seconds * 1e9))
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=code, message=exc.message, details=details)


def internal_status(exc: BaseException) -> status_pb2.Status:
    """An unexpected failure: logged with a correlation id that the caller also gets."""
    correlation = uuid.uuid4().hex
    log.exception("internal error", extra={"correlation_id": correlation})
    info = error_details_pb2.ErrorInfo(
        reason="INTERNAL_ERROR", domain=ERROR_DOMAIN, metadata={"correlationId": correlation}
    )
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"Internal error; correlation id {correlation}.",
        details=[_pack(info)],
    )


async def abort(context: grpc.aio.ServicerContext, status: status_pb2.Status) -> None:
    await context.abort_with_status(rpc_status.to_status(status))


async def _abort_for(context: grpc.aio.ServicerContext, exc: Exception) -> None:
    """Ends the call with the status `exc` stands for: a domain error's own, a request
    message that does not parse (the caller's body) INVALID_ARGUMENT, anything else
    INTERNAL with a correlation id (called while `exc` is being handled, so its
    traceback is logged)."""
    if isinstance(exc, errors.DomainError):
        await abort(context, to_status(exc))
    elif isinstance(exc, DecodeError):
        await abort(context, to_status(malformed_message()))
    else:
        await abort(context, internal_status(exc))


Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]
StreamHandler = Callable[[Any, Req, grpc.aio.ServicerContext], AsyncIterator[Resp]]


def translated(fn: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """The gRPC boundary of a unary RPC: domain errors become rich statuses (an outage,
    BackendUnavailable, is UNAVAILABLE), anything unexplained INTERNAL with a
    correlation id. Every RPC of the servicer is wrapped (tests/unit checks)."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        try:
            return await fn(self, request, context)
        except (grpc.aio.AbortError, grpc.RpcError):
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing unexplained escapes
            await _abort_for(context, exc)
        raise AssertionError("unreachable")

    wrapper.__translated__ = True  # type: ignore[attr-defined]
    return wrapper


def translated_stream(fn: StreamHandler[Req, Resp]) -> StreamHandler[Req, Resp]:
    """translated() for a server-streaming RPC: the same statuses, whether the error
    comes before the first message or mid-stream."""

    @functools.wraps(fn)
    async def wrapper(
        self: Any, request: Req, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Resp]:
        try:
            async for message in fn(self, request, context):
                yield message
        except (grpc.aio.AbortError, grpc.RpcError):
            raise
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing unexplained escapes
            await _abort_for(context, exc)

    wrapper.__translated__ = True  # type: ignore[attr-defined]
    return wrapper


def malformed_message() -> errors.InvalidRequest:
    """A request body that is not a valid protobuf message of the method's type."""
    return errors.InvalidRequest(
        [errors.FieldViolation("", "the request body is not a valid protobuf message")],
        "The request body is not a valid protobuf message of the method's type.",
    )
