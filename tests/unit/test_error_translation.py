"""One error translation per boundary, and every entry point goes through it: each RPC of
the contract is wrapped by api/errors.translated (none missing, none extra), and every
RPC and every App Runner action answers a backend outage as a retryable error
(UNAVAILABLE; HTTP 503) and an unexplained failure as INTERNAL (HTTP 500) with a
correlation id. Use cases are stubs here: no database, no object store."""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import botocore.session
import grpc
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import descriptor_pool, message_factory

from servicecontrol.v1 import service_control_pb2
from servicecontrol_server.api.aws_json.actions import ACTIONS
from servicecontrol_server.api.aws_json.http import create_app
from servicecontrol_server.api.server import start_grpc
from servicecontrol_server.api.servicer import ServiceControlServicer
from servicecontrol_server.api.use_cases import UseCases
from servicecontrol_server.application.identity import AuditEntry
from servicecontrol_server.application.rate_limit import MutationRateLimiter
from servicecontrol_server.domain.errors import BackendUnavailable
from servicecontrol_server.domain.identity import ApiKey, Role
from servicecontrol_server.settings import Settings

SERVICE = service_control_pb2.DESCRIPTOR.services_by_name["ServiceControl"]
ACCOUNT = "111111111111"
ARN = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/web/{'0' * 32}"
BEARER = (("authorization", "Bearer any-token"),)
CONNECTION_ARN = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:connection/gh/{'0' * 32}"


class Failing:
    """Every use case raises `make()`; streaming ones raise when called."""

    def __init__(self, make: Callable[[], Exception]) -> None:
        self.make = make
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name == "watch":

            def watch(*args: Any) -> Any:
                self.calls.append(name)
                raise self.make()

            return watch

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            raise self.make()

        return call


KEY = ApiKey(
    key_id="SCK" + "A" * 17,
    account_id=ACCOUNT,
    role=Role.WRITER,
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
    expires_at=None,
    revoked_at=None,
)


class Admitting:
    """Identity that admits every bearer token as the test account's writer key:
    authentication is another test's subject."""

    async def authenticate_token(self, token: str) -> ApiKey:
        return KEY

    async def record_refusal(self, entry: AuditEntry) -> None:
        return None


def use_cases(make: Callable[[], Exception]) -> tuple[UseCases, Failing]:
    failing = Failing(make)
    settings = Settings(default_account=ACCOUNT, region="us-east-1")
    return (
        UseCases(
            commands=failing,  # type: ignore[arg-type]
            connections=failing,  # type: ignore[arg-type]
            domains=failing,  # type: ignore[arg-type]
            tags=failing,  # type: ignore[arg-type]
            configs=failing,  # type: ignore[arg-type]
            vpc=failing,  # type: ignore[arg-type]
            events=failing,  # type: ignore[arg-type]
            identity=Admitting(),  # type: ignore[arg-type]
            settings=settings,
            rate_limiter=MutationRateLimiter(0, 1),
            images=failing,  # type: ignore[arg-type]
        ),
        failing,
    )


def outage() -> Exception:
    return BackendUnavailable("The database is unavailable; retry the call.")


def bug() -> Exception:
    return RuntimeError("a bug with /private/details in it")


def test_every_rpc_is_wrapped_and_no_method_is_extra() -> None:
    rpcs = {method.name for method in SERVICE.methods}
    missing = [
        name
        for name in sorted(rpcs)
        if not getattr(getattr(ServiceControlServicer, name, None), "__translated__", False)
    ]
    assert missing == [], f"RPCs not wrapped by the error translation: {missing}"
    # A public CamelCase method that is not an RPC of the contract is never served.
    extra = [
        name for name in dir(ServiceControlServicer) if name[:1].isupper() and name not in rpcs
    ]
    assert extra == [], f"servicer methods that are not RPCs of the contract: {extra}"


@contextlib.asynccontextmanager
async def grpc_stub(cases: UseCases) -> AsyncIterator[grpc.aio.Channel]:
    server, port, _ = await start_grpc(cases, "127.0.0.1:0")
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)


def _message(full_name: str) -> Any:
    return message_factory.GetMessageClass(
        descriptor_pool.Default().FindMessageTypeByName(full_name)
    )


async def _call(channel: grpc.aio.Channel, method: Any) -> grpc.aio.AioRpcError:
    path = f"/{SERVICE.full_name}/{method.name}"
    request = _message(method.input_type.full_name)()
    response_type = _message(method.output_type.full_name)
    if method.server_streaming:
        call = channel.unary_stream(
            path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=response_type.FromString,
        )(request, timeout=10, metadata=BEARER)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in call:
                pass
        return caught.value
    if method.client_streaming:
        # PushImage: the header reaches the use case (GetImageUploadStatus's twin).
        header = _message("servicecontrol.v1.PushImageRequest")(
            header=_message("servicecontrol.v1.ImageUploadHeader")()
        )
        pushing = channel.stream_unary(
            path,
            request_serializer=type(header).SerializeToString,
            response_deserializer=response_type.FromString,
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await pushing(iter([header]), timeout=10, metadata=BEARER)
        return caught.value
    unary = channel.unary_unary(
        path,
        request_serializer=type(request).SerializeToString,
        response_deserializer=response_type.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await unary(request, timeout=10, metadata=BEARER)
    return caught.value


@pytest.mark.parametrize(
    ("make", "code"),
    [(outage, grpc.StatusCode.UNAVAILABLE), (bug, grpc.StatusCode.INTERNAL)],
)
async def test_every_rpc_answers_through_the_translation(
    make: Callable[[], Exception], code: grpc.StatusCode
) -> None:
    cases, failing = use_cases(make)
    async with grpc_stub(cases) as channel:
        for method in SERVICE.methods:
            before = len(failing.calls)
            error = await _call(channel, method)
            assert len(failing.calls) == before + 1, f"{method.name} never reached its use case"
            assert error.code() == code, f"{method.name}: {error.code()} {error.details()}"
            assert "/private/details" not in (error.details() or "")


# Values for App Runner's required members, by member name: enough for each action to
# get past its own request checks to the use case.
SAMPLE_MEMBERS: dict[str, Any] = {
    "ServiceName": "hello-web",
    "ServiceArn": ARN,
    "SourceConfiguration": {
        "ImageRepository": {"ImageIdentifier": "hello-web:1.0", "ImageRepositoryType": "ECR"}
    },
    "ConnectionName": "my-github",
    "ProviderType": "GITHUB",
    "ConnectionArn": CONNECTION_ARN,
    "DomainName": "www.example.com",
    "ResourceArn": ARN,
    "Tags": [{"Key": "team", "Value": "web"}],
    "TagKeys": ["team"],
    # Auto scaling and observability configurations.
    "AutoScalingConfigurationName": "high-availability",
    "AutoScalingConfigurationArn": (
        f"arn:aws:apprunner:us-east-1:{ACCOUNT}:autoscalingconfiguration/high-availability"
    ),
    "ObservabilityConfigurationName": "tracing",
    "ObservabilityConfigurationArn": (
        f"arn:aws:apprunner:us-east-1:{ACCOUNT}:observabilityconfiguration/tracing"
    ),
    # VPC connectors and ingress connections
    "VpcConnectorName": "my-egress",
    "Subnets": ["subnet-1"],
    "VpcConnectorArn": f"arn:aws:apprunner:us-east-1:{ACCOUNT}:vpcconnector/my-egress/1/{'a' * 32}",
    "VpcIngressConnectionName": "my-ingress",
    "IngressVpcConfiguration": {"VpcId": "vpc-1", "VpcEndpointId": "vpce-1"},
    "VpcIngressConnectionArn": (
        f"arn:aws:apprunner:us-east-1:{ACCOUNT}:vpcingressconnection/my-ingress/{'b' * 32}"
    ),
}


class Authenticated:
    """Every request is the test account's: signatures are another test's subject."""

    async def authenticate(self, request: web.Request, body: bytes) -> ApiKey:
        return KEY


@functools.cache
def _app_runner_model() -> Any:
    """botocore's `apprunner` model, loaded once: a new session reads it anew each time."""
    return botocore.session.get_session().get_service_model("apprunner")


def _sample_body(action: str) -> dict[str, Any]:
    shape = _app_runner_model().operation_model(action).input_shape
    required = list(shape.required_members) if shape is not None else []
    unknown = [m for m in required if m not in SAMPLE_MEMBERS]
    assert unknown == [], f"{action}: add sample values for required members {unknown}"
    body = {m: SAMPLE_MEMBERS[m] for m in required}
    if action == "UpdateService":
        body["InstanceConfiguration"] = {"Cpu": "1 vCPU", "Memory": "2 GB"}
    return body


@pytest.mark.parametrize(
    ("make", "status", "error_type"),
    [
        (outage, 503, "ServiceUnavailableException"),
        (bug, 500, "InternalServiceErrorException"),
    ],
)
async def test_every_app_runner_action_answers_through_the_translation(
    make: Callable[[], Exception], status: int, error_type: str
) -> None:
    cases, failing = use_cases(make)
    app = create_app(cases, authenticator=Authenticated())
    async with TestClient(TestServer(app)) as client:
        for action in sorted(ACTIONS):
            before = len(failing.calls)
            answer = await client.post(
                "/",
                data=json.dumps(_sample_body(action)),
                headers={
                    "X-Amz-Target": f"AppRunner.{action}",
                    "Content-Type": "application/x-amz-json-1.0",
                },
            )
            body = await answer.json(content_type=None)
            assert len(failing.calls) == before + 1, f"{action}: {body}"
            assert (answer.status, body["__type"]) == (status, error_type), action
            assert "/private/details" not in body["Message"]
