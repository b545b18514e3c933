"""App Runner's own protocol (AWS JSON 1.0) served by ServiceControl: the real boto3
client through the lifecycle of the source document, App Runner's modeled errors, the
protocol's own refusals, and every answer the tests receive held to botocore's model."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from sqlalchemy import text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol_server.api.aws_json import config_actions, shapes
from servicecontrol_server.domain.config_resources import default_auto_scaling
from servicecontrol_server.domain.errors import BackendUnavailable
from servicecontrol_server.domain.model import Service, ServiceConfiguration, ServiceStatus
from tests.support.aws import (
    AppRunnerClient,
    Recorder,
    body_problems,
    raw_call,
    service_model,
    shape_problems,
)
from tests.support.server import ACCOUNT, Harness, harness_settings, running_harness

IMAGE_SOURCE: dict[str, Any] = {
    "ImageRepository": {"ImageIdentifier": "hello-web:1.0", "ImageRepositoryType": "ECR"}
}
DEFAULT_NETWORK = {
    "EgressConfiguration": {"EgressType": "DEFAULT"},
    "IngressConfiguration": {"IsPubliclyAccessible": True},
    "IpAddressType": "IPV4",
}


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Collects every answer of the test; the test fails if any breaks App Runner's model."""
    rec = Recorder()
    yield rec
    assert rec.answers, "the test received no App Runner answers"
    problems = rec.problems()
    assert not problems, "answers App Runner's model does not allow:\n" + "\n".join(problems)


@pytest.fixture
def aws(harness: Harness, recorder: Recorder) -> AppRunnerClient:
    return AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials())


def error_of(exc: ClientError) -> tuple[str, int, str]:
    response: Any = exc.response
    return (
        response["Error"]["Code"],
        response["ResponseMetadata"]["HTTPStatusCode"],
        response["Error"]["Message"],
    )


async def events_for(h: Harness, arn: str) -> list[str]:
    async with h.app.engine.connect() as conn:
        rows = await conn.execute(
            text("select type from outbox where resource_arn = :arn order by seq"), {"arn": arn}
        )
        return [r[0] for r in rows]


async def test_a_mutation_while_an_operation_runs_is_an_invalid_state(
    database_url: str, s3_server: object, tmp_path: Path, recorder: Recorder
) -> None:
    # No workers: the create's operation stays in progress for as long as the test needs.
    settings = harness_settings(database_url, s3_server, tmp_path)
    async with running_harness(settings, tmp_path, workers=0) as h:
        h.push_image("hello-web:1.0")
        aws = AppRunnerClient(h.aws_port, recorder, h.aws_credentials())
        created = await aws.create_service(ServiceName="busy", SourceConfiguration=IMAGE_SOURCE)
        arn = created["Service"]["ServiceArn"]
        for call in (aws.delete_service, aws.pause_service):
            with pytest.raises(aws.exceptions.InvalidStateException) as refused:
                await call(ServiceArn=arn)
            code, status, message = error_of(refused.value)
            assert (code, status) == ("InvalidStateException", 400)
            assert f"has operation {created['OperationId']} in progress" in message
        described = (await aws.describe_service(ServiceArn=arn))["Service"]
        assert described["Status"] == "OPERATION_IN_PROGRESS"


async def test_lifecycle_through_boto3(harness: Harness, aws: AppRunnerClient) -> None:
    created = await aws.create_service(
        ServiceName="web-app",
        SourceConfiguration=IMAGE_SOURCE,
        InstanceConfiguration={"Cpu": "0.25 vCPU", "Memory": "0.5 GB"},
    )
    svc = created["Service"]
    arn = svc["ServiceArn"]
    assert svc["Status"] == "OPERATION_IN_PROGRESS"
    assert arn == f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/web-app/{svc['ServiceId']}"
    assert isinstance(svc["CreatedAt"], datetime)
    assert created["ResponseMetadata"]["RequestId"]
    # The create is the operation the gRPC API knows, run by the same workers.
    op = await harness.wait(created["OperationId"])
    assert (op.type, op.status) == (pb.Operation.CREATE_SERVICE, pb.Operation.SUCCEEDED)

    running = (await aws.describe_service(ServiceArn=arn))["Service"]
    assert running["Status"] == "RUNNING"
    assert running["SourceConfiguration"]["ImageRepository"] == IMAGE_SOURCE["ImageRepository"]
    assert running["InstanceConfiguration"] == {"Cpu": "0.25 vCPU", "Memory": "0.5 GB"}
    assert running["HealthCheckConfiguration"]["Protocol"] == "TCP"
    assert running["NetworkConfiguration"] == DEFAULT_NETWORK
    summary = running["AutoScalingConfigurationSummary"]
    assert summary["IsDefault"] is True
    assert summary["AutoScalingConfigurationArn"].startswith(
        f"arn:aws:apprunner:us-east-1:{ACCOUNT}:autoscalingconfiguration/DefaultConfiguration/1/"
    )
    grpc_view = await harness.describe(arn)
    assert grpc_view.status == pb.Service.RUNNING
    assert grpc_view.service_url == running["ServiceUrl"]
    listed = (await aws.list_services())["ServiceSummaryList"]
    assert [(s["ServiceArn"], s["Status"]) for s in listed] == [(arn, "RUNNING")]

    paused = await aws.pause_service(ServiceArn=arn)
    assert paused["Service"]["Status"] == "OPERATION_IN_PROGRESS"
    await harness.wait(paused["OperationId"])
    assert (await aws.describe_service(ServiceArn=arn))["Service"]["Status"] == "PAUSED"
    with pytest.raises(aws.exceptions.InvalidStateException) as refused:
        await aws.pause_service(ServiceArn=arn)
    code, status, message = error_of(refused.value)
    assert (code, status) == ("InvalidStateException", 400) and "PAUSED" in message

    resumed = await aws.resume_service(ServiceArn=arn)
    await harness.wait(resumed["OperationId"])
    assert (await aws.describe_service(ServiceArn=arn))["Service"]["Status"] == "RUNNING"
    operations = (await aws.list_operations(ServiceArn=arn))["OperationSummaryList"]
    assert [o["Type"] for o in operations] == ["RESUME_SERVICE", "PAUSE_SERVICE", "CREATE_SERVICE"]
    assert [o["Id"] for o in operations] == [
        resumed["OperationId"],
        paused["OperationId"],
        created["OperationId"],
    ]
    assert all(o["Status"] == "SUCCEEDED" and o["TargetArn"] == arn for o in operations)
    assert all(isinstance(o["EndedAt"], datetime) for o in operations)

    deleted = await aws.delete_service(ServiceArn=arn)
    assert deleted["Service"]["Status"] == "OPERATION_IN_PROGRESS"
    gone = await aws.wait_status(arn, "DELETED")
    assert gone["SourceConfiguration"] == {}
    assert isinstance(gone["DeletedAt"], datetime)
    assert (await aws.list_services())["ServiceSummaryList"] == []
    op = await harness.wait(deleted["OperationId"])
    assert (op.type, op.status) == (pb.Operation.DELETE_SERVICE, pb.Operation.SUCCEEDED)
    assert op.HasField("deletion_report")
    events = await events_for(harness, arn)
    for kind in ("create", "pause", "resume", "delete"):
        assert f"service.{kind}_requested" in events
    assert events[-1] == "service.deleted"


async def test_configuration_round_trips_and_updates(
    harness: Harness, aws: AppRunnerClient
) -> None:
    source = {
        "ImageRepository": {
            "ImageIdentifier": "hello-web:1.0",
            "ImageRepositoryType": "ECR",
            "ImageConfiguration": {
                "RuntimeEnvironmentVariables": {"GREETING": "hello"},
                "StartCommand": "python -m web",
                "Port": "8000",
            },
        },
        "AutoDeploymentsEnabled": True,
    }
    health = {
        "Protocol": "HTTP",
        "Path": "/healthz",
        "Interval": 10,
        "Timeout": 3,
        "HealthyThreshold": 2,
        "UnhealthyThreshold": 4,
    }
    created = await aws.create_service(
        ServiceName="configured",
        SourceConfiguration=source,
        HealthCheckConfiguration=health,
        # Restating the fixed settings is accepted.
        NetworkConfiguration=DEFAULT_NETWORK,
        ObservabilityConfiguration={"ObservabilityEnabled": False},
    )
    arn = created["Service"]["ServiceArn"]
    assert created["Service"]["SourceConfiguration"] == source
    assert created["Service"]["HealthCheckConfiguration"] == health
    await harness.wait(created["OperationId"])
    # Stored once, in the domain's form: the gRPC API reads back the same configuration.
    grpc_view = await harness.describe(arn)
    image = grpc_view.source_configuration.image_repository
    assert image.image_configuration.port == "8000"
    assert dict(image.image_configuration.runtime_environment_variables) == {"GREETING": "hello"}
    assert grpc_view.health_check_configuration.protocol == pb.HealthCheckConfiguration.HTTP
    assert grpc_view.health_check_configuration.interval == 10

    updated = await aws.update_service(
        ServiceArn=arn, InstanceConfiguration={"Cpu": "2 vCPU", "Memory": "4 GB"}
    )
    assert updated["Service"]["Status"] == "OPERATION_IN_PROGRESS"
    # The answer shows the configuration being applied, not the one being replaced.
    assert updated["Service"]["InstanceConfiguration"] == {"Cpu": "2 vCPU", "Memory": "4 GB"}
    assert updated["Service"]["SourceConfiguration"] == source
    op = await harness.wait(updated["OperationId"])
    assert (op.type, op.status) == (pb.Operation.UPDATE_SERVICE, pb.Operation.SUCCEEDED)
    after = (await aws.describe_service(ServiceArn=arn))["Service"]
    assert after["InstanceConfiguration"] == {"Cpu": "2 vCPU", "Memory": "4 GB"}
    assert after["SourceConfiguration"] == source

    with pytest.raises(aws.exceptions.InvalidRequestException) as empty:
        await aws.update_service(ServiceArn=arn)
    assert "No configurations provided" in error_of(empty.value)[2]


async def test_refusals_are_app_runners_modeled_errors(
    harness: Harness, aws: AppRunnerClient
) -> None:
    missing = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/nothing/{uuid.uuid4().hex}"
    for call in (aws.describe_service, aws.delete_service, aws.pause_service, aws.list_operations):
        with pytest.raises(aws.exceptions.ResourceNotFoundException) as not_found:
            await call(ServiceArn=missing)
        assert error_of(not_found.value)[:2] == ("ResourceNotFoundException", 400)

    with pytest.raises(aws.exceptions.InvalidRequestException):
        await aws.describe_service(ServiceArn="arn:aws:apprunner:us-east-1:1:nope")
    # Long enough for the client's own checks, not a valid name for the service.
    with pytest.raises(aws.exceptions.InvalidRequestException) as bad_name:
        await aws.create_service(ServiceName="bad name!", SourceConfiguration=IMAGE_SOURCE)
    # In AWS's wording, with App Runner's member names, the constraint from the model.
    assert error_of(bad_name.value)[2] == (
        "1 validation error detected: Value 'bad name!' at 'serviceName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: [A-Za-z0-9][A-Za-z0-9-_]{3,39}"
    )

    await aws.create_service(ServiceName="taken", SourceConfiguration=IMAGE_SOURCE)
    with pytest.raises(aws.exceptions.InvalidRequestException) as taken:
        await aws.create_service(ServiceName="taken", SourceConfiguration=IMAGE_SOURCE)
    assert "already exists" in error_of(taken.value)[2]

    # What App Runner models but this server cannot do is refused, not ignored.
    refused_requests: list[dict[str, Any]] = [
        {
            "EncryptionConfiguration": {
                "KmsKey": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{uuid.uuid4()}",
            }
        },
        {
            "SourceConfiguration": {
                "ImageRepository": {
                    **IMAGE_SOURCE["ImageRepository"],
                    "ImageConfiguration": {"RuntimeEnvironmentSecrets": {"K": "arn:aws:ssm:x"}},
                }
            }
        },
    ]
    for extra in refused_requests:
        request = {"ServiceName": "unsupported", "SourceConfiguration": IMAGE_SOURCE, **extra}
        with pytest.raises(aws.exceptions.InvalidRequestException) as unsupported:
            await aws.create_service(**request)
        assert "not supported" in error_of(unsupported.value)[2]
    # None of the refused requests left a service behind.
    names = [s["ServiceName"] for s in (await aws.list_services())["ServiceSummaryList"]]
    assert names == ["taken"]


@pytest.fixture
async def small_quotas(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    settings = harness_settings(
        database_url, s3_server, tmp_path, service_quota=1, connection_quota=3
    )
    async with running_harness(settings, tmp_path) as h:
        h.push_image()
        yield h


async def test_quota_is_service_quota_exceeded_with_402(
    small_quotas: Harness, recorder: Recorder
) -> None:
    aws = AppRunnerClient(small_quotas.aws_port, recorder, small_quotas.aws_credentials())
    await aws.create_service(ServiceName="first", SourceConfiguration=IMAGE_SOURCE)
    with pytest.raises(aws.exceptions.ServiceQuotaExceededException) as refused:
        await aws.create_service(ServiceName="second", SourceConfiguration=IMAGE_SOURCE)
    code, status, message = error_of(refused.value)
    # App Runner's model gives this error HTTP 402.
    assert (code, status) == ("ServiceQuotaExceededException", 402)
    assert "1 of 1" in message


async def test_pages_with_max_results_and_next_token(
    harness: Harness, aws: AppRunnerClient
) -> None:
    arns = []
    for name in ("svc-a", "svc-b", "svc-c"):
        created = await aws.create_service(ServiceName=name, SourceConfiguration=IMAGE_SOURCE)
        arns.append(created["Service"]["ServiceArn"])
    first = await aws.list_services(MaxResults=2)
    assert len(first["ServiceSummaryList"]) == 2 and first["NextToken"]
    second = await aws.list_services(MaxResults=2, NextToken=first["NextToken"])
    assert len(second["ServiceSummaryList"]) == 1 and "NextToken" not in second
    paged = [s["ServiceArn"] for s in first["ServiceSummaryList"] + second["ServiceSummaryList"]]
    assert sorted(paged) == sorted(arns)
    # Without MaxResults, App Runner answers every result at once.
    everything = await aws.list_services()
    assert len(everything["ServiceSummaryList"]) == 3 and "NextToken" not in everything
    with pytest.raises(aws.exceptions.InvalidRequestException):
        await aws.list_services(NextToken="forged")
    with pytest.raises(aws.exceptions.InvalidRequestException):
        # A token is bound to its listing.
        await aws.list_operations(ServiceArn=arns[0], NextToken=first["NextToken"])


async def test_protocol_level_answers(harness: Harness, recorder: Recorder) -> None:
    port = harness.aws_port

    async def call(target: str | None, body: Any = None, **kw: Any) -> tuple[int, dict[str, Any]]:
        kw.setdefault("credentials", harness.aws_credentials())
        answer = await raw_call(port, target, body, recorder=recorder, **kw)
        return answer.status, answer.json()

    # Actions App Runner does not have, and non-App Runner targets (the actions of App
    # Runner's model that are not served: tests/unit/test_apprunner_coverage.py).
    for target in (
        "AppRunner.ListVpcConnector",
        "AppRunner.DescribeVpc",
        "DynamoDB_20120810.ListTables",
        "AppRunner",
        "",
    ):
        status, body = await call(target, {})
        assert (status, body["__type"]) == (400, "UnknownOperationException"), target
    status, body = await call(None, {})
    assert (status, body["__type"]) == (400, "UnknownOperationException")
    status, body = await call("AppRunner.ListServices", method="GET")
    assert (status, body["__type"]) == (400, "UnknownOperationException")

    status, body = await call("AppRunner.ListServices", b"{not json")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body = await call("AppRunner.ListServices", b"[1, 2]")
    assert (status, body["__type"]) == (400, "SerializationException")
    status, body = await call("AppRunner.DescribeService", {"ServiceArn": 7})
    assert (status, body["__type"]) == (400, "SerializationException")

    # An empty body is an empty input.
    status, body = await call("AppRunner.ListServices", b"")
    assert (status, body) == (200, {"ServiceSummaryList": []})

    # What the SDK checks on the client, the server checks too.
    status, body = await call("AppRunner.DescribeService", {})
    assert (status, body["__type"]) == (400, "InvalidRequestException")
    assert body["Message"] == (
        "1 validation error detected: Value null at 'serviceArn' failed to satisfy "
        "constraint: Member must not be null"
    )
    status, body = await call("AppRunner.ListServices", {"MaxResults": 21})
    assert (status, body["__type"]) == (400, "InvalidRequestException")
    status, body = await call(
        "AppRunner.CreateService",
        {
            "ServiceName": "raw-call",
            "SourceConfiguration": {"ImageRepository": {"ImageIdentifier": "hello-web:1.0"}},
        },
    )
    assert (status, body["__type"]) == (400, "InvalidRequestException")
    assert "'sourceConfiguration.imageRepository.imageRepositoryType'" in body["Message"]
    status, body = await call(
        "AppRunner.CreateService",
        {
            "ServiceName": "raw-call",
            "SourceConfiguration": {
                "ImageRepository": {
                    **IMAGE_SOURCE["ImageRepository"],
                    "ImageRepositoryType": "DOCKER_HUB",
                }
            },
        },
    )
    assert (status, body["__type"]) == (400, "InvalidRequestException")
    status, body = await call(
        "AppRunner.CreateService",
        {
            "ServiceName": "raw-call",
            "SourceConfiguration": {
                **IMAGE_SOURCE,
                "CodeRepository": {
                    "RepositoryUrl": "https://github.com/example/web",
                    "SourceCodeVersion": {"Type": "BRANCH", "Value": "main"},
                },
            },
        },
    )
    assert (status, body["__type"]) == (400, "InvalidRequestException")
    assert "not both" in body["Message"]
    status, body = await call("AppRunner.ListServices", b"[" * 100_000 + b"]" * 100_000)
    assert (status, body["__type"]) == (400, "SerializationException")

    # Signature Version 4 is required (its verification: tests/integration/test_sigv4.py).
    status, body = await call("AppRunner.ListServices", {}, credentials=None)
    assert (status, body["__type"]) == (403, "MissingAuthenticationTokenException")
    for garbled in (
        "Bearer abc",
        "AWS4-HMAC-SHA256 Signature=abc",
        "AWS4-HMAC-SHA256 Credential=AKID/2024/us-east-1, SignedHeaders=host, Signature=abc",
    ):
        status, body = await call("AppRunner.ListServices", {}, headers={"Authorization": garbled})
        assert (status, body["__type"]) == (403, "IncompleteSignatureException"), garbled
    wrong_region = (
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/eu-west-1/apprunner/"
        "aws4_request, SignedHeaders=host;x-amz-date, Signature=abc"
    )
    status, body = await call("AppRunner.ListServices", {}, headers={"Authorization": wrong_region})
    assert (status, body["__type"]) == (403, "InvalidSignatureException")
    any_signature = wrong_region.replace("eu-west-1", "us-east-1")
    status, body = await call(
        "AppRunner.ListServices", {}, headers={"Authorization": any_signature}
    )
    assert (status, body["__type"]) == (403, "InvalidSignatureException")


async def test_unexpected_failures_answer_internal_service_error(
    harness: Harness,
    recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def broken(*args: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(harness.app.use_cases.commands, "describe_service", broken)
    with caplog.at_level(logging.ERROR):
        answer = await raw_call(
            harness.aws_port,
            "AppRunner.DescribeService",
            {"ServiceArn": f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/x/{'0' * 32}"},
            credentials=harness.aws_credentials(),
            recorder=recorder,
        )
    body = answer.json()
    assert (answer.status, body["__type"]) == (500, "InternalServiceErrorException")
    # The caller gets a correlation id that finds the logged failure; not its details.
    correlation = body["Message"].rpartition(" ")[2].rstrip(".")
    assert "boom" not in body["Message"]
    logged = [r for r in caplog.records if getattr(r, "correlation_id", "") == correlation]
    assert logged and logged[0].exc_info is not None


async def test_an_unavailable_backend_answers_a_503_that_the_sdk_retries(
    harness: Harness, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    real = harness.app.use_cases.commands.list_services

    async def unavailable_thrice(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise BackendUnavailable("The database is unavailable; retry the call.")
        return await real(*args)

    monkeypatch.setattr(harness.app.use_cases.commands, "list_services", unavailable_thrice)
    answer = await raw_call(
        harness.aws_port,
        "AppRunner.ListServices",
        {},
        credentials=harness.aws_credentials(),
        recorder=recorder,
    )
    assert (answer.status, answer.json()["__type"]) == (503, "ServiceUnavailableException")
    assert answer.json()["Message"] == "The database is unavailable; retry the call."
    # botocore retries a 503 with backoff: its third try gets through.
    client = boto3.client(
        "apprunner",
        endpoint_url=f"http://127.0.0.1:{harness.aws_port}",
        region_name="us-east-1",
        aws_access_key_id=harness.aws_credentials()[0],
        aws_secret_access_key=harness.aws_credentials()[1],
        config=Config(retries={"mode": "standard", "max_attempts": 3}),
    )
    listed = await asyncio.to_thread(client.list_services)
    assert listed["ServiceSummaryList"] == []
    assert calls == 4


def _domain_service(status: ServiceStatus, configured: bool) -> Service:
    now = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    service_id = uuid.uuid4().hex
    return Service(
        service_id=service_id,
        account_id=ACCOUNT,
        region="us-east-1",
        service_name="model-check",
        service_arn=f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/model-check/{service_id}",
        service_url="abcdefghij.us-east-1.servicecontrol.local",
        status=status,
        version=1,
        created_at=now,
        updated_at=now,
        deleted_at=None if configured else now,
        configuration=ServiceConfiguration(
            source={"image_repository": {"image_identifier": "hello-web:1.0"}},
            instance={"cpu": "1 vCPU", "memory": "2 GB", "instance_role_arn": ""},
            health_check={
                "protocol": "TCP",
                "path": "/",
                "interval": 5,
                "timeout": 2,
                "healthy_threshold": 1,
                "unhealthy_threshold": 5,
            },
        )
        if configured
        else None,
    )


def _service_shape(svc: Service) -> dict[str, Any]:
    summary = config_actions.auto_scaling_summary(
        default_auto_scaling("us-east-1", ACCOUNT, svc.created_at)
    )
    return shapes.service(svc, summary)


def test_shape_checker_has_teeth() -> None:
    output = service_model().operation_model("DescribeService").output_shape
    assert output is not None
    for svc in (
        _domain_service(ServiceStatus.RUNNING, True),
        _domain_service(ServiceStatus.DELETED, False),
    ):
        valid = json.loads(json.dumps({"Service": _service_shape(svc)}))
        assert shape_problems(output, valid) == []

    good = json.loads(
        json.dumps({"Service": _service_shape(_domain_service(ServiceStatus.RUNNING, True))})
    )
    drifts: dict[str, tuple[Any, str]] = {
        "unknown member": (("Service", "Etag", '"abc"'), "not a member of Service"),
        "missing required": (("Service", "ServiceId", None), "ServiceId: required"),
        "enum": (("Service", "Status", "STOPPED"), "'STOPPED' is not one of"),
        "length": (("Service", "ServiceName", "ab"), "length 2 below"),
        "timestamp type": (("Service", "CreatedAt", "2024-05-01T12:00:00Z"), "expected a number"),
        "integer type": (
            (
                "Service",
                "AutoScalingConfigurationSummary",
                {
                    **good["Service"]["AutoScalingConfigurationSummary"],
                    "AutoScalingConfigurationRevision": True,
                },
            ),
            "expected an integer",
        ),
        "nested required": (
            ("Service", "SourceConfiguration", {"ImageRepository": {"ImageIdentifier": "x"}}),
            "ImageRepositoryType: required",
        ),
        "range": (
            (
                "Service",
                "HealthCheckConfiguration",
                {**good["Service"]["HealthCheckConfiguration"], "Interval": 60},
            ),
            "value 60 above",
        ),
    }
    for label, ((outer, member, value), expected) in drifts.items():
        body = copy.deepcopy(good)
        if value is None:
            del body[outer][member]
        else:
            body[outer][member] = value
        problems = shape_problems(output, body)
        assert any(expected in p for p in problems), (label, problems)

    model = service_model()
    assert body_problems(
        "DescribeService",
        402,
        json.dumps({"__type": "ServiceQuotaExceededException", "Message": "m"}).encode(),
        model,
    )
    assert body_problems(
        "DescribeService",
        400,
        json.dumps({"__type": "ResourceNotFoundException", "Message": "m", "Extra": 1}).encode(),
        model,
    )
    assert not body_problems(
        "DescribeService",
        400,
        json.dumps({"__type": "ResourceNotFoundException", "Message": "m"}).encode(),
        model,
    )


async def test_connection_is_kept_when_its_service_is_deleted(
    harness: Harness, aws: AppRunnerClient
) -> None:
    created = await aws.create_connection(ConnectionName="my-github", ProviderType="GITHUB")
    conn = created["Connection"]
    arn = conn["ConnectionArn"]
    assert conn["Status"] == "PENDING_HANDSHAKE"
    assert arn.startswith(f"arn:aws:apprunner:us-east-1:{ACCOUNT}:connection/my-github/")
    with pytest.raises(aws.exceptions.InvalidRequestException):
        await aws.create_connection(ConnectionName="my-github", ProviderType="BITBUCKET")
    code_source = {
        "CodeRepository": {
            "RepositoryUrl": "https://github.com/example/web",
            "SourceCodeVersion": {"Type": "BRANCH", "Value": "main"},
        },
        "AuthenticationConfiguration": {"ConnectionArn": arn},
    }
    # A connection is usable once its handshake is done; until then the source is refused.
    with pytest.raises(aws.exceptions.InvalidRequestException) as pending:
        await aws.create_service(ServiceName="from-code", SourceConfiguration=code_source)
    assert "PENDING_HANDSHAKE" in error_of(pending.value)[2]
    await harness.app.use_cases.connections.complete_handshake(ACCOUNT, arn, "AVAILABLE")

    service = await aws.create_service(ServiceName="from-code", SourceConfiguration=code_source)
    service_arn = service["Service"]["ServiceArn"]
    assert service["Service"]["SourceConfiguration"] == code_source
    await harness.wait(service["OperationId"])  # no builder: the create fails
    assert (await aws.describe_service(ServiceArn=service_arn))["Service"][
        "Status"
    ] == "CREATE_FAILED"
    with pytest.raises(aws.exceptions.InvalidRequestException) as in_use:
        await aws.delete_connection(ConnectionArn=arn)
    assert service_arn in error_of(in_use.value)[2]

    deleted = await aws.delete_service(ServiceArn=service_arn)
    assert deleted["Service"]["Status"] == "OPERATION_IN_PROGRESS"
    await aws.wait_status(service_arn, "DELETED")
    kept = (await aws.list_connections(ConnectionName="my-github"))["ConnectionSummaryList"]
    assert [(c["ConnectionArn"], c["Status"]) for c in kept] == [(arn, "AVAILABLE")]

    gone = await aws.delete_connection(ConnectionArn=arn)
    assert gone["Connection"]["Status"] == "DELETED"
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        await aws.delete_connection(ConnectionArn=arn)


async def test_connection_pages_and_quota(small_quotas: Harness, recorder: Recorder) -> None:
    aws = AppRunnerClient(small_quotas.aws_port, recorder, small_quotas.aws_credentials())
    for name in ("conn-one", "conn-two", "conn-three"):
        await aws.create_connection(ConnectionName=name, ProviderType="GITHUB")
    first = await aws.list_connections(MaxResults=2)
    second = await aws.list_connections(MaxResults=2, NextToken=first["NextToken"])
    assert "NextToken" not in second
    names = [
        c["ConnectionName"]
        for c in first["ConnectionSummaryList"] + second["ConnectionSummaryList"]
    ]
    assert sorted(names) == ["conn-one", "conn-three", "conn-two"]
    assert len((await aws.list_connections())["ConnectionSummaryList"]) == 3
    with pytest.raises(aws.exceptions.ServiceQuotaExceededException) as refused:
        await aws.create_connection(ConnectionName="conn-four", ProviderType="GITHUB")
    assert error_of(refused.value)[:2] == ("ServiceQuotaExceededException", 402)


async def test_custom_domains(harness: Harness, aws: AppRunnerClient) -> None:
    created = await aws.create_service(ServiceName="shop", SourceConfiguration=IMAGE_SOURCE)
    arn = created["Service"]["ServiceArn"]
    await harness.wait(created["OperationId"])

    linked = await aws.associate_custom_domain(ServiceArn=arn, DomainName="shop.example.com")
    assert linked["DNSTarget"] == created["Service"]["ServiceUrl"]
    assert (linked["ServiceArn"], linked["VpcDNSTargets"]) == (arn, [])
    domain = linked["CustomDomain"]
    # Where App Runner starts, and Terraform waits for it to leave.
    assert (domain["DomainName"], domain["EnableWWWSubdomain"], domain["Status"]) == (
        "shop.example.com",
        True,
        "creating",
    )
    records = domain["CertificateValidationRecords"]
    assert len(records) == 2  # the domain and its www subdomain
    assert {(r["Type"], r["Status"]) for r in records} == {("CNAME", "PENDING_VALIDATION")}
    # Record names as App Runner prints them: no final dot.
    assert all(r["Name"].endswith(".shop.example.com") for r in records), records
    described = await aws.describe_custom_domains(ServiceArn=arn)
    assert described["CustomDomains"][0]["Status"] == "pending_certificate_dns_validation"
    await aws.associate_custom_domain(
        ServiceArn=arn, DomainName="api.example.com", EnableWWWSubdomain=False
    )
    with pytest.raises(aws.exceptions.InvalidRequestException):
        await aws.associate_custom_domain(ServiceArn=arn, DomainName="shop.example.com")
    with pytest.raises(aws.exceptions.InvalidRequestException):
        await aws.associate_custom_domain(
            ServiceArn=arn, DomainName="*.example.org", EnableWWWSubdomain=True
        )

    first = await aws.describe_custom_domains(ServiceArn=arn, MaxResults=1)
    assert first["DNSTarget"] == linked["DNSTarget"] and first["NextToken"]
    second = await aws.describe_custom_domains(
        ServiceArn=arn, MaxResults=1, NextToken=first["NextToken"]
    )
    assert "NextToken" not in second
    everything = await aws.describe_custom_domains(ServiceArn=arn)
    assert sorted(d["DomainName"] for d in everything["CustomDomains"]) == [
        "api.example.com",
        "shop.example.com",
    ]

    unlinked = await aws.disassociate_custom_domain(ServiceArn=arn, DomainName="api.example.com")
    assert unlinked["CustomDomain"]["Status"] == "deleting"
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        await aws.disassociate_custom_domain(ServiceArn=arn, DomainName="api.example.com")

    paused = await aws.pause_service(ServiceArn=arn)
    await harness.wait(paused["OperationId"])
    with pytest.raises(aws.exceptions.InvalidStateException):
        await aws.associate_custom_domain(ServiceArn=arn, DomainName="new.example.com")
    missing = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/nothing/{uuid.uuid4().hex}"
    with pytest.raises(aws.exceptions.ResourceNotFoundException):
        await aws.describe_custom_domains(ServiceArn=missing)
    # AssociateCustomDomain's model declares no ResourceNotFoundException.
    with pytest.raises(aws.exceptions.InvalidRequestException):
        await aws.associate_custom_domain(ServiceArn=missing, DomainName="x.example.com")
