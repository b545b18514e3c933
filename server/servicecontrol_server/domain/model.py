"""The resources the product manages, as plain values, and their lifecycle rules."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from .errors import InvalidState, OperationInProgress


class ServiceStatus(StrEnum):
    CREATE_FAILED = "CREATE_FAILED"
    RUNNING = "RUNNING"
    DELETED = "DELETED"
    DELETE_FAILED = "DELETE_FAILED"
    PAUSED = "PAUSED"
    OPERATION_IN_PROGRESS = "OPERATION_IN_PROGRESS"


class OperationType(StrEnum):
    START_DEPLOYMENT = "START_DEPLOYMENT"
    CREATE_SERVICE = "CREATE_SERVICE"
    PAUSE_SERVICE = "PAUSE_SERVICE"
    RESUME_SERVICE = "RESUME_SERVICE"
    DELETE_SERVICE = "DELETE_SERVICE"
    UPDATE_SERVICE = "UPDATE_SERVICE"


class OperationStatus(StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    FAILED = "FAILED"
    SUCCEEDED = "SUCCEEDED"
    ROLLBACK_IN_PROGRESS = "ROLLBACK_IN_PROGRESS"
    ROLLBACK_FAILED = "ROLLBACK_FAILED"
    ROLLBACK_SUCCEEDED = "ROLLBACK_SUCCEEDED"

    @property
    def is_active(self) -> bool:
        return self in (OperationStatus.PENDING, OperationStatus.IN_PROGRESS)


class ConnectionStatus(StrEnum):
    PENDING_HANDSHAKE = "PENDING_HANDSHAKE"
    AVAILABLE = "AVAILABLE"
    ERROR = "ERROR"
    DELETED = "DELETED"


class ProviderType(StrEnum):
    GITHUB = "GITHUB"
    BITBUCKET = "BITBUCKET"


class CustomDomainStatus(StrEnum):
    CREATING = "CREATING"
    CREATE_FAILED = "CREATE_FAILED"
    ACTIVE = "ACTIVE"
    DELETING = "DELETING"
    DELETE_FAILED = "DELETE_FAILED"
    PENDING_CERTIFICATE_DNS_VALIDATION = "PENDING_CERTIFICATE_DNS_VALIDATION"
    BINDING_CERTIFICATE = "BINDING_CERTIFICATE"


class CertificateStatus(StrEnum):
    PENDING_VALIDATION = "PENDING_VALIDATION"
    ISSUED = "ISSUED"
    VALIDATION_FAILED = "VALIDATION_FAILED"


# The statuses each operation may start from.
ALLOWED_FROM: dict[OperationType, frozenset[ServiceStatus]] = {
    OperationType.DELETE_SERVICE: frozenset(
        {
            ServiceStatus.RUNNING,
            ServiceStatus.PAUSED,
            ServiceStatus.CREATE_FAILED,
            ServiceStatus.DELETE_FAILED,
        }
    ),
    OperationType.PAUSE_SERVICE: frozenset({ServiceStatus.RUNNING}),
    OperationType.RESUME_SERVICE: frozenset({ServiceStatus.PAUSED}),
    # A CREATE_FAILED service is rebuilt by an update, as App Runner allows since 2023.
    OperationType.UPDATE_SERVICE: frozenset({ServiceStatus.RUNNING, ServiceStatus.CREATE_FAILED}),
    # Deploys the image its tag names now to a running service.
    OperationType.START_DEPLOYMENT: frozenset({ServiceStatus.RUNNING}),
}
# Where the service lands when the operation succeeds, and when it fails for good.
SUCCESS_STATUS: dict[OperationType, ServiceStatus] = {
    OperationType.CREATE_SERVICE: ServiceStatus.RUNNING,
    OperationType.DELETE_SERVICE: ServiceStatus.DELETED,
    OperationType.PAUSE_SERVICE: ServiceStatus.PAUSED,
    OperationType.RESUME_SERVICE: ServiceStatus.RUNNING,
    OperationType.UPDATE_SERVICE: ServiceStatus.RUNNING,
    OperationType.START_DEPLOYMENT: ServiceStatus.RUNNING,
}


def failure_status(op_type: OperationType, before: ServiceStatus) -> ServiceStatus:
    """Where a service lands when an operation on it gives up."""
    if op_type is OperationType.CREATE_SERVICE:
        return ServiceStatus.CREATE_FAILED
    if op_type is OperationType.DELETE_SERVICE:
        return ServiceStatus.DELETE_FAILED
    if op_type is OperationType.UPDATE_SERVICE and before is ServiceStatus.CREATE_FAILED:
        return ServiceStatus.CREATE_FAILED
    # Pause, resume and update roll back to where the service was.
    return before


@dataclass
class Service:
    service_id: str
    account_id: str
    region: str
    service_name: str
    service_arn: str
    service_url: str
    status: ServiceStatus
    version: int
    created_at: datetime
    updated_at: datetime
    status_message: str = ""
    current_operation_id: str | None = None
    # The status the running operation started from, to roll back to.
    status_before_operation: ServiceStatus | None = None
    connection_arn: str | None = None
    deleted_at: datetime | None = None
    purge_at: datetime | None = None
    # None once deleted: the configuration goes with the service.
    configuration: ServiceConfiguration | None = None

    @property
    def etag(self) -> str:
        return f'"{self.service_id[:8]}-{self.version}"'

    def check_can_start(self, op_type: OperationType) -> None:
        """Raises unless `op_type` may start now."""
        if self.status is ServiceStatus.OPERATION_IN_PROGRESS and self.current_operation_id:
            raise OperationInProgress(
                f"Service {self.service_arn} has operation {self.current_operation_id} "
                "in progress.",
                {
                    "serviceArn": self.service_arn,
                    "operationId": self.current_operation_id,
                },
            )
        allowed = ALLOWED_FROM[op_type]
        if self.status not in allowed:
            raise InvalidState(
                f"Service {self.service_arn} is {self.status.value}; "
                f"{op_type.value} needs one of {', '.join(sorted(allowed))}.",
                {
                    "serviceArn": self.service_arn,
                    "status": self.status.value,
                    "allowedStatuses": ",".join(sorted(allowed)),
                },
            )

    def start_operation(self, op_type: OperationType, operation_id: str) -> None:
        self.check_can_start(op_type)
        self.status_before_operation = self.status
        self.status = ServiceStatus.OPERATION_IN_PROGRESS
        self.current_operation_id = operation_id
        self.status_message = ""


@dataclass
class ServiceConfiguration:
    """The service configuration: what a delete removes along with the image copy."""

    source: dict[str, Any]
    instance: dict[str, Any]
    health_check: dict[str, Any]
    image_identifier: str | None = None
    # Where the service's private image copy lives: bucket and key prefix.
    image_bucket: str | None = None
    image_prefix: str | None = None


@dataclass
class Operation:
    operation_id: str
    account_id: str
    service_id: str
    target_arn: str
    type: OperationType
    status: OperationStatus
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None = None
    current_step: str = ""
    attempt: int = 0
    error: dict[str, Any] | None = None
    deletion_report: dict[str, Any] | None = None
    next_attempt_at: datetime | None = None
    last_error: str = ""
    # Once the job has had a transient failure: when it stops retrying them.
    retry_until: datetime | None = None


@dataclass
class Connection:
    connection_id: str
    account_id: str
    connection_name: str
    connection_arn: str
    provider_type: ProviderType
    status: ConnectionStatus
    created_at: datetime
    deleted_at: datetime | None = None
    purge_at: datetime | None = None


@dataclass
class Certificate:
    certificate_id: str
    account_id: str
    certificate_arn: str
    domain_name: str
    status: CertificateStatus
    validation_records: list[dict[str, str]]
    created_at: datetime
    service_id: str | None = None
    service_arn: str | None = None
    unlinked_at: datetime | None = None
    expires_at: datetime | None = None


@dataclass
class CustomDomain:
    service_id: str
    domain_name: str
    enable_www_subdomain: bool
    status: CustomDomainStatus
    certificate_id: str
    created_at: datetime
    validation_records: list[dict[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Event:
    """A state change to record in the outbox, in the transaction that makes it."""

    account_id: str
    resource_arn: str
    type: str
    payload: dict[str, Any]
