"""The Python client tells a rate limit from a quota: both are RESOURCE_EXHAUSTED, but a
rate limit (reason RATE_LIMITED) is a ThrottlingException carrying the server's RetryInfo
delay, and only a quota is a ServiceQuotaExceededException."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from servicecontrol_client import (
    ServiceControlError,
    ServiceQuotaExceededException,
    ThrottlingException,
)
from servicecontrol_client.errors import from_status


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type]
    return packed


def _status(reason: str, *extra: object) -> status_pb2.Status:
    info = error_details_pb2.ErrorInfo(reason=reason, domain="servicecontrol")
    return status_pb2.Status(
        code=code_pb2.RESOURCE_EXHAUSTED,
        message="refused",
        details=[_packed(info), *(_packed(e) for e in extra)],
    )


def test_a_rate_limit_is_throttling_with_the_servers_delay() -> None:
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=250_000_000))
    error = from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "x", _status("RATE_LIMITED", retry))
    assert isinstance(error, ThrottlingException)
    assert not isinstance(error, ServiceQuotaExceededException)
    assert error.retry_after == 0.25
    assert error.reason == "RATE_LIMITED"


def test_a_quota_stays_a_quota_and_throttling_without_retry_info_has_no_delay() -> None:
    quota = from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "x", _status("SERVICE_QUOTA_EXCEEDED"))
    assert type(quota) is ServiceQuotaExceededException
    bare = from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "x", _status("RATE_LIMITED"))
    assert isinstance(bare, ThrottlingException) and bare.retry_after is None
    assert isinstance(bare, ServiceControlError)


def test_a_full_backlog_is_throttling_with_the_servers_delay() -> None:
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=5))
    error = from_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "x", _status("BACKLOG_FULL", retry))
    assert isinstance(error, ThrottlingException)
    assert error.retry_after == 5
    assert error.reason == "BACKLOG_FULL"
