"""Exceptions raised by the client, named after App Runner's.

Every failed call raises a `ServiceControlError` subclass chosen by the gRPC status code:

| gRPC code                               | exception                        |
|-----------------------------------------|----------------------------------|
| INVALID_ARGUMENT                        | InvalidRequestException          |
| NOT_FOUND                               | ResourceNotFoundException        |
| FAILED_PRECONDITION                     | InvalidStateException            |
| RESOURCE_EXHAUSTED                      | ServiceQuotaExceededException    |
| RESOURCE_EXHAUSTED, reason RATE_LIMITED | ThrottlingException              |
| RESOURCE_EXHAUSTED, reason BACKLOG_FULL | ThrottlingException              |
| ALREADY_EXISTS                          | ConflictException                |
| ABORTED (an etag that no longer holds)  | PreconditionFailedException      |
| UNAVAILABLE                             | ServiceUnavailableException      |
| DEADLINE_EXCEEDED                       | RequestTimeoutException          |
| UNAUTHENTICATED, PERMISSION_DENIED      | AccessDeniedException            |
| INTERNAL and anything else              | InternalServiceErrorException    |

App Runner itself reports a taken name as InvalidRequestException and has no etags; this
API tells those cases apart with ALREADY_EXISTS and ABORTED, so they get the names AWS
uses elsewhere for the same situations (ConflictException, PreconditionFailedException).

Two more come from the client's own waiters, not from a status: `OperationTimeoutError`
(the wait ran out) and `OperationFailedError` (the operation ended FAILED).

Callers should branch on `reason` (a `servicecontrol.v1.ErrorReason` name, stable
forever) rather than on the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from servicecontrol.v1 import resources_pb2 as pb

ERROR_DOMAIN = "servicecontrol"


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request (from google.rpc.BadRequest)."""

    field: str
    description: str


@dataclass(frozen=True)
class QuotaViolation:
    """One exceeded quota (from google.rpc.QuotaFailure)."""

    subject: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """One unmet precondition (from google.rpc.PreconditionFailure)."""

    type: str
    subject: str
    description: str


class ServiceControlError(Exception):
    """The root of every error the client raises.

    `code` is the gRPC status code; `reason`, `domain` and `metadata` come from the
    google.rpc.ErrorInfo detail (empty when the status carried none, e.g. a connection
    failure reported by the gRPC library itself)."""

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode = grpc.StatusCode.UNKNOWN,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: list[FieldViolation] | None = None,
        quota_violations: list[QuotaViolation] | None = None,
        precondition_violations: list[PreconditionViolation] | None = None,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: list[FieldViolation] = list(field_violations or [])
        self.quota_violations: list[QuotaViolation] = list(quota_violations or [])
        self.precondition_violations: list[PreconditionViolation] = list(
            precondition_violations or []
        )
        self.status = status

    def __str__(self) -> str:
        head = f"{self.reason}: {self.message}" if self.reason else self.message
        return f"{head} ({self.code.name})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r}, metadata={self.metadata!r})"
        )


class InvalidRequestException(ServiceControlError):
    """INVALID_ARGUMENT: see `field_violations` for every bad field."""


class ResourceNotFoundException(ServiceControlError):
    """NOT_FOUND: no such service, operation, connection or custom domain."""


class InvalidStateException(ServiceControlError):
    """FAILED_PRECONDITION: the resource's state does not allow the action."""


class ServiceQuotaExceededException(ServiceControlError):
    """RESOURCE_EXHAUSTED: see `quota_violations` and metadata `limit` / `usage`."""


class ThrottlingException(ServiceControlError):
    """RESOURCE_EXHAUSTED because the account's mutation rate was exceeded: not a quota.
    `retry_after` is the server's RetryInfo delay in seconds (None when it sent none)."""

    @property
    def retry_after(self) -> float | None:
        if self.status is None:
            return None
        for detail in self.status.details:
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                info = error_details_pb2.RetryInfo()
                detail.Unpack(info)
                return info.retry_delay.ToTimedelta().total_seconds()
        return None


class ConflictException(ServiceControlError):
    """ALREADY_EXISTS: the name is taken, or the domain is already associated."""


class PreconditionFailedException(ServiceControlError):
    """ABORTED: the etag given no longer matches; metadata `etag` is the current one."""


class ServiceUnavailableException(ServiceControlError):
    """UNAVAILABLE: the server or one of its backends cannot be reached (after retries)."""


class RequestTimeoutException(ServiceControlError):
    """DEADLINE_EXCEEDED: the call's deadline passed before the server answered."""


class AccessDeniedException(ServiceControlError):
    """UNAUTHENTICATED or PERMISSION_DENIED (reserved for API keys)."""


class InternalServiceErrorException(ServiceControlError):
    """INTERNAL, and any code without a more precise class (e.g. UNIMPLEMENTED)."""


class OperationTimeoutError(ServiceControlError):
    """A waiter's deadline passed while the operation was still running. `operation` is
    its last known state (None if it could not be read)."""

    def __init__(self, message: str, operation: pb.Operation | None = None) -> None:
        super().__init__(message, code=grpc.StatusCode.DEADLINE_EXCEEDED)
        self.operation = operation


class OperationFailedError(ServiceControlError):
    """A waited-on change ended without reaching its goal (the operation FAILED, or the
    service ended DELETE_FAILED). `reason` and `metadata` come from `operation.error`."""

    def __init__(self, message: str, operation: pb.Operation | None = None) -> None:
        error = operation.error if operation is not None and operation.HasField("error") else None
        info = _error_info(error) if error is not None else None
        super().__init__(
            message,
            code=_status_code(error.code) if error is not None else grpc.StatusCode.UNKNOWN,
            reason=info.reason if info else "",
            domain=info.domain if info else "",
            metadata=dict(info.metadata) if info else None,
            status=error,
        )
        self.operation = operation


# The ErrorInfo reason of a refusal by the per-account mutation rate limit.
RATE_LIMITED = "RATE_LIMITED"
# The reason of a refusal while too many jobs wait for a worker: also worth a retry.
BACKLOG_FULL = "BACKLOG_FULL"

_BY_CODE: dict[grpc.StatusCode, type[ServiceControlError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidRequestException,
    grpc.StatusCode.NOT_FOUND: ResourceNotFoundException,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidStateException,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ServiceQuotaExceededException,
    grpc.StatusCode.ALREADY_EXISTS: ConflictException,
    grpc.StatusCode.ABORTED: PreconditionFailedException,
    grpc.StatusCode.UNAVAILABLE: ServiceUnavailableException,
    grpc.StatusCode.DEADLINE_EXCEEDED: RequestTimeoutException,
    grpc.StatusCode.UNAUTHENTICATED: AccessDeniedException,
    grpc.StatusCode.PERMISSION_DENIED: AccessDeniedException,
}


def exception_class(code: grpc.StatusCode) -> type[ServiceControlError]:
    return _BY_CODE.get(code, InternalServiceErrorException)


def _status_code(value: int) -> grpc.StatusCode:
    for status_code in grpc.StatusCode:
        if status_code.value[0] == value:
            return status_code
    return grpc.StatusCode.UNKNOWN


def _error_info(status: status_pb2.Status) -> error_details_pb2.ErrorInfo | None:
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    return None


def from_status(
    code: grpc.StatusCode, message: str, status: status_pb2.Status | None
) -> ServiceControlError:
    """The exception for a status code and its google.rpc.Status (if it carried one)."""
    fields: list[FieldViolation] = []
    quotas: list[QuotaViolation] = []
    preconditions: list[PreconditionViolation] = []
    info: error_details_pb2.ErrorInfo | None = None
    if status is not None:
        message = status.message or message
        info = _error_info(status)
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields += [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.QuotaFailure.DESCRIPTOR):
                quota = error_details_pb2.QuotaFailure()
                detail.Unpack(quota)
                quotas += [QuotaViolation(v.subject, v.description) for v in quota.violations]
            elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                failure = error_details_pb2.PreconditionFailure()
                detail.Unpack(failure)
                preconditions += [
                    PreconditionViolation(v.type, v.subject, v.description)
                    for v in failure.violations
                ]
    reason = info.reason if info else ""
    cls = exception_class(code)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and reason in (RATE_LIMITED, BACKLOG_FULL):
        cls = ThrottlingException
    return cls(
        message,
        code=code,
        reason=info.reason if info else "",
        domain=info.domain if info else "",
        metadata=dict(info.metadata) if info else None,
        field_violations=fields,
        quota_violations=quotas,
        precondition_violations=preconditions,
        status=status,
    )


def from_rpc_error(error: grpc.RpcError) -> ServiceControlError:
    """The exception for a failed call, with the rich details of its status decoded."""
    call = error if isinstance(error, grpc.Call) else None
    code = call.code() if call is not None else grpc.StatusCode.UNKNOWN
    message = (call.details() if call is not None else None) or str(error)
    status: status_pb2.Status | None = None
    if call is not None:
        try:
            status = rpc_status.from_call(call)
        except ValueError:
            # The status in the trailers disagrees with the call's: trust the call.
            status = None
    return from_status(code, message, status)


__all__ = [
    "ERROR_DOMAIN",
    "AccessDeniedException",
    "ConflictException",
    "FieldViolation",
    "InternalServiceErrorException",
    "InvalidRequestException",
    "InvalidStateException",
    "OperationFailedError",
    "OperationTimeoutError",
    "PreconditionFailedException",
    "PreconditionViolation",
    "QuotaViolation",
    "RequestTimeoutException",
    "ResourceNotFoundException",
    "ServiceControlError",
    "ServiceQuotaExceededException",
    "ServiceUnavailableException",
    "ThrottlingException",
    "exception_class",
    "from_rpc_error",
    "from_status",
]
