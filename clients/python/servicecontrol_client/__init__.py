"""The Python client of ServiceControl: `ServiceControlClient` and its exceptions.

from servicecontrol_client import ServiceControlClient

with ServiceControlClient("127.0.0.1:50051", account="123456789012") as client:
    deleted = client.delete_service(service_arn)
    client.wait_until_deleted(service_arn, timeout=300)
"""

from __future__ import annotations

from .client import (
    ACCOUNT_METADATA_KEY,
    DEFAULT_ENDPOINT,
    TERMINAL_OPERATION_STATUSES,
    ServiceControlClient,
)
from .errors import (
    AccessDeniedException,
    ConflictException,
    FieldViolation,
    InternalServiceErrorException,
    InvalidRequestException,
    InvalidStateException,
    OperationFailedError,
    OperationTimeoutError,
    PreconditionFailedException,
    PreconditionViolation,
    QuotaViolation,
    RequestTimeoutException,
    ResourceNotFoundException,
    ServiceControlError,
    ServiceQuotaExceededException,
    ServiceUnavailableException,
)

__version__ = "0.1.0"

__all__ = [
    "ACCOUNT_METADATA_KEY",
    "DEFAULT_ENDPOINT",
    "TERMINAL_OPERATION_STATUSES",
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
    "ServiceControlClient",
    "ServiceControlError",
    "ServiceQuotaExceededException",
    "ServiceUnavailableException",
    "__version__",
]
