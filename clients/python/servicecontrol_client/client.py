"""`ServiceControlClient`: a synchronous, typed wrapper over the ServiceControl gRPC API.

One method per RPC, named as the RPC in snake_case, taking the request's fields as
keyword arguments and returning the response message. Nested messages may be given as
messages or as dicts (`{"image_repository": {"image_identifier": "hello-web:1.0"}}`).
Failed calls raise the exceptions of `servicecontrol_client.errors`.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

import grpc
from google.protobuf import duration_pb2

from servicecontrol.v1 import config_resources_pb2 as cpb
from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import service_control_pb2_grpc as api_grpc

from .errors import (
    InvalidStateException,
    OperationFailedError,
    OperationTimeoutError,
    RequestTimeoutException,
    ResourceNotFoundException,
    ThrottlingException,
    from_rpc_error,
)
from .images import CHUNK_SIZE, LocalBlob, LocalImage
from .vpc import VpcMethods

DEFAULT_ENDPOINT = "127.0.0.1:50051"
API_KEY_ENV = "SERVICECONTROL_API_KEY"
# The gRPC metadata key that selects the region a call acts in.
REGION_METADATA = "x-servicecontrol-region"
DATA_DIR_ENV = "SERVICECONTROL_DATA_DIR"
DEFAULT_DATA_DIR = ".servicecontrol"
CREDENTIALS_FILE = "credentials"

# The most a single WaitOperation may wait (the server's own cap); longer waits loop.
MAX_SERVER_WAIT_SECONDS = 600.0
# Added to a WaitOperation's deadline so the server answers before the call expires.
WAIT_DEADLINE_MARGIN_SECONDS = 5.0

TERMINAL_OPERATION_STATUSES = frozenset(
    {
        pb.Operation.SUCCEEDED,
        pb.Operation.FAILED,
        pb.Operation.ROLLBACK_SUCCEEDED,
        pb.Operation.ROLLBACK_FAILED,
    }
)

Resp = TypeVar("Resp")
Item = TypeVar("Item")
MessageArg = Any  # a message of the field's type, or a dict of its fields


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def default_api_key(
    environ: Mapping[str, str] | None = None, cwd: Path | None = None
) -> str | None:
    """The API key (`<key id>.<secret>`) from SERVICECONTROL_API_KEY, else from the
    credentials file the embedded server writes on first start
    (`$SERVICECONTROL_DATA_DIR/credentials`, by default `.servicecontrol/credentials`)."""
    env = os.environ if environ is None else environ
    if env.get(API_KEY_ENV):
        return env[API_KEY_ENV]
    data_dir = Path(env.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
    path = (cwd or Path.cwd()) / data_dir / CREDENTIALS_FILE
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, sep, value = line.partition("=")
        if sep and name.strip() == API_KEY_ENV:
            return value.strip()
    return None


class ServiceControlClient(VpcMethods):
    """A client of one ServiceControl endpoint, acting as one API key's account.

    `api_key` (`<key id>.<secret>`) is sent as `authorization: Bearer <key>`; when None,
    `default_api_key()` finds it (pass `""` to send none). `timeout` is each call's
    deadline in seconds, retries included. UNAVAILABLE is retried up to `retries` times
    with exponential backoff and full jitter, but only for reads and for mutations
    carrying a `request_id`: the client gives every mutation a fresh UUID4 request_id
    unless one is passed (pass `""` to send none, which also turns retries off for that
    call), so a retried mutation is applied at most once.

    A throttled call (RESOURCE_EXHAUSTED with reason RATE_LIMITED or BACKLOG_FULL) is
    retried by default, up to `throttle_retries` times, after the server's RetryInfo
    delay plus up to half of it again at random (so a burst of clients does not return
    at one instant), and never past the call's deadline: when the next attempt could
    not start in time, the ThrottlingException is raised at once. The server refuses a
    throttled call before it runs, so every call is retried, mutations without a
    request_id included. `retry_throttled=False` raises the ThrottlingException (with
    `reason` and `retry_after`) at the first refusal.
    """

    def __init__(
        self,
        target: str = DEFAULT_ENDPOINT,
        *,
        api_key: str | None = None,
        tls: bool = False,
        root_certificates: bytes | None = None,
        certificate_chain: bytes | None = None,
        private_key: bytes | None = None,
        timeout: float = 30.0,
        retries: int = 4,
        backoff_base: float = 0.1,
        backoff_max: float = 2.0,
        retry_throttled: bool = True,
        throttle_retries: int = 5,
        channel_options: Sequence[tuple[str, Any]] = (),
        region: str | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.retries = retries
        self.retry_throttled = retry_throttled
        self.throttle_retries = throttle_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        if (certificate_chain is None) != (private_key is None):
            raise ValueError("certificate_chain and private_key go together")
        if tls or root_certificates is not None or certificate_chain is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=root_certificates,
                private_key=private_key,
                certificate_chain=certificate_chain,
            )
            self._channel = grpc.secure_channel(target, credentials, options=channel_options)
        else:
            self._channel = grpc.insecure_channel(target, options=channel_options)
        self._stub = api_grpc.ServiceControlStub(self._channel)
        key = default_api_key() if api_key is None else api_key
        self._metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {key}"),) if key else ()
        )
        # The region every call acts in, sent as x-servicecontrol-region; None: the
        # server's default region.
        self.region = region or None
        if self.region:
            self._metadata += ((REGION_METADATA, self.region),)

    # ----- lifecycle -----

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ServiceControlClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----- plumbing -----

    def _backoff(self, attempt: int) -> float:
        # Full jitter: retries of many clients spread out instead of arriving together.
        return random.uniform(0.0, min(self.backoff_max, self.backoff_base * 2**attempt))

    def _unary(
        self,
        rpc: Callable[..., Resp],
        request: Any,
        *,
        retryable: bool,
        call_timeout: float | None,
    ) -> Resp:
        budget = self.timeout if call_timeout is None else call_timeout
        deadline = time.monotonic() + budget
        attempt = throttled = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestTimeoutException(f"no answer within {budget:g} s")
            try:
                return rpc(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as err:
                code = err.code() if isinstance(err, grpc.Call) else None
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    error = from_rpc_error(err)
                    if not isinstance(error, ThrottlingException):
                        raise error from err
                    if not self.retry_throttled or throttled >= self.throttle_retries:
                        raise error from err
                    pause = self._throttle_pause(error, throttled)
                    if pause >= deadline - time.monotonic():
                        raise error from err
                    throttled += 1
                    time.sleep(pause)
                    continue
                if not retryable or code != grpc.StatusCode.UNAVAILABLE or attempt >= self.retries:
                    raise from_rpc_error(err) from err
                pause = self._backoff(attempt)
                if pause >= deadline - time.monotonic():
                    raise from_rpc_error(err) from err
                attempt += 1
                time.sleep(pause)

    def _throttle_pause(self, error: ThrottlingException, attempt: int) -> float:
        """The server's delay, never less, plus up to half of it again at random; the
        backoff's when the server gave none."""
        delay = error.retry_after
        if delay is None:
            return self.backoff_base * 2**attempt + self._backoff(attempt)
        return delay + random.uniform(0.0, delay / 2)

    def _read(self, rpc: Callable[..., Resp], request: Any, call_timeout: float | None) -> Resp:
        """A call that changes nothing: safe to retry whenever the server is unavailable."""
        return self._unary(rpc, request, retryable=True, call_timeout=call_timeout)

    @staticmethod
    def _request_id(request_id: str | None, validate_only: bool) -> str:
        # A validate_only call changes nothing, so it is safe to retry without an id.
        if request_id is None:
            return "" if validate_only else str(uuid.uuid4())
        return request_id

    def _mutation(
        self,
        rpc: Callable[..., Resp],
        request: Any,
        call_timeout: float | None,
    ) -> Resp:
        retryable = bool(request.request_id) or bool(request.validate_only)
        return self._unary(rpc, request, retryable=retryable, call_timeout=call_timeout)

    # ----- services -----

    def create_service(
        self,
        *,
        service_name: str,
        source_configuration: MessageArg = None,
        instance_configuration: MessageArg = None,
        health_check_configuration: MessageArg = None,
        network_configuration: MessageArg = None,
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> api.CreateServiceResponse:
        request = api.CreateServiceRequest(
            service_name=service_name,
            source_configuration=source_configuration,
            instance_configuration=instance_configuration,
            health_check_configuration=health_check_configuration,
            network_configuration=network_configuration,
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.CreateService, request, call_timeout)

    def describe_service(
        self, service_arn: str, *, call_timeout: float | None = None
    ) -> api.DescribeServiceResponse:
        request = api.DescribeServiceRequest(service_arn=service_arn)
        return self._read(self._stub.DescribeService, request, call_timeout)

    def list_services(
        self, *, page_size: int = 0, page_token: str = "", call_timeout: float | None = None
    ) -> api.ListServicesResponse:
        request = api.ListServicesRequest(page_size=page_size, page_token=page_token)
        return self._read(self._stub.ListServices, request, call_timeout)

    def update_service(
        self,
        service_arn: str,
        *,
        source_configuration: MessageArg = None,
        instance_configuration: MessageArg = None,
        health_check_configuration: MessageArg = None,
        network_configuration: MessageArg = None,
        etag: str = "",
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> api.UpdateServiceResponse:
        request = api.UpdateServiceRequest(
            service_arn=service_arn,
            source_configuration=source_configuration,
            instance_configuration=instance_configuration,
            health_check_configuration=health_check_configuration,
            network_configuration=network_configuration,
            etag=etag,
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.UpdateService, request, call_timeout)

    def delete_service(
        self,
        service_arn: str,
        *,
        etag: str = "",
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> api.DeleteServiceResponse:
        request = api.DeleteServiceRequest(
            service_arn=service_arn,
            etag=etag,
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.DeleteService, request, call_timeout)

    def pause_service(
        self,
        service_arn: str,
        *,
        etag: str = "",
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> api.PauseServiceResponse:
        request = api.PauseServiceRequest(
            service_arn=service_arn,
            etag=etag,
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.PauseService, request, call_timeout)

    def start_deployment(
        self,
        service_arn: str,
        *,
        etag: str = "",
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> api.StartDeploymentResponse:
        """Deploys the image the service's tag names now."""
        request = api.StartDeploymentRequest(
            service_arn=service_arn,
            etag=etag,
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.StartDeployment, request, call_timeout)

    def resume_service(
        self,
        service_arn: str,
        *,
        etag: str = "",
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> api.ResumeServiceResponse:
        request = api.ResumeServiceRequest(
            service_arn=service_arn,
            etag=etag,
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.ResumeService, request, call_timeout)

    # ----- operations -----

    def list_operations(
        self,
        service_arn: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        call_timeout: float | None = None,
    ) -> api.ListOperationsResponse:
        request = api.ListOperationsRequest(
            service_arn=service_arn, page_size=page_size, page_token=page_token
        )
        return self._read(self._stub.ListOperations, request, call_timeout)

    def describe_operation(
        self, operation_id: str, *, call_timeout: float | None = None
    ) -> api.DescribeOperationResponse:
        request = api.DescribeOperationRequest(operation_id=operation_id)
        return self._read(self._stub.DescribeOperation, request, call_timeout)

    def wait_operation(
        self,
        operation_id: str,
        *,
        timeout: float | timedelta | None = None,
        call_timeout: float | None = None,
    ) -> api.WaitOperationResponse:
        """One WaitOperation call: `timeout` is the request's wait (the server's default,
        60 s, when None); the call's deadline defaults to that wait plus a margin."""
        request = api.WaitOperationRequest(operation_id=operation_id)
        wait = 60.0 if timeout is None else _seconds(timeout)
        if timeout is not None:
            duration = duration_pb2.Duration()
            duration.FromTimedelta(timedelta(seconds=wait))
            request.timeout.CopyFrom(duration)
        if call_timeout is None:
            call_timeout = wait + WAIT_DEADLINE_MARGIN_SECONDS
        return self._read(self._stub.WaitOperation, request, call_timeout)

    # ----- connections -----

    def create_connection(
        self,
        *,
        connection_name: str,
        provider_type: int | str = pb.Connection.GITHUB,
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> api.CreateConnectionResponse:
        if isinstance(provider_type, str):
            provider_type = pb.Connection.ProviderType.Value(provider_type)
        request = api.CreateConnectionRequest(
            connection_name=connection_name,
            provider_type=provider_type,  # type: ignore[arg-type]
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.CreateConnection, request, call_timeout)

    def list_connections(
        self,
        *,
        connection_name: str = "",
        page_size: int = 0,
        page_token: str = "",
        call_timeout: float | None = None,
    ) -> api.ListConnectionsResponse:
        request = api.ListConnectionsRequest(
            connection_name=connection_name, page_size=page_size, page_token=page_token
        )
        return self._read(self._stub.ListConnections, request, call_timeout)

    def delete_connection(
        self,
        connection_arn: str,
        *,
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> api.DeleteConnectionResponse:
        request = api.DeleteConnectionRequest(
            connection_arn=connection_arn,
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.DeleteConnection, request, call_timeout)

    # ----- custom domains and certificates -----

    def associate_custom_domain(
        self,
        service_arn: str,
        *,
        domain_name: str,
        enable_www_subdomain: bool | None = None,
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> api.AssociateCustomDomainResponse:
        request = api.AssociateCustomDomainRequest(
            service_arn=service_arn,
            domain_name=domain_name,
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        if enable_www_subdomain is not None:
            # Optional in the contract: unset means true, so only send what was given.
            request.enable_www_subdomain = enable_www_subdomain
        return self._mutation(self._stub.AssociateCustomDomain, request, call_timeout)

    def disassociate_custom_domain(
        self,
        service_arn: str,
        *,
        domain_name: str,
        request_id: str | None = None,
        validate_only: bool = False,
        call_timeout: float | None = None,
    ) -> api.DisassociateCustomDomainResponse:
        request = api.DisassociateCustomDomainRequest(
            service_arn=service_arn,
            domain_name=domain_name,
            request_id=self._request_id(request_id, validate_only),
            validate_only=validate_only,
        )
        return self._mutation(self._stub.DisassociateCustomDomain, request, call_timeout)

    def describe_custom_domains(
        self,
        service_arn: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        call_timeout: float | None = None,
    ) -> api.DescribeCustomDomainsResponse:
        request = api.DescribeCustomDomainsRequest(
            service_arn=service_arn, page_size=page_size, page_token=page_token
        )
        return self._read(self._stub.DescribeCustomDomains, request, call_timeout)

    def list_certificates(
        self,
        *,
        domain_name: str = "",
        page_size: int = 0,
        page_token: str = "",
        call_timeout: float | None = None,
    ) -> api.ListCertificatesResponse:
        request = api.ListCertificatesRequest(
            domain_name=domain_name, page_size=page_size, page_token=page_token
        )
        return self._read(self._stub.ListCertificates, request, call_timeout)

    # ----- tags -----

    def tag_resource(
        self, resource_arn: str, *, tags: dict[str, str], call_timeout: float | None = None
    ) -> api.TagResourceResponse:
        request = api.TagResourceRequest(resource_arn=resource_arn, tags=tags)
        # Setting the same tags again is the same outcome: safe to retry.
        return self._read(self._stub.TagResource, request, call_timeout)

    def untag_resource(
        self, resource_arn: str, *, tag_keys: list[str], call_timeout: float | None = None
    ) -> api.UntagResourceResponse:
        request = api.UntagResourceRequest(resource_arn=resource_arn, tag_keys=tag_keys)
        return self._read(self._stub.UntagResource, request, call_timeout)

    def list_tags_for_resource(
        self, resource_arn: str, *, call_timeout: float | None = None
    ) -> api.ListTagsForResourceResponse:
        request = api.ListTagsForResourceRequest(resource_arn=resource_arn)
        return self._read(self._stub.ListTagsForResource, request, call_timeout)

    # ----- auto scaling and observability configurations -----

    def create_auto_scaling_configuration(
        self,
        *,
        auto_scaling_configuration_name: str,
        max_concurrency: int | None = None,
        min_size: int | None = None,
        max_size: int | None = None,
        tags: Mapping[str, str] | None = None,
        call_timeout: float | None = None,
    ) -> cpb.CreateAutoScalingConfigurationResponse:
        request = cpb.CreateAutoScalingConfigurationRequest(
            auto_scaling_configuration_name=auto_scaling_configuration_name,
            max_concurrency=max_concurrency,
            min_size=min_size,
            max_size=max_size,
            tags=dict(tags or {}),
        )
        # Each call makes a new revision: not retried.
        return self._unary(
            self._stub.CreateAutoScalingConfiguration,
            request,
            retryable=False,
            call_timeout=call_timeout,
        )

    def describe_auto_scaling_configuration(
        self, auto_scaling_configuration_arn: str, *, call_timeout: float | None = None
    ) -> cpb.DescribeAutoScalingConfigurationResponse:
        request = cpb.DescribeAutoScalingConfigurationRequest(
            auto_scaling_configuration_arn=auto_scaling_configuration_arn
        )
        return self._read(self._stub.DescribeAutoScalingConfiguration, request, call_timeout)

    def list_auto_scaling_configurations(
        self,
        *,
        auto_scaling_configuration_name: str = "",
        latest_only: bool | None = None,
        page_size: int = 0,
        page_token: str = "",
        call_timeout: float | None = None,
    ) -> cpb.ListAutoScalingConfigurationsResponse:
        request = cpb.ListAutoScalingConfigurationsRequest(
            auto_scaling_configuration_name=auto_scaling_configuration_name,
            latest_only=latest_only,
            page_size=page_size,
            page_token=page_token,
        )
        return self._read(self._stub.ListAutoScalingConfigurations, request, call_timeout)

    def delete_auto_scaling_configuration(
        self,
        auto_scaling_configuration_arn: str,
        *,
        delete_all_revisions: bool = False,
        call_timeout: float | None = None,
    ) -> cpb.DeleteAutoScalingConfigurationResponse:
        request = cpb.DeleteAutoScalingConfigurationRequest(
            auto_scaling_configuration_arn=auto_scaling_configuration_arn,
            delete_all_revisions=delete_all_revisions,
        )
        return self._unary(
            self._stub.DeleteAutoScalingConfiguration,
            request,
            retryable=False,
            call_timeout=call_timeout,
        )

    def update_default_auto_scaling_configuration(
        self, auto_scaling_configuration_arn: str, *, call_timeout: float | None = None
    ) -> cpb.UpdateDefaultAutoScalingConfigurationResponse:
        request = cpb.UpdateDefaultAutoScalingConfigurationRequest(
            auto_scaling_configuration_arn=auto_scaling_configuration_arn
        )
        # Making the default the default again is the same outcome: safe to retry.
        return self._read(self._stub.UpdateDefaultAutoScalingConfiguration, request, call_timeout)

    def list_services_for_auto_scaling_configuration(
        self,
        auto_scaling_configuration_arn: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        call_timeout: float | None = None,
    ) -> cpb.ListServicesForAutoScalingConfigurationResponse:
        request = cpb.ListServicesForAutoScalingConfigurationRequest(
            auto_scaling_configuration_arn=auto_scaling_configuration_arn,
            page_size=page_size,
            page_token=page_token,
        )
        return self._read(self._stub.ListServicesForAutoScalingConfiguration, request, call_timeout)

    def create_observability_configuration(
        self,
        *,
        observability_configuration_name: str,
        trace_vendor: str = "",
        tags: Mapping[str, str] | None = None,
        call_timeout: float | None = None,
    ) -> cpb.CreateObservabilityConfigurationResponse:
        request = cpb.CreateObservabilityConfigurationRequest(
            observability_configuration_name=observability_configuration_name,
            trace_vendor=trace_vendor,
            tags=dict(tags or {}),
        )
        return self._unary(
            self._stub.CreateObservabilityConfiguration,
            request,
            retryable=False,
            call_timeout=call_timeout,
        )

    def describe_observability_configuration(
        self, observability_configuration_arn: str, *, call_timeout: float | None = None
    ) -> cpb.DescribeObservabilityConfigurationResponse:
        request = cpb.DescribeObservabilityConfigurationRequest(
            observability_configuration_arn=observability_configuration_arn
        )
        return self._read(self._stub.DescribeObservabilityConfiguration, request, call_timeout)

    def list_observability_configurations(
        self,
        *,
        observability_configuration_name: str = "",
        latest_only: bool | None = None,
        page_size: int = 0,
        page_token: str = "",
        call_timeout: float | None = None,
    ) -> cpb.ListObservabilityConfigurationsResponse:
        request = cpb.ListObservabilityConfigurationsRequest(
            observability_configuration_name=observability_configuration_name,
            latest_only=latest_only,
            page_size=page_size,
            page_token=page_token,
        )
        return self._read(self._stub.ListObservabilityConfigurations, request, call_timeout)

    def delete_observability_configuration(
        self, observability_configuration_arn: str, *, call_timeout: float | None = None
    ) -> cpb.DeleteObservabilityConfigurationResponse:
        request = cpb.DeleteObservabilityConfigurationRequest(
            observability_configuration_arn=observability_configuration_arn
        )
        return self._unary(
            self._stub.DeleteObservabilityConfiguration,
            request,
            retryable=False,
            call_timeout=call_timeout,
        )

    # ----- events -----

    def watch_events(
        self,
        *,
        cursor: str = "",
        resource_arn: str = "",
        resume: bool = True,
        call_timeout: float | None = None,
    ) -> Generator[api.WatchEventsResponse, None, None]:
        """Streams the account's events from `cursor`, without end unless `call_timeout`
        (seconds for the whole stream) is given. With `resume`, an UNAVAILABLE stream is
        reopened after the last event received, with backoff: the server's cursors make
        that lossless. Stop early by breaking out of the loop; the call is cancelled."""
        deadline = None if call_timeout is None else time.monotonic() + call_timeout
        attempt = 0
        while True:
            remaining = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            request = api.WatchEventsRequest(cursor=cursor, resource_arn=resource_arn)
            stream = self._stub.WatchEvents(request, timeout=remaining, metadata=self._metadata)
            try:
                for response in stream:
                    cursor = response.event.cursor or cursor
                    attempt = 0
                    yield response
                return
            except grpc.RpcError as err:
                code = err.code() if isinstance(err, grpc.Call) else None
                if not resume or code != grpc.StatusCode.UNAVAILABLE or attempt >= self.retries:
                    raise from_rpc_error(err) from err
                pause = self._backoff(attempt)
                if deadline is not None and pause >= deadline - time.monotonic():
                    raise from_rpc_error(err) from err
                attempt += 1
                time.sleep(pause)
            finally:
                stream.cancel()

    # ----- images -----

    def push_image(
        self,
        image_identifier: str,
        image: LocalImage,
        *,
        chunk_size: int = CHUNK_SIZE,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> api.PushImageResponse:
        """Pushes an image into the source registry through the server (PushImage).
        Asks first what the server already holds (GetImageUploadStatus) and sends only
        the rest, so a push that broke off resumes where it stopped; an UNAVAILABLE push
        is resumed up to `retries` times. on_progress(done, total) gets byte counts."""
        header = _image_header(image_identifier, image)
        attempt = 0
        while True:
            status = self.get_image_upload_status(image_identifier, image)
            offsets = {b.digest: b.received_bytes for b in status.blobs}
            done = sum(offsets.values())
            if on_progress is not None:
                on_progress(done, image.size)
            messages = self._push_messages(header, image, offsets, chunk_size, on_progress, done)
            try:
                response: api.PushImageResponse = self._stub.PushImage(
                    messages, metadata=self._metadata
                )
                return response
            except grpc.RpcError as err:
                code = err.code() if isinstance(err, grpc.Call) else None
                if code != grpc.StatusCode.UNAVAILABLE or attempt >= self.retries:
                    raise from_rpc_error(err) from err
                time.sleep(self._backoff(attempt))
                attempt += 1

    def get_image_upload_status(
        self, image_identifier: str, image: LocalImage, *, call_timeout: float | None = None
    ) -> api.GetImageUploadStatusResponse:
        """How much of each of the image's blobs the server already holds."""
        return self._unary(
            self._stub.GetImageUploadStatus,
            api.GetImageUploadStatusRequest(header=_image_header(image_identifier, image)),
            retryable=True,
            call_timeout=call_timeout,
        )

    @staticmethod
    def _push_messages(
        header: api.ImageUploadHeader,
        image: LocalImage,
        offsets: dict[str, int],
        chunk_size: int,
        on_progress: Callable[[int, int], None] | None,
        done: int,
    ) -> Iterator[api.PushImageRequest]:
        yield api.PushImageRequest(header=header)
        for blob in image.blobs():
            offset = offsets.get(blob.digest, 0)
            if offset >= blob.size:
                continue
            with blob.open() as stream:
                _skip(stream, offset)
                while offset < blob.size:
                    data = stream.read(min(chunk_size, blob.size - offset))
                    if not data:
                        raise ValueError(f"blob {blob.digest} ended at {offset} of {blob.size}")
                    yield api.PushImageRequest(
                        chunk=api.ImageChunk(digest=blob.digest, offset=offset, data=data)
                    )
                    offset += len(data)
                    done += len(data)
                    if on_progress is not None:
                        on_progress(done, image.size)

    # ----- waiters -----

    def wait_for_operation(
        self,
        operation_id: str,
        *,
        timeout: float = 600.0,
        on_update: Callable[[pb.Operation], None] | None = None,
        update_interval: float = 1.0,
    ) -> pb.Operation:
        """Waits until the operation ends and returns it (check its `status`: this does
        not raise for FAILED). Built on WaitOperation, so the server wakes the waiter the
        moment the operation ends; no polling. Raises OperationTimeoutError after
        `timeout` seconds.

        With `on_update`, it is called with the operation's current state first and then
        after every WaitOperation, each bounded to `update_interval` seconds, so a
        progress display stays current."""
        deadline = time.monotonic() + timeout
        last: pb.Operation | None = None
        if on_update is not None:
            last = self.describe_operation(operation_id).operation
            on_update(last)
            if last.status in TERMINAL_OPERATION_STATUSES:
                return last
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                state = pb.Operation.Status.Name(last.status) if last is not None else "unknown"
                raise OperationTimeoutError(
                    f"operation {operation_id} did not end within {timeout:g} s "
                    f"(last seen {state})",
                    last,
                )
            wait = min(remaining, MAX_SERVER_WAIT_SECONDS)
            if on_update is not None:
                wait = min(wait, update_interval)
            last = self.wait_operation(operation_id, timeout=wait).operation
            if on_update is not None:
                on_update(last)
            if last.status in TERMINAL_OPERATION_STATUSES:
                return last

    def wait_until_deleted(
        self,
        service_arn: str,
        timeout: float = 600.0,
        *,
        on_update: Callable[[pb.Operation], None] | None = None,
    ) -> pb.Service | None:
        """Waits until the service is DELETED and returns it (None if it was already
        purged). Raises OperationFailedError if the delete failed (the service is
        DELETE_FAILED), InvalidStateException if the service is not being deleted, and
        OperationTimeoutError after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                service = self.describe_service(service_arn).service
            except ResourceNotFoundException:
                return None
            if service.status == pb.Service.DELETED:
                return service
            if service.status == pb.Service.OPERATION_IN_PROGRESS and service.current_operation_id:
                op = self.wait_for_operation(
                    service.current_operation_id,
                    timeout=max(deadline - time.monotonic(), 0.0),
                    on_update=on_update,
                )
                if op.type == pb.Operation.DELETE_SERVICE and op.status != pb.Operation.SUCCEEDED:
                    raise OperationFailedError(
                        f"deleting {service_arn} ended {pb.Operation.Status.Name(op.status)}: "
                        f"{op.error.message}",
                        op,
                    )
                continue
            status = pb.Service.Status.Name(service.status)
            if service.status == pb.Service.DELETE_FAILED:
                raise OperationFailedError(
                    f"deleting {service_arn} failed: {service.status_message}"
                )
            raise InvalidStateException(
                f"service {service_arn} is {status} and not being deleted",
                code=grpc.StatusCode.FAILED_PRECONDITION,
                reason="INVALID_STATE",
                metadata={"serviceArn": service_arn, "status": status},
            )

    # ----- pagination -----

    @staticmethod
    def _pages(fetch: Callable[[str], tuple[Sequence[Item], str]]) -> Iterator[Item]:
        token = ""
        while True:
            items, token = fetch(token)
            yield from items
            if not token:
                return

    def iter_services(self, *, page_size: int = 0) -> Iterator[pb.Service]:
        """Every non-deleted service of the account, newest first, page by page."""

        def fetch(token: str) -> tuple[Sequence[pb.Service], str]:
            page = self.list_services(page_size=page_size, page_token=token)
            return page.services, page.next_page_token

        return self._pages(fetch)

    def iter_operations(self, service_arn: str, *, page_size: int = 0) -> Iterator[pb.Operation]:
        """Every operation of the service, newest first."""

        def fetch(token: str) -> tuple[Sequence[pb.Operation], str]:
            page = self.list_operations(service_arn, page_size=page_size, page_token=token)
            return page.operations, page.next_page_token

        return self._pages(fetch)

    def iter_connections(
        self, *, connection_name: str = "", page_size: int = 0
    ) -> Iterator[pb.Connection]:
        def fetch(token: str) -> tuple[Sequence[pb.Connection], str]:
            page = self.list_connections(
                connection_name=connection_name, page_size=page_size, page_token=token
            )
            return page.connections, page.next_page_token

        return self._pages(fetch)

    def iter_certificates(
        self, *, domain_name: str = "", page_size: int = 0
    ) -> Iterator[pb.Certificate]:
        def fetch(token: str) -> tuple[Sequence[pb.Certificate], str]:
            page = self.list_certificates(
                domain_name=domain_name, page_size=page_size, page_token=token
            )
            return page.certificates, page.next_page_token

        return self._pages(fetch)

    def iter_custom_domains(
        self, service_arn: str, *, page_size: int = 0
    ) -> Iterator[pb.CustomDomain]:
        def fetch(token: str) -> tuple[Sequence[pb.CustomDomain], str]:
            page = self.describe_custom_domains(service_arn, page_size=page_size, page_token=token)
            return page.custom_domains, page.next_page_token

        return self._pages(fetch)


def _image_header(image_identifier: str, image: LocalImage) -> api.ImageUploadHeader:
    return api.ImageUploadHeader(
        image_identifier=image_identifier,
        config=_image_blob(image.config),
        layers=[_image_blob(layer) for layer in image.layers],
    )


def _image_blob(blob: LocalBlob) -> api.ImageBlob:
    return api.ImageBlob(digest=blob.digest, size=blob.size, media_type=blob.media_type)


def _skip(stream: IO[bytes], offset: int) -> None:
    """Moves past what the server already holds, reading where the stream cannot seek."""
    if stream.seekable():
        stream.seek(offset)
        return
    left = offset
    while left > 0:
        data = stream.read(min(CHUNK_SIZE, left))
        if not data:
            raise ValueError(f"stream ended {left} bytes before offset {offset}")
        left -= len(data)
