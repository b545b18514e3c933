"""The Python client: one method per RPC wired to the right RPC, errors raised as App
Runner-named exceptions with their rich details, retries of UNAVAILABLE only where they
are safe, waiters, and pagination. Fake servers (grpc.aio, in this process) script the
failures; the real server checks the rest. The client is synchronous, so async tests call
it through asyncio.to_thread and the servers' event loop keeps running."""

from __future__ import annotations

import asyncio
import re
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import grpc
import pytest
from google.protobuf import any_pb2, message_factory
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_client import (
    AccessDeniedException,
    ConflictException,
    FieldViolation,
    InternalServiceErrorException,
    InvalidRequestException,
    InvalidStateException,
    OperationTimeoutError,
    PreconditionFailedException,
    RequestTimeoutException,
    ResourceNotFoundException,
    ServiceControlClient,
    ServiceControlError,
    ServiceQuotaExceededException,
    ServiceUnavailableException,
    default_api_key,
)
from servicecontrol_client.images import sample_image
from tests.support.server import ACCOUNT, Harness, harness_settings, running_harness

SERVICE = api.DESCRIPTOR.services_by_name["ServiceControl"]
ARN = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/hello-web/{'a' * 32}"
UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# ----- a scriptable fake server -----

Behaviour = Callable[[Message, grpc.aio.ServicerContext], Awaitable[Any]]


@dataclass
class Call:
    method: str
    request: Message
    metadata: dict[str, str]


@dataclass
class FakeServer:
    """Answers every ServiceControl RPC with an empty response unless `behaviours` says
    otherwise, and records each call."""

    port: int = 0
    calls: list[Call] = field(default_factory=list)
    behaviours: dict[str, Behaviour] = field(default_factory=dict)

    def named(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def handler(self) -> grpc.GenericRpcHandler:
        fake = self

        class Handler(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
                name = details.method.rsplit("/", 1)[-1]
                method = SERVICE.methods_by_name.get(name)
                if method is None:
                    return None
                request_type = message_factory.GetMessageClass(method.input_type)
                response_type = message_factory.GetMessageClass(method.output_type)

                async def unary(request: Message, context: grpc.aio.ServicerContext) -> Any:
                    fake.calls.append(Call(name, request, dict(context.invocation_metadata())))
                    behaviour = fake.behaviours.get(name)
                    return await behaviour(request, context) if behaviour else response_type()

                async def stream(request: Message, context: grpc.aio.ServicerContext) -> Any:
                    fake.calls.append(Call(name, request, dict(context.invocation_metadata())))
                    behaviour = fake.behaviours.get(name)
                    if behaviour is not None:
                        async for item in behaviour(request, context):  # type: ignore[attr-defined]
                            yield item

                async def pushed(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                    messages = [message async for message in requests]
                    # Recorded as one call carrying the first message (the header).
                    fake.calls.append(Call(name, messages[0], dict(context.invocation_metadata())))
                    return response_type()

                if method.client_streaming:
                    return grpc.stream_unary_rpc_method_handler(
                        pushed, request_type.FromString, response_type.SerializeToString
                    )
                if method.server_streaming:
                    return grpc.unary_stream_rpc_method_handler(
                        stream, request_type.FromString, response_type.SerializeToString
                    )
                return grpc.unary_unary_rpc_method_handler(
                    unary, request_type.FromString, response_type.SerializeToString
                )

        return Handler()


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = grpc.aio.server()
    state = FakeServer()
    server.add_generic_rpc_handlers((state.handler(),))
    state.port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield state
    await server.stop(0)


def client_for(port: int, **kwargs: Any) -> ServiceControlClient:
    kwargs.setdefault("api_key", "")
    # Short backoff keeps retry tests fast; the schedule itself is not what they test.
    kwargs.setdefault("backoff_base", 0.01)
    kwargs.setdefault("backoff_max", 0.05)
    return ServiceControlClient(f"127.0.0.1:{port}", **kwargs)


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def failing(
    code: int, times: int, reason: str = "BACKEND_UNAVAILABLE", then: Message | None = None
) -> Behaviour:
    """Fails the first `times` calls with a rich status, then answers `then`."""
    seen = 0

    async def behaviour(request: Message, context: grpc.aio.ServicerContext) -> Any:
        nonlocal seen
        seen += 1
        if seen <= times:
            status = status_pb2.Status(
                code=code,
                message=f"scripted failure {seen}",
                details=[
                    _pack(error_details_pb2.ErrorInfo(reason=reason, domain="servicecontrol"))
                ],
            )
            await context.abort_with_status(rpc_status.to_status(status))
        return then

    return behaviour


# ----- coverage of the contract -----


def test_every_rpc_of_the_contract_has_a_method() -> None:
    missing = [
        m.name
        for m in SERVICE.methods
        if not callable(getattr(ServiceControlClient, snake(m.name), None))
    ]
    assert not missing, f"ServiceControlClient lacks {missing}"
    assert len(SERVICE.methods) == 43


SAMPLE = sample_image("hello-web:1.0")
SAMPLE_HEADER = api.ImageUploadHeader(
    image_identifier="hello-web:1.0",
    config=api.ImageBlob(digest=SAMPLE.config.digest, size=SAMPLE.config.size),
    layers=[
        api.ImageBlob(digest=layer.digest, size=layer.size, media_type=layer.media_type)
        for layer in SAMPLE.layers
    ],
)

# One call per RPC, with the request fields each must carry.
CALLS: dict[str, tuple[Callable[[ServiceControlClient], Any], dict[str, Any]]] = {
    "CreateService": (
        lambda c: c.create_service(
            service_name="hello-web",
            source_configuration={"image_repository": {"image_identifier": "hello-web:1.0"}},
            instance_configuration=pb.InstanceConfiguration(cpu="1 vCPU"),
        ),
        {
            "service_name": "hello-web",
            "instance_configuration": pb.InstanceConfiguration(cpu="1 vCPU"),
        },
    ),
    "DescribeService": (lambda c: c.describe_service(ARN), {"service_arn": ARN}),
    "ListServices": (
        lambda c: c.list_services(page_size=3, page_token="t"),
        {"page_size": 3, "page_token": "t"},
    ),
    "UpdateService": (
        lambda c: c.update_service(ARN, instance_configuration={"cpu": "2 vCPU"}, etag='"e"'),
        {"service_arn": ARN, "etag": '"e"'},
    ),
    "DeleteService": (lambda c: c.delete_service(ARN, etag='"e"'), {"service_arn": ARN}),
    "PauseService": (lambda c: c.pause_service(ARN), {"service_arn": ARN}),
    "ResumeService": (lambda c: c.resume_service(ARN), {"service_arn": ARN}),
    "StartDeployment": (lambda c: c.start_deployment(ARN), {"service_arn": ARN}),
    "TagResource": (
        lambda c: c.tag_resource(ARN, tags={"team": "web"}),
        {"resource_arn": ARN, "tags": {"team": "web"}},
    ),
    "UntagResource": (
        lambda c: c.untag_resource(ARN, tag_keys=["team"]),
        {"resource_arn": ARN, "tag_keys": ["team"]},
    ),
    "ListTagsForResource": (lambda c: c.list_tags_for_resource(ARN), {"resource_arn": ARN}),
    "ListOperations": (lambda c: c.list_operations(ARN, page_size=2), {"service_arn": ARN}),
    "DescribeOperation": (lambda c: c.describe_operation("op-1"), {"operation_id": "op-1"}),
    "WaitOperation": (lambda c: c.wait_operation("op-1", timeout=1.5), {"operation_id": "op-1"}),
    "CreateConnection": (
        lambda c: c.create_connection(connection_name="my-github", provider_type="BITBUCKET"),
        {"connection_name": "my-github", "provider_type": pb.Connection.BITBUCKET},
    ),
    "ListConnections": (
        lambda c: c.list_connections(connection_name="my-github"),
        {"connection_name": "my-github"},
    ),
    "DeleteConnection": (lambda c: c.delete_connection("arn:c"), {"connection_arn": "arn:c"}),
    "AssociateCustomDomain": (
        lambda c: c.associate_custom_domain(
            ARN, domain_name="a.example.com", enable_www_subdomain=False
        ),
        {"service_arn": ARN, "domain_name": "a.example.com", "enable_www_subdomain": False},
    ),
    "DisassociateCustomDomain": (
        lambda c: c.disassociate_custom_domain(ARN, domain_name="a.example.com"),
        {"service_arn": ARN, "domain_name": "a.example.com"},
    ),
    "DescribeCustomDomains": (lambda c: c.describe_custom_domains(ARN), {"service_arn": ARN}),
    "ListCertificates": (
        lambda c: c.list_certificates(domain_name="a.example.com"),
        {"domain_name": "a.example.com"},
    ),
    "WatchEvents": (
        lambda c: list(c.watch_events(cursor="7", resource_arn=ARN)),
        {"cursor": "7", "resource_arn": ARN},
    ),
    "GetImageUploadStatus": (
        lambda c: c.get_image_upload_status("hello-web:1.0", SAMPLE),
        {"header": SAMPLE_HEADER},
    ),
    "PushImage": (lambda c: c.push_image("hello-web:1.0", SAMPLE), {"header": SAMPLE_HEADER}),
    # Auto scaling and observability configurations.
    "CreateAutoScalingConfiguration": (
        lambda c: c.create_auto_scaling_configuration(
            auto_scaling_configuration_name="scaling", min_size=2, tags={"team": "web"}
        ),
        {"auto_scaling_configuration_name": "scaling", "min_size": 2, "tags": {"team": "web"}},
    ),
    "DescribeAutoScalingConfiguration": (
        lambda c: c.describe_auto_scaling_configuration("arn:a"),
        {"auto_scaling_configuration_arn": "arn:a"},
    ),
    "ListAutoScalingConfigurations": (
        lambda c: c.list_auto_scaling_configurations(latest_only=False, page_size=2),
        {"latest_only": False, "page_size": 2},
    ),
    "DeleteAutoScalingConfiguration": (
        lambda c: c.delete_auto_scaling_configuration("arn:a", delete_all_revisions=True),
        {"auto_scaling_configuration_arn": "arn:a", "delete_all_revisions": True},
    ),
    "UpdateDefaultAutoScalingConfiguration": (
        lambda c: c.update_default_auto_scaling_configuration("arn:a"),
        {"auto_scaling_configuration_arn": "arn:a"},
    ),
    "ListServicesForAutoScalingConfiguration": (
        lambda c: c.list_services_for_auto_scaling_configuration("arn:a", page_size=3),
        {"auto_scaling_configuration_arn": "arn:a", "page_size": 3},
    ),
    "CreateObservabilityConfiguration": (
        lambda c: c.create_observability_configuration(
            observability_configuration_name="tracing", trace_vendor="AWSXRAY"
        ),
        {"observability_configuration_name": "tracing", "trace_vendor": "AWSXRAY"},
    ),
    "DescribeObservabilityConfiguration": (
        lambda c: c.describe_observability_configuration("arn:o"),
        {"observability_configuration_arn": "arn:o"},
    ),
    "ListObservabilityConfigurations": (
        lambda c: c.list_observability_configurations(observability_configuration_name="t-x1"),
        {"observability_configuration_name": "t-x1"},
    ),
    "DeleteObservabilityConfiguration": (
        lambda c: c.delete_observability_configuration("arn:o"),
        {"observability_configuration_arn": "arn:o"},
    ),
    # VPC connectors and ingress connections
    "CreateVpcConnector": (
        lambda c: c.create_vpc_connector(
            vpc_connector_name="egress", subnets=["s-1"], tags={"team": "net"}
        ),
        {"vpc_connector_name": "egress", "subnets": ["s-1"], "tags": {"team": "net"}},
    ),
    "DescribeVpcConnector": (
        lambda c: c.describe_vpc_connector("arn:v"),
        {"vpc_connector_arn": "arn:v"},
    ),
    "ListVpcConnectors": (lambda c: c.list_vpc_connectors(page_size=2), {"page_size": 2}),
    "DeleteVpcConnector": (
        lambda c: c.delete_vpc_connector("arn:v"),
        {"vpc_connector_arn": "arn:v"},
    ),
    "CreateVpcIngressConnection": (
        lambda c: c.create_vpc_ingress_connection(
            ARN, vpc_ingress_connection_name="in", vpc_id="vpc-1", vpc_endpoint_id="vpce-1"
        ),
        {"service_arn": ARN, "vpc_ingress_connection_name": "in"},
    ),
    "DescribeVpcIngressConnection": (
        lambda c: c.describe_vpc_ingress_connection("arn:i"),
        {"vpc_ingress_connection_arn": "arn:i"},
    ),
    "ListVpcIngressConnections": (
        lambda c: c.list_vpc_ingress_connections(service_arn=ARN, vpc_endpoint_id="vpce-1"),
        {"service_arn": ARN, "vpc_endpoint_id": "vpce-1"},
    ),
    "UpdateVpcIngressConnection": (
        lambda c: c.update_vpc_ingress_connection("arn:i", vpc_id="vpc-2", vpc_endpoint_id="e"),
        {"vpc_ingress_connection_arn": "arn:i"},
    ),
    "DeleteVpcIngressConnection": (
        lambda c: c.delete_vpc_ingress_connection("arn:i"),
        {"vpc_ingress_connection_arn": "arn:i"},
    ),
}
# Calls a method makes before its own RPC: a push first asks what the server holds.
PRECEDED_BY = {"PushImage": ["GetImageUploadStatus"]}


async def test_each_method_calls_its_rpc_with_its_fields_and_metadata(fake: FakeServer) -> None:
    assert set(CALLS) == {m.name for m in SERVICE.methods}
    with client_for(fake.port, api_key="k3y") as client:
        for name, (invoke, fields) in CALLS.items():
            fake.calls.clear()
            await asyncio.to_thread(invoke, client)
            assert [c.method for c in fake.calls] == [*PRECEDED_BY.get(name, []), name]
            call = fake.calls[-1]
            for key, value in fields.items():
                assert getattr(call.request, key) == value, (name, key)
            assert call.metadata["authorization"] == "Bearer k3y"
            if "request_id" in call.request.DESCRIPTOR.fields_by_name:
                # A fresh UUID4 per mutation, so that retrying one is safe.
                assert UUID4.fullmatch(call.request.request_id), name  # type: ignore[attr-defined]
    # The wait's duration travels as the request's timeout; no api_key, no authorization.
    fake.calls.clear()
    with client_for(fake.port) as client:
        await asyncio.to_thread(client.wait_operation, "op-1", timeout=1.5)
    request = fake.calls[0].request
    assert request.timeout.ToTimedelta().total_seconds() == 1.5  # type: ignore[attr-defined]
    assert "authorization" not in fake.calls[0].metadata


async def test_unset_optional_fields_stay_unset(fake: FakeServer) -> None:
    with client_for(fake.port) as client:
        await asyncio.to_thread(client.associate_custom_domain, ARN, domain_name="a.example.com")
        await asyncio.to_thread(client.delete_service, ARN, validate_only=True)
    associate, delete = fake.calls
    assert not associate.request.HasField("enable_www_subdomain")
    # validate_only changes nothing, so it needs no idempotency key to be retried.
    assert delete.request.request_id == "" and delete.request.validate_only  # type: ignore[attr-defined]
    assert "authorization" not in associate.metadata


# ----- errors -----

CODE_CLASSES = [
    (code_pb2.INVALID_ARGUMENT, InvalidRequestException),
    (code_pb2.NOT_FOUND, ResourceNotFoundException),
    (code_pb2.FAILED_PRECONDITION, InvalidStateException),
    (code_pb2.RESOURCE_EXHAUSTED, ServiceQuotaExceededException),
    (code_pb2.ALREADY_EXISTS, ConflictException),
    (code_pb2.ABORTED, PreconditionFailedException),
    (code_pb2.UNAVAILABLE, ServiceUnavailableException),
    (code_pb2.DEADLINE_EXCEEDED, RequestTimeoutException),
    (code_pb2.UNAUTHENTICATED, AccessDeniedException),
    (code_pb2.PERMISSION_DENIED, AccessDeniedException),
    (code_pb2.INTERNAL, InternalServiceErrorException),
    (code_pb2.UNIMPLEMENTED, InternalServiceErrorException),
    (code_pb2.DATA_LOSS, InternalServiceErrorException),
]


@pytest.mark.parametrize(("code", "cls"), CODE_CLASSES)
async def test_each_status_code_raises_its_exception(
    fake: FakeServer, code: int, cls: type[ServiceControlError]
) -> None:
    fake.behaviours["DescribeService"] = failing(code, 1, reason="SOME_REASON")
    with client_for(fake.port, retries=0) as client, pytest.raises(cls) as raised:
        await asyncio.to_thread(client.describe_service, ARN)
    err = raised.value
    assert type(err) is cls
    assert err.code.value[0] == code
    assert err.reason == "SOME_REASON" and err.domain == "servicecontrol"
    assert err.message == "scripted failure 1"


async def test_a_status_without_details_still_maps_by_code(fake: FakeServer) -> None:
    async def plain(request: Message, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.NOT_FOUND, "no rich details")

    fake.behaviours["DescribeOperation"] = plain
    with client_for(fake.port) as client, pytest.raises(ResourceNotFoundException) as raised:
        await asyncio.to_thread(client.describe_operation, "op")
    assert raised.value.reason == "" and raised.value.message == "no rich details"
    assert raised.value.status is None


async def test_real_errors_carry_reason_metadata_and_violations(harness: Harness) -> None:
    with client_for(harness.port, api_key=harness.keys[ACCOUNT].token) as client:
        missing = ARN.replace("a" * 32, "b" * 32)
        with pytest.raises(ResourceNotFoundException) as not_found:
            await asyncio.to_thread(client.describe_service, missing)
        assert not_found.value.reason == "SERVICE_NOT_FOUND"
        assert not_found.value.metadata == {"serviceArn": missing}
        assert not_found.value.code == grpc.StatusCode.NOT_FOUND

        with pytest.raises(InvalidRequestException) as invalid:
            await asyncio.to_thread(
                client.create_service,
                service_name="ab",
                source_configuration={"image_repository": {"image_identifier": "hello-web:1.0"}},
                instance_configuration={"cpu": "3 vCPU"},
            )
        assert invalid.value.reason == "INVALID_REQUEST"
        assert {v.field for v in invalid.value.field_violations} == {
            "service_name",
            "instance_configuration.cpu",
        }
        assert all(
            isinstance(v, FieldViolation) and v.description for v in invalid.value.field_violations
        )

        created = await asyncio.to_thread(
            client.create_service,
            service_name="hello-web",
            source_configuration={"image_repository": {"image_identifier": "hello-web:1.0"}},
        )
        arn = created.service.service_arn
        op = await asyncio.to_thread(client.wait_for_operation, created.operation_id, timeout=30)
        assert op.status == pb.Operation.SUCCEEDED

        with pytest.raises(ConflictException) as taken:
            await asyncio.to_thread(
                client.create_service,
                service_name="hello-web",
                source_configuration={"image_repository": {"image_identifier": "hello-web:1.0"}},
            )
        assert taken.value.reason == "SERVICE_NAME_TAKEN"
        assert taken.value.metadata["serviceArn"] == arn

        current = (await asyncio.to_thread(client.describe_service, arn)).service
        with pytest.raises(PreconditionFailedException) as stale:
            await asyncio.to_thread(client.pause_service, arn, etag='"stale-1"')
        assert stale.value.reason == "ETAG_MISMATCH"
        assert stale.value.metadata["etag"] == current.etag

        with pytest.raises(InvalidStateException) as state:
            await asyncio.to_thread(client.resume_service, arn)
        assert state.value.reason == "INVALID_STATE"
        assert state.value.metadata["status"] == "RUNNING"
        assert [v.subject for v in state.value.precondition_violations] == [arn]

        for i in range(harness.settings.connection_quota):
            await asyncio.to_thread(client.create_connection, connection_name=f"conn-{i:02d}")
        with pytest.raises(ServiceQuotaExceededException) as quota:
            await asyncio.to_thread(client.create_connection, connection_name="one-too-many")
        assert quota.value.reason == "CONNECTION_QUOTA_EXCEEDED"
        assert quota.value.metadata["limit"] == str(harness.settings.connection_quota)
        assert quota.value.quota_violations and quota.value.quota_violations[0].subject


# ----- retries -----


async def test_reads_are_retried_on_unavailable_until_they_succeed(fake: FakeServer) -> None:
    answer = api.DescribeServiceResponse(service=pb.Service(service_arn=ARN))
    fake.behaviours["DescribeService"] = failing(code_pb2.UNAVAILABLE, 3, then=answer)
    with client_for(fake.port, retries=4) as client:
        response = await asyncio.to_thread(client.describe_service, ARN)
    assert response.service.service_arn == ARN
    assert len(fake.named("DescribeService")) == 4


async def test_retries_stop_after_the_configured_number(fake: FakeServer) -> None:
    fake.behaviours["ListServices"] = failing(code_pb2.UNAVAILABLE, 100)
    with client_for(fake.port, retries=2) as client, pytest.raises(ServiceUnavailableException):
        await asyncio.to_thread(client.list_services)
    assert len(fake.named("ListServices")) == 3


async def test_mutations_are_retried_with_the_same_request_id(fake: FakeServer) -> None:
    fake.behaviours["DeleteService"] = failing(
        code_pb2.UNAVAILABLE, 2, then=api.DeleteServiceResponse(operation_id="op-1")
    )
    with client_for(fake.port) as client:
        response = await asyncio.to_thread(client.delete_service, ARN)
    assert response.operation_id == "op-1"
    ids = {c.request.request_id for c in fake.named("DeleteService")}  # type: ignore[attr-defined]
    assert len(fake.named("DeleteService")) == 3 and len(ids) == 1 and UUID4.fullmatch(ids.pop())


async def test_a_mutation_without_request_id_is_not_retried(fake: FakeServer) -> None:
    fake.behaviours["PauseService"] = failing(code_pb2.UNAVAILABLE, 1)
    with client_for(fake.port) as client, pytest.raises(ServiceUnavailableException):
        await asyncio.to_thread(client.pause_service, ARN, request_id="")
    assert len(fake.named("PauseService")) == 1


@pytest.mark.parametrize("code", [code_pb2.INTERNAL, code_pb2.ABORTED, code_pb2.DEADLINE_EXCEEDED])
async def test_other_codes_are_not_retried(fake: FakeServer, code: int) -> None:
    fake.behaviours["DescribeOperation"] = failing(code, 1, then=api.DescribeOperationResponse())
    with client_for(fake.port) as client, pytest.raises(ServiceControlError):
        await asyncio.to_thread(client.describe_operation, "op")
    assert len(fake.named("DescribeOperation")) == 1


async def test_a_server_that_is_not_there_yet_is_unavailable_after_retries() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The port is free again and nothing listens on it.
    with client_for(port, retries=1) as client, pytest.raises(ServiceUnavailableException):
        await asyncio.to_thread(client.describe_service, ARN)


async def test_watch_events_resumes_after_the_last_event_on_unavailable(fake: FakeServer) -> None:
    async def events(request: Message, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        after = int(request.cursor or 0)  # type: ignore[attr-defined]
        for position in (after + 1, after + 2):
            yield api.WatchEventsResponse(event=pb.Event(cursor=str(position), type="t"))
        if after == 0:
            # The first stream breaks after two events, as a restarting server would.
            await context.abort(grpc.StatusCode.UNAVAILABLE, "restarting")

    fake.behaviours["WatchEvents"] = events  # type: ignore[assignment]
    with client_for(fake.port) as client:
        stream = client.watch_events()
        cursors = await asyncio.to_thread(lambda: [next(stream).event.cursor for _ in range(4)])
        stream.close()
    assert cursors == ["1", "2", "3", "4"]
    assert [c.request.cursor for c in fake.named("WatchEvents")] == ["", "2"]  # type: ignore[attr-defined]


# ----- waiters -----


async def test_wait_for_operation_loops_on_wait_operation_without_sleeping(
    fake: FakeServer,
) -> None:
    states = iter([pb.Operation.PENDING, pb.Operation.IN_PROGRESS, pb.Operation.SUCCEEDED])

    async def wait(request: Message, context: grpc.aio.ServicerContext) -> Any:
        return api.WaitOperationResponse(operation=pb.Operation(id="op", status=next(states)))

    fake.behaviours["WaitOperation"] = wait
    with client_for(fake.port) as client, mock.patch("time.sleep") as sleep:
        op = await asyncio.to_thread(client.wait_for_operation, "op", timeout=30)
    assert op.status == pb.Operation.SUCCEEDED
    waits = fake.named("WaitOperation")
    assert len(waits) == 3 and not sleep.called
    # Each wait asks the server for at most the time left.
    assert all(0 < w.request.timeout.ToTimedelta().total_seconds() <= 30 for w in waits)  # type: ignore[attr-defined]


async def test_waiters_against_the_real_server(harness: Harness) -> None:
    with client_for(harness.port, api_key=harness.keys[ACCOUNT].token) as client:
        created = await asyncio.to_thread(
            client.create_service,
            service_name="waited",
            source_configuration={"image_repository": {"image_identifier": "hello-web:1.0"}},
        )
        seen: list[pb.Operation] = []
        op = await asyncio.to_thread(
            client.wait_for_operation, created.operation_id, timeout=30, on_update=seen.append
        )
        assert op.status == pb.Operation.SUCCEEDED and op.current_step == "done"
        assert seen and seen[-1].status == pb.Operation.SUCCEEDED
        arn = created.service.service_arn

        with pytest.raises(InvalidStateException):
            await asyncio.to_thread(client.wait_until_deleted, arn, 5)
        await asyncio.to_thread(client.delete_service, arn)
        deleted = await asyncio.to_thread(client.wait_until_deleted, arn, 30)
        assert deleted is not None and deleted.status == pb.Service.DELETED


async def test_waiters_time_out_when_the_operation_does_not_end(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    # No workers: operations stay PENDING for as long as the test wants.
    async with running_harness(settings, tmp_path, workers=0) as h:
        h.push_image()
        with client_for(h.port, api_key=h.keys[ACCOUNT].token) as client:
            created = await asyncio.to_thread(
                client.create_service,
                service_name="stuck",
                source_configuration={"image_repository": {"image_identifier": "hello-web:1.0"}},
            )
            with pytest.raises(OperationTimeoutError) as raised:
                await asyncio.to_thread(client.wait_for_operation, created.operation_id, timeout=1)
            assert raised.value.operation is not None
            assert raised.value.operation.status == pb.Operation.PENDING
            with pytest.raises(OperationTimeoutError):
                await asyncio.to_thread(client.wait_until_deleted, created.service.service_arn, 0.5)


# ----- pagination -----


async def test_iterators_walk_every_page(harness: Harness) -> None:
    with client_for(harness.port, api_key=harness.keys[ACCOUNT].token) as client:
        arns = []
        for name in ("page-one", "page-two", "page-three"):
            created = await asyncio.to_thread(
                client.create_service,
                service_name=name,
                source_configuration={"image_repository": {"image_identifier": "hello-web:1.0"}},
            )
            await asyncio.to_thread(client.wait_for_operation, created.operation_id, timeout=30)
            arns.append(created.service.service_arn)

        with mock.patch.object(client, "list_services", wraps=client.list_services) as listing:
            services = await asyncio.to_thread(lambda: list(client.iter_services(page_size=1)))
        assert [s.service_arn for s in services] == arns[::-1]  # newest first
        assert listing.call_count >= 3

        arn = arns[0]
        paused = await asyncio.to_thread(client.pause_service, arn)
        await asyncio.to_thread(client.wait_for_operation, paused.operation_id, timeout=30)
        operations = await asyncio.to_thread(lambda: list(client.iter_operations(arn, page_size=1)))
        assert [o.type for o in operations] == [
            pb.Operation.PAUSE_SERVICE,
            pb.Operation.CREATE_SERVICE,
        ]

        names = [f"conn-{uuid.uuid4().hex[:6]}" for _ in range(3)]
        for name in names:
            await asyncio.to_thread(client.create_connection, connection_name=name)
        connections = await asyncio.to_thread(lambda: list(client.iter_connections(page_size=2)))
        assert sorted(c.connection_name for c in connections) == sorted(names)

        running = arns[1]
        domains = ["a.example.com", "b.example.com", "c.example.com"]
        for domain in domains:
            await asyncio.to_thread(
                client.associate_custom_domain,
                running,
                domain_name=domain,
                enable_www_subdomain=False,
            )
        certificates = await asyncio.to_thread(lambda: list(client.iter_certificates(page_size=1)))
        assert sorted(c.domain_name for c in certificates) == domains
        custom = await asyncio.to_thread(
            lambda: list(client.iter_custom_domains(running, page_size=1))
        )
        assert sorted(d.domain_name for d in custom) == domains


def test_the_api_key_comes_from_the_environment_or_the_credentials_file(
    tmp_path: Path,
) -> None:
    assert default_api_key({"SERVICECONTROL_API_KEY": "SCKX.y"}, tmp_path) == "SCKX.y"
    assert default_api_key({}, tmp_path) is None
    data = tmp_path / ".servicecontrol"
    data.mkdir()
    (data / "credentials").write_text("# c\nSERVICECONTROL_API_KEY=SCKA.b\nAWS_X=1\n")
    assert default_api_key({}, tmp_path) == "SCKA.b"
    elsewhere = tmp_path / "d"
    elsewhere.mkdir()
    (elsewhere / "credentials").write_text("SERVICECONTROL_API_KEY=SCKC.d\n")
    assert default_api_key({"SERVICECONTROL_DATA_DIR": str(elsewhere)}, tmp_path) == "SCKC.d"


async def test_vpc_iterators_walk_every_page(harness: Harness) -> None:
    with client_for(harness.port, api_key=harness.keys[ACCOUNT].token) as client:
        names = [f"vpc-{uuid.uuid4().hex[:6]}" for _ in range(3)]
        for name in names:
            await asyncio.to_thread(
                client.create_vpc_connector, vpc_connector_name=name, subnets=["subnet-1"]
            )
        connectors = await asyncio.to_thread(lambda: list(client.iter_vpc_connectors(page_size=1)))
        assert sorted(c.vpc_connector_name for c in connectors) == sorted(names)

        arns = []
        for name in ("private-one", "private-two"):
            created = await asyncio.to_thread(
                client.create_service,
                service_name=name,
                source_configuration={"image_repository": {"image_identifier": "hello-web:1.0"}},
                network_configuration={"ingress_configuration": {"is_publicly_accessible": False}},
            )
            await asyncio.to_thread(client.wait_for_operation, created.operation_id, timeout=30)
            await asyncio.to_thread(
                client.create_vpc_ingress_connection,
                created.service.service_arn,
                vpc_ingress_connection_name=f"in-{name}",
                vpc_id="vpc-1",
                vpc_endpoint_id="vpce-1",
            )
            arns.append(created.service.service_arn)
        ingress = await asyncio.to_thread(
            lambda: list(client.iter_vpc_ingress_connections(vpc_endpoint_id="vpce-1", page_size=1))
        )
        assert sorted(c.service_arn for c in ingress) == sorted(arns)
