"""The Python client of ServiceControl: `ServiceControlClient` and its exceptions.

from servicecontrol_client import ServiceControlClient

# The API key comes from SERVICECONTROL_API_KEY or the embedded server's credentials file.
with ServiceControlClient("127.0.0.1:50051") as client:
    deleted = client.delete_service(service_arn)
    client.wait_until_deleted(service_arn, timeout=300)
"""

from __future__ import annotations

from .client import (
    DEFAULT_ENDPOINT,
    TERMINAL_OPERATION_STATUSES,
    ServiceControlClient,
    default_api_key,
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
    ThrottlingException,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_ENDPOINT",
    "TERMINAL_OPERATION_STATUSES",
    "default_api_key",
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
    "ThrottlingException",
    "ServiceUnavailableException",
    "__version__",
]
