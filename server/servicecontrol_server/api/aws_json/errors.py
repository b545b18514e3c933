"""App Runner's error types on the wire, and the translation of domain errors to them.

An error answer is `{"__type": <name>, "Message": <text>}` with the HTTP status App
Runner's model gives the type (AWS JSON 1.0 error serialization)."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Collection, Sequence

from ...domain import config_resources, errors

log = logging.getLogger(__name__)

INVALID_REQUEST = "InvalidRequestException"
INVALID_STATE = "InvalidStateException"
RESOURCE_NOT_FOUND = "ResourceNotFoundException"
QUOTA_EXCEEDED = "ServiceQuotaExceededException"
INTERNAL = "InternalServiceErrorException"
# Protocol-level errors every AWS JSON service answers with, outside App Runner's model.
UNKNOWN_OPERATION = "UnknownOperationException"
SERIALIZATION = "SerializationException"
MISSING_TOKEN = "MissingAuthenticationTokenException"
INCOMPLETE_SIGNATURE = "IncompleteSignatureException"
INVALID_SIGNATURE = "InvalidSignatureException"
# What every AWS service answers when a caller exceeds its request rate; the SDKs retry it.
THROTTLING = "ThrottlingException"
UNRECOGNIZED_CLIENT = "UnrecognizedClientException"
EXPIRED_TOKEN = "ExpiredTokenException"
ACCESS_DENIED = "AccessDeniedException"
# A backend (the database, the object store) is unreachable: HTTP 503, which botocore
# (legacy and standard retry modes) and the other AWS SDKs retry with backoff.
SERVICE_UNAVAILABLE = "ServiceUnavailableException"

# The model's `smithy.api#httpError` of each modeled error; the quota error is 402.
HTTP_STATUS = {
    INVALID_REQUEST: 400,
    INVALID_STATE: 400,
    RESOURCE_NOT_FOUND: 400,
    QUOTA_EXCEEDED: 402,
    INTERNAL: 500,
    UNKNOWN_OPERATION: 400,
    SERIALIZATION: 400,
    MISSING_TOKEN: 403,
    INCOMPLETE_SIGNATURE: 403,
    INVALID_SIGNATURE: 403,
    THROTTLING: 400,
    UNRECOGNIZED_CLIENT: 403,
    EXPIRED_TOKEN: 403,
    ACCESS_DENIED: 403,
    SERVICE_UNAVAILABLE: 503,
}
# The model's ErrorMessage shape holds at most 600 characters.
MAX_MESSAGE = 600


class AwsError(Exception):
    """An answer in App Runner's error format."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message[:MAX_MESSAGE]

    @property
    def status(self) -> int:
        return HTTP_STATUS[self.error_type]


def invalid_request(message: str) -> AwsError:
    return AwsError(INVALID_REQUEST, message)


def serialization(message: str) -> AwsError:
    return AwsError(SERIALIZATION, message)


def _error_type(exc: errors.DomainError) -> str:
    if isinstance(exc, errors.BackendUnavailable):
        return SERVICE_UNAVAILABLE
    if isinstance(exc, errors.NotFound):
        return RESOURCE_NOT_FOUND
    if isinstance(exc, errors.InvalidState | errors.OperationInProgress):
        return INVALID_STATE
    if isinstance(exc, errors.QuotaExceeded):
        return QUOTA_EXCEEDED
    if isinstance(
        exc,
        errors.InvalidRequest
        | errors.InvalidPageToken
        | errors.RequestIdReused
        | errors.EtagMismatch
        | errors.AlreadyExists
        # App Runner refuses a resource in use, or one not ready to be used, as a bad
        # request (e.g. deleting a VPC connector that services still use).
        | errors.ConnectionInUse
        | errors.ConnectionNotAvailable
        | config_resources.ConfigurationInUse
        | config_resources.ConfigurationInactive,
    ):
        return INVALID_REQUEST
    if isinstance(exc, errors.FailedPrecondition):
        return INVALID_STATE
    return INTERNAL


def from_domain(exc: errors.DomainError, declared: Collection[str]) -> AwsError:
    """The App Runner error for a domain refusal. An action answers only the errors its
    model declares: a client error it does not declare becomes InvalidRequestException,
    which every App Runner action declares."""
    if isinstance(exc, errors.RateLimited):
        return AwsError(THROTTLING, "Rate exceeded")
    error_type = _error_type(exc)
    if error_type == INTERNAL:
        return internal(exc)
    if error_type == SERVICE_UNAVAILABLE:
        return AwsError(error_type, exc.message)
    if error_type not in declared:
        error_type = INVALID_REQUEST
    if (
        isinstance(exc, errors.InvalidRequest)
        and exc.violations
        and exc.message == "; ".join(f"{v.field}: {v.description}" for v in exc.violations)
    ):
        return AwsError(error_type, validation_message(exc.violations))
    return AwsError(error_type, exc.message)


def validation_message(violations: Sequence[errors.FieldViolation]) -> str:
    """Field violations in AWS's wording, with App Runner's member paths."""
    count = len(violations)
    return f"{count} validation error{'s' if count > 1 else ''} detected: " + "; ".join(
        f"Value at '{member_path(v.field)}' failed to satisfy constraint: {v.description}"
        for v in violations
    )


def internal(exc: BaseException) -> AwsError:
    """An unexpected failure: logged with a correlation id that the caller also gets."""
    correlation = uuid.uuid4().hex
    log.error("internal error", exc_info=exc, extra={"correlation_id": correlation})
    return AwsError(
        INTERNAL, f"An unexpected service exception occurred. Correlation id {correlation}."
    )


def member_path(path: str) -> str:
    """A member's path as AWS validation messages print it: each member camelCased
    (`sourceConfiguration.imageRepository.imageIdentifier`), list items as
    `tags.1.member.key` (1-based)."""
    path = re.sub(r"\[(\d+)\]", lambda m: f".{int(m[1]) + 1}.member", path)
    return ".".join(_camel(part) for part in path.split("."))


def _camel(part: str) -> str:
    if "_" in part:
        head, *rest = part.split("_")
        return head + "".join(word[:1].upper() + word[1:] for word in rest)
    return part[:1].lower() + part[1:]
