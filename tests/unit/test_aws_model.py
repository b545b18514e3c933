"""App Runner's model (botocore's `apprunner` service) drives the wire: requests are held
to their action's input shape in AWS's wording, answers to their output shape, and an
answer the model refuses never leaves the server. Every action is walked on the
in-memory fakes, through the endpoint, with the real use cases."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from servicecontrol_server.api.aws_json import actions, model
from servicecontrol_server.api.aws_json.errors import AwsError
from servicecontrol_server.api.aws_json.http import create_app
from servicecontrol_server.api.use_cases import UseCases
from servicecontrol_server.application.rate_limit import MutationRateLimiter
from servicecontrol_server.application.tag_commands import TagCommands
from servicecontrol_server.application.vpc_commands import VpcCommands
from servicecontrol_server.domain.identity import ApiKey

from .harness import Unit, unit_settings
from .test_error_translation import KEY, Admitting

IMAGE = {"ImageIdentifier": "shop/web:v1", "ImageRepositoryType": "ECR"}


def refusal(action: str, body: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(AwsError) as refused:
        model.validate_request(action, body)
    return refused.value.error_type, refused.value.message


def test_a_missing_required_member_in_aws_wording() -> None:
    assert refusal("DescribeService", {}) == (
        "InvalidRequestException",
        "1 validation error detected: Value null at 'serviceArn' failed to satisfy "
        "constraint: Member must not be null",
    )


def test_every_violation_is_counted_and_named_by_its_member_path() -> None:
    error_type, message = refusal(
        "CreateService",
        {
            "ServiceName": "ab",
            "SourceConfiguration": {"ImageRepository": {"ImageIdentifier": "shop/web:v1"}},
            "InstanceConfiguration": {"Cpu": "3 vCPU"},
            "HealthCheckConfiguration": {"Protocol": "UDP", "Interval": 21},
            "Tags": [{"Key": "team", "Value": "web"}, {"Key": "aws:owner", "Value": "x"}],
        },
    )
    assert error_type == "InvalidRequestException"
    assert (
        message
        == (
            "7 validation errors detected: "
            "Value 'ab' at 'serviceName' failed to satisfy constraint: Member must have length "
            "greater than or equal to 4; "
            "Value 'ab' at 'serviceName' failed to satisfy constraint: Member must satisfy regular "
            "expression pattern: [A-Za-z0-9][A-Za-z0-9-_]{3,39}; "
            "Value null at 'sourceConfiguration.imageRepository.imageRepositoryType' failed to "
            "satisfy constraint: Member must not be null; "
            "Value '3 vCPU' at 'instanceConfiguration.cpu' failed to satisfy constraint: "
            "Member must satisfy regular expression pattern: "
            "256|512|1024|2048|4096|(0.25|0.5|1|2|4) vCPU; "
            "Value 'aws:owner' at 'tags.2.member.key' failed to satisfy constraint: Member must "
            "satisfy regular expression pattern: ^(?!aws:).+; "
            "Value 'UDP' at 'healthCheckConfiguration.protocol' failed to satisfy constraint: "
            "Member must satisfy enum value set: [TCP, HTTP]; "
            "Value '21' at 'healthCheckConfiguration.interval' failed to satisfy constraint: "
            "Member must have value less than or equal to 20"
        )[:600]
    )


@pytest.mark.parametrize(
    ("action", "body", "expected"),
    [
        (
            "ListServices",
            {"MaxResults": 0},
            "Value '0' at 'maxResults' failed to satisfy constraint: Member must have value "
            "greater than or equal to 1",
        ),
        (
            "ListConnections",
            {"NextToken": ""},
            "Value '' at 'nextToken' failed to satisfy constraint: Member must have length "
            "greater than or equal to 1",
        ),
        (
            "CreateConnection",
            {"ConnectionName": "my-gitlab", "ProviderType": "GITLAB"},
            "Value 'GITLAB' at 'providerType' failed to satisfy constraint: Member must "
            "satisfy enum value set: [GITHUB, BITBUCKET]",
        ),
        (
            "UntagResource",
            {
                "ResourceArn": "arn:aws:apprunner:us-east-1:111122223333:service/a/b",
                "TagKeys": ["a", "aws:x"],
            },
            "Value 'aws:x' at 'tagKeys.2.member' failed to satisfy constraint: Member must "
            "satisfy regular expression pattern: ^(?!aws:).+",
        ),
        (
            # A sensitive member's value is not repeated back.
            "UpdateService",
            {
                "ServiceArn": "arn:aws:apprunner:us-east-1:111122223333:service/a/b",
                "SourceConfiguration": {
                    "ImageRepository": {
                        **IMAGE,
                        "ImageConfiguration": {"StartCommand": "serve\nsecret"},
                    }
                },
            },
            "Value at 'sourceConfiguration.imageRepository.imageConfiguration.startCommand' "
            "failed to satisfy constraint: Member must satisfy regular expression pattern: "
            "[^\\x0a\\x0d]+",
        ),
        (
            # A map's keys are reported once, as AWS words it.
            "UpdateService",
            {
                "ServiceArn": "arn:aws:apprunner:us-east-1:111122223333:service/a/b",
                "SourceConfiguration": {
                    "ImageRepository": {
                        **IMAGE,
                        "ImageConfiguration": {"RuntimeEnvironmentVariables": {"": "x"}},
                    }
                },
            },
            "Value at 'sourceConfiguration.imageRepository.imageConfiguration."
            "runtimeEnvironmentVariables' failed to satisfy constraint: Map keys must satisfy "
            "constraint: [Member must have length greater than or equal to 1]",
        ),
    ],
)
def test_lengths_ranges_enums_and_patterns(
    action: str, body: dict[str, Any], expected: str
) -> None:
    assert refusal(action, body) == (
        "InvalidRequestException",
        f"1 validation error detected: {expected}",
    )


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"ServiceArn": 7}, "'serviceArn'"),
        ({"ServiceArn": ["a"]}, "'serviceArn'"),
    ],
)
def test_a_value_of_the_wrong_json_type_is_a_serialization_error(
    body: dict[str, Any], where: str
) -> None:
    error_type, message = refusal("DescribeService", body)
    assert error_type == "SerializationException" and where in message


def test_a_valid_request_passes_and_unknown_members_are_ignored() -> None:
    model.validate_request(
        "CreateService",
        {
            "ServiceName": "web-app",
            "SourceConfiguration": {
                "ImageRepository": {
                    "ImageIdentifier": "111122223333.dkr.ecr.us-east-1.amazonaws.com/shop/web:v1",
                    "ImageRepositoryType": "ECR",
                    "ImageConfiguration": {"RuntimeEnvironmentVariables": {"PEM": "a\nb"}},
                }
            },
            "InstanceConfiguration": {"Cpu": "1024", "Memory": "2 GB"},
            "SomethingNewer": {"x": 1},
        },
    )


def test_every_pattern_of_the_model_compiles() -> None:
    service = model.service_model()
    patterns = {
        name: service.shape_for(name).metadata["pattern"]
        for name in service.shape_names
        if "pattern" in service.shape_for(name).metadata
    }
    assert len(patterns) > 10
    for name, pattern in patterns.items():
        assert model._patterns(name, pattern)


def test_answers_are_serialized_by_the_output_shape() -> None:
    from datetime import UTC, datetime

    created = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    body = model.serialize_response(
        "ListConnections",
        {
            "ConnectionSummaryList": [
                {
                    "ConnectionName": "my-github",
                    "ConnectionArn": "arn:aws:apprunner:us-east-1:111122223333:connection/"
                    "my-github/0123456789abcdef0123456789abcdef",
                    "ProviderType": "GITHUB",
                    "Status": "AVAILABLE",
                    "CreatedAt": created,
                }
            ],
            "NextToken": None,
        },
    )
    assert body == {
        "ConnectionSummaryList": [
            {
                "ConnectionName": "my-github",
                "ConnectionArn": "arn:aws:apprunner:us-east-1:111122223333:connection/"
                "my-github/0123456789abcdef0123456789abcdef",
                "ProviderType": "GITHUB",
                "Status": "AVAILABLE",
                "CreatedAt": created.timestamp(),
            }
        ]
    }


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({"Service": {"ServiceName": "x"}}, "Service requires ServiceId"),
        ({"Extra": 1}, "'Extra' is not a member"),
        ({"OperationId": 7}, "expected a string"),
    ],
)
def test_response_problems_name_what_breaks_the_model(answer: dict[str, Any], problem: str) -> None:
    found = model.response_problems(
        "DescribeService" if "Service" in answer else "StartDeployment", answer
    )
    assert any(problem in p for p in found), found


class Authenticated:
    async def authenticate(self, request: web.Request, body: bytes) -> ApiKey:
        return KEY


def unit_use_cases(unit: Unit) -> UseCases:
    return UseCases(
        commands=unit.services,
        connections=unit.connections,
        domains=unit.domains,
        tags=TagCommands(unit.uow, unit.settings),
        events=None,  # type: ignore[arg-type]
        identity=Admitting(),  # type: ignore[arg-type]
        settings=unit.settings,
        rate_limiter=MutationRateLimiter(0, 1),
        configs=unit.configs,
        vpc=VpcCommands(unit.uow, unit.settings),
    )


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[Unit, TestClient[web.Request, web.Application]]]:
    # Room for the walk's services (a public one, two private ones, CreateService's own).
    unit = Unit(settings=unit_settings(service_quota=10))
    app = create_app(unit_use_cases(unit), authenticator=Authenticated())
    async with TestClient(TestServer(app)) as client:
        yield unit, client


async def call(
    client: TestClient[web.Request, web.Application], action: str, body: dict[str, Any]
) -> tuple[int, dict[str, Any]]:
    answer = await client.post(
        "/",
        data=json.dumps(body),
        headers={
            "X-Amz-Target": f"AppRunner.{action}",
            "Content-Type": "application/x-amz-json-1.0",
        },
    )
    return answer.status, await answer.json(content_type=None)


async def test_an_answer_the_model_refuses_is_an_internal_error_logged_once(
    endpoint: tuple[Unit, TestClient[web.Request, web.Application]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, client = endpoint

    async def malformed(ctx: actions.Context, body: dict[str, Any]) -> dict[str, Any]:
        return {"ServiceSummaryList": [{"ServiceName": "x", "Status": "STOPPED"}]}

    broken = actions.ACTIONS["ListServices"]
    monkeypatch.setitem(
        actions.ACTIONS, "ListServices", actions.Action(broken.name, malformed, broken.errors)
    )
    with caplog.at_level(logging.ERROR):
        status, body = await call(client, "ListServices", {})
    assert (status, body["__type"]) == (500, "InternalServiceErrorException")
    assert "STOPPED" not in body["Message"]
    correlation = body["Message"].rpartition(" ")[2].rstrip(".")
    logged = [r for r in caplog.records if r.name == model.__name__]
    assert len(logged) == 1 and logged[0].exc_info is None
    assert correlation in logged[0].getMessage() and "STOPPED" in logged[0].getMessage()


# Values for each member an action requires, once the resources below exist.
def _members(arns: dict[str, str]) -> dict[str, Any]:
    return {
        "ServiceName": "second-app",
        "ServiceArn": arns["service"],
        "SourceConfiguration": {"ImageRepository": IMAGE},
        "ConnectionName": "other-github",
        "ProviderType": "GITHUB",
        "ConnectionArn": arns["connection"],
        "DomainName": "shop.example.com",
        "ResourceArn": arns["service"],
        "Tags": [{"Key": "team", "Value": "web"}],
        "TagKeys": ["team"],
        "AutoScalingConfigurationName": "scaling",
        "AutoScalingConfigurationArn": arns["scaling"],
        "ObservabilityConfigurationName": "tracing",
        "ObservabilityConfigurationArn": arns["tracing"],
        "VpcConnectorName": "egress",
        "Subnets": ["subnet-1"],
        "VpcConnectorArn": arns["connector"],
        "VpcIngressConnectionName": "ingress",
        "IngressVpcConfiguration": {"VpcId": "vpc-1", "VpcEndpointId": "vpce-1"},
        "VpcIngressConnectionArn": arns["ingress"],
    }


# Members an action needs of its own: another resource than the walk's shared one.
def _overrides(arns: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {
        "UpdateService": {"InstanceConfiguration": {"Cpu": "2 vCPU", "Memory": "4 GB"}},
        # The walk's revision is deleted later; a default cannot be.
        "UpdateDefaultAutoScalingConfiguration": {"AutoScalingConfigurationArn": arns["default"]},
        # One ingress connection per service, to a service that is not public.
        "CreateVpcIngressConnection": {"ServiceArn": arns["private"]},
    }


# The order the actions are walked in: alphabetical (AssociateCustomDomain links the
# domain the others find), deletions last, so every other action still has its resource.
LAST = (
    "DisassociateCustomDomain",
    "DeleteVpcIngressConnection",
    "DeleteVpcConnector",
    "DeleteObservabilityConfiguration",
    "DeleteAutoScalingConfiguration",
    "DeleteConnection",
    "DeleteService",
)


async def _created(
    client: TestClient[web.Request, web.Application], action: str, body: dict[str, Any]
) -> dict[str, Any]:
    status, answer = await call(client, action, body)
    assert status == 200, (action, answer)
    return answer


async def test_every_served_action_answers_within_the_model(
    endpoint: tuple[Unit, TestClient[web.Request, web.Application]],
) -> None:
    unit, client = endpoint
    unit.push_image()
    status, created = await call(
        client,
        "CreateService",
        {"ServiceName": "web-app", "SourceConfiguration": {"ImageRepository": IMAGE}},
    )
    assert status == 200, created
    await unit.run_jobs()
    status, connection = await call(
        client, "CreateConnection", {"ConnectionName": "my-github", "ProviderType": "GITHUB"}
    )
    assert status == 200, connection
    private = await _created(
        client,
        "CreateService",
        {
            "ServiceName": "private-app",
            "SourceConfiguration": {"ImageRepository": IMAGE},
            "NetworkConfiguration": {"IngressConfiguration": {"IsPubliclyAccessible": False}},
        },
    )
    other_private = await _created(
        client,
        "CreateService",
        {
            "ServiceName": "private-two",
            "SourceConfiguration": {"ImageRepository": IMAGE},
            "NetworkConfiguration": {"IngressConfiguration": {"IsPubliclyAccessible": False}},
        },
    )
    await unit.run_jobs()
    scaling = await _created(
        client, "CreateAutoScalingConfiguration", {"AutoScalingConfigurationName": "walked"}
    )
    default = await _created(
        client, "CreateAutoScalingConfiguration", {"AutoScalingConfigurationName": "default"}
    )
    tracing = await _created(
        client, "CreateObservabilityConfiguration", {"ObservabilityConfigurationName": "walked"}
    )
    connector = await _created(
        client, "CreateVpcConnector", {"VpcConnectorName": "walked", "Subnets": ["subnet-1"]}
    )
    ingress = await _created(
        client,
        "CreateVpcIngressConnection",
        {
            "ServiceArn": private["Service"]["ServiceArn"],
            "VpcIngressConnectionName": "walked",
            "IngressVpcConfiguration": {"VpcId": "vpc-1", "VpcEndpointId": "vpce-1"},
        },
    )
    arns = {
        "service": created["Service"]["ServiceArn"],
        "connection": connection["Connection"]["ConnectionArn"],
        "scaling": scaling["AutoScalingConfiguration"]["AutoScalingConfigurationArn"],
        "default": default["AutoScalingConfiguration"]["AutoScalingConfigurationArn"],
        "tracing": tracing["ObservabilityConfiguration"]["ObservabilityConfigurationArn"],
        "connector": connector["VpcConnector"]["VpcConnectorArn"],
        "ingress": ingress["VpcIngressConnection"]["VpcIngressConnectionArn"],
        "private": other_private["Service"]["ServiceArn"],
    }
    members = _members(arns)
    overrides = _overrides(arns)
    service = model.service_model()
    ordered = sorted(
        actions.ACTIONS,
        key=lambda name: (name in LAST, LAST.index(name) if name in LAST else 0, name),
    )
    answered = []
    for action in ordered:
        shape = service.operation_model(action).input_shape
        required = list(shape.required_members) if shape is not None else []
        missing = [m for m in required if m not in members]
        assert missing == [], f"{action}: add sample values for required members {missing}"
        body = {m: members[m] for m in required} | overrides.get(action, {})
        await unit.run_jobs()
        if action == "ResumeService":
            await call(client, "PauseService", {"ServiceArn": members["ServiceArn"]})
            await unit.run_jobs()
        status, answer = await call(client, action, body)
        assert status == 200, (action, answer)
        assert model.response_problems(action, answer) == [], action
        answered.append(action)
    assert sorted(answered) == sorted(actions.ACTIONS)
