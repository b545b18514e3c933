"""The domain's exceptions. Every refusal the product makes is one of these; the API
layer maps each to a gRPC status and an ErrorInfo reason, the HTTP facade to App
Runner's error types."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request. `field` is its path, e.g.
    `source_configuration.image_repository.image_identifier`."""

    field: str
    description: str


class DomainError(Exception):
    """Root of every error the domain and application layers raise on purpose."""

    reason: str = "INTERNAL_ERROR"

    def __init__(self, message: str, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidRequest(DomainError):
    reason = "INVALID_REQUEST"

    def __init__(self, violations: Sequence[FieldViolation], message: str | None = None) -> None:
        self.violations = list(violations)
        text = message or "; ".join(f"{v.field}: {v.description}" for v in self.violations)
        super().__init__(text)


class RegionNotServed(InvalidRequest):
    """A request for a region this server does not serve."""

    reason = "REGION_NOT_SERVED"


class InvalidPageToken(DomainError):
    reason = "INVALID_PAGE_TOKEN"


class RequestIdReused(DomainError):
    reason = "REQUEST_ID_REUSED"


class NotFound(DomainError):
    """A resource does not exist in the caller's account (or never did)."""


class ServiceNotFound(NotFound):
    reason = "SERVICE_NOT_FOUND"


class OperationNotFound(NotFound):
    reason = "OPERATION_NOT_FOUND"


class ConnectionNotFound(NotFound):
    reason = "CONNECTION_NOT_FOUND"


class CustomDomainNotFound(NotFound):
    reason = "CUSTOM_DOMAIN_NOT_FOUND"


class FailedPrecondition(DomainError):
    """The resource's state does not allow the action."""


class InvalidState(FailedPrecondition):
    reason = "INVALID_STATE"


class OperationInProgress(FailedPrecondition):
    reason = "OPERATION_IN_PROGRESS"


class ConnectionInUse(FailedPrecondition):
    reason = "CONNECTION_IN_USE"


class ConnectionNotAvailable(FailedPrecondition):
    reason = "CONNECTION_NOT_AVAILABLE"


class EtagMismatch(DomainError):
    reason = "ETAG_MISMATCH"


class AlreadyExists(DomainError):
    pass


class ServiceNameTaken(AlreadyExists):
    reason = "SERVICE_NAME_TAKEN"


class ConnectionNameTaken(AlreadyExists):
    reason = "CONNECTION_NAME_TAKEN"


class CustomDomainAlreadyAssociated(AlreadyExists):
    reason = "CUSTOM_DOMAIN_ALREADY_ASSOCIATED"


class QuotaExceeded(DomainError):
    """A per-account (or per-service) limit would be passed."""

    def __init__(self, reason: str, quota: str, limit: int, usage: int, subject: str) -> None:
        self.reason = reason
        self.quota = quota
        self.limit = limit
        self.usage = usage
        self.subject = subject
        super().__init__(
            f"{quota} quota exceeded: {usage} of {limit} in use for {subject}",
            {"limit": str(limit), "usage": str(usage)},
        )


class BackendUnavailable(DomainError):
    """A backend (database, object store) could not be reached; the caller may retry."""

    reason = "BACKEND_UNAVAILABLE"


class RateLimited(DomainError):
    """The account sent mutations faster than its rate allows; retry after a pause."""

    reason = "RATE_LIMITED"

    def __init__(self, retry_after_seconds: float) -> None:
        self.retry_after_seconds = retry_after_seconds
        super().__init__(
            f"Too many mutating requests for this account; retry in {retry_after_seconds:.2f}s.",
            {"retryAfterSeconds": f"{retry_after_seconds:.3f}"},
        )


class BacklogFull(RateLimited):
    """Too many jobs wait for a worker: a mutation would only lengthen the queue; retry
    after a pause. Answered as a rate limit (RetryInfo; ThrottlingException)."""

    reason = "BACKLOG_FULL"

    def __init__(self, retry_after_seconds: float) -> None:
        DomainError.__init__(
            self,
            f"The server has too much work queued; retry in {retry_after_seconds:.0f}s.",
            {"retryAfterSeconds": f"{retry_after_seconds:.3f}"},
        )
        self.retry_after_seconds = retry_after_seconds


class RequestTimedOut(DomainError):
    """The server's own deadline for one call passed before it finished."""

    reason = "REQUEST_TIMED_OUT"


# ----- VPC connectors and VPC ingress connections -----


class VpcConnectorNotFound(NotFound):
    reason = "VPC_CONNECTOR_NOT_FOUND"


class VpcIngressConnectionNotFound(NotFound):
    reason = "VPC_INGRESS_CONNECTION_NOT_FOUND"


class VpcConnectorInUse(ConnectionInUse):
    """Services still send egress through the connector (App Runner: a bad request)."""

    reason = "VPC_CONNECTOR_IN_USE"


class VpcConnectorNotActive(ConnectionNotAvailable):
    """The connector was deleted (INACTIVE): no service may use it."""

    reason = "VPC_CONNECTOR_NOT_ACTIVE"


class VpcConnectorNameTaken(AlreadyExists):
    reason = "VPC_CONNECTOR_NAME_TAKEN"


class VpcIngressConnectionNameTaken(AlreadyExists):
    reason = "VPC_INGRESS_CONNECTION_NAME_TAKEN"
