"""Isolation between accounts: with a second account's key, the first account's
resources behave exactly as missing ones, in every RPC and every App Runner action. The
walk is generated from the contract and the action table: an RPC or action without a
case here fails the test."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from botocore.exceptions import ClientError

from servicecontrol.v1 import config_resources_pb2 as cpb
from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import vpc_pb2
from servicecontrol_server.api.aws_json.actions import ACTIONS
from tests.support import identity
from tests.support.aws import AppRunnerClient, Recorder
from tests.support.rpc import RichError, parse
from tests.support.server import ACCOUNT, OTHER_ACCOUNT, Harness

IMAGE = pb.SourceConfiguration(
    image_repository=pb.ImageRepository(image_identifier="hello-web:1.0")
)
DOMAIN = "shop.example.com"
CONNECTION = "first-conn"
SCALING = "first-scaling"
VPC_CONNECTOR = "first-vpc"
VPC_INGRESS = "first-ingress"


@dataclass
class Resources:
    """The first account's resources, and look-alikes that do not exist in the second."""

    service_arn: str
    service_name: str
    operation_id: str
    connection_arn: str
    missing_service_arn: str
    missing_operation_id: str
    missing_connection_arn: str
    # Auto scaling and observability configuration revisions.
    scaling_arn: str = ""
    missing_scaling_arn: str = ""
    observability_arn: str = ""
    missing_observability_arn: str = ""
    vpc_connector_arn: str = ""
    missing_vpc_connector_arn: str = ""
    vpc_ingress_arn: str = ""
    missing_vpc_ingress_arn: str = ""

    @property
    def ids(self) -> tuple[str, ...]:
        return (
            self.vpc_connector_arn,
            self.missing_vpc_connector_arn,
            self.vpc_ingress_arn,
            self.missing_vpc_ingress_arn,
        )


def _missing(arn: str) -> str:
    """An ARN of the same shape and the same (first) account that names nothing: the
    second account must not be able to tell it from one that exists. (The NOT_FOUND
    message may say that the ARN names another account than the caller's: the ARN says
    so itself, whether or not its resource exists.)"""
    return re.sub(r"[0-9a-f]{32}$", uuid.uuid4().hex, arn)


@pytest.fixture
async def first(harness: Harness) -> Resources:
    svc = await harness.running_service("first-web")
    await harness.stub.AssociateCustomDomain(
        api.AssociateCustomDomainRequest(service_arn=svc.service_arn, domain_name=DOMAIN),
        metadata=harness.meta(),
    )
    paused = await harness.stub.PauseService(
        api.PauseServiceRequest(service_arn=svc.service_arn), metadata=harness.meta()
    )
    await harness.wait(paused.operation_id)
    conn = await harness.stub.CreateConnection(
        api.CreateConnectionRequest(connection_name=CONNECTION, provider_type=pb.Connection.GITHUB),
        metadata=harness.meta(),
    )
    scaling = await harness.stub.CreateAutoScalingConfiguration(
        cpb.CreateAutoScalingConfigurationRequest(auto_scaling_configuration_name=SCALING),
        metadata=harness.meta(),
    )
    tracing = await harness.stub.CreateObservabilityConfiguration(
        cpb.CreateObservabilityConfigurationRequest(observability_configuration_name=SCALING),
        metadata=harness.meta(),
    )
    scaling_arn = scaling.auto_scaling_configuration.auto_scaling_configuration_arn
    tracing_arn = tracing.observability_configuration.observability_configuration_arn
    # VPC connectors and ingress connections (an ingress connection needs a private
    # service).
    connector = await harness.stub.CreateVpcConnector(
        vpc_pb2.CreateVpcConnectorRequest(vpc_connector_name=VPC_CONNECTOR, subnets=["s-1"]),
        metadata=harness.meta(),
    )
    private = await harness.running_service(
        "first-private",
        network_configuration=vpc_pb2.NetworkConfiguration(
            ingress_configuration={"is_publicly_accessible": False}
        ),
    )
    ingress = await harness.stub.CreateVpcIngressConnection(
        vpc_pb2.CreateVpcIngressConnectionRequest(
            service_arn=private.service_arn,
            vpc_ingress_connection_name=VPC_INGRESS,
            ingress_vpc_configuration={"vpc_id": "vpc-1", "vpc_endpoint_id": "vpce-1"},
        ),
        metadata=harness.meta(),
    )
    connector_arn = connector.vpc_connector.vpc_connector_arn
    ingress_arn = ingress.vpc_ingress_connection.vpc_ingress_connection_arn
    return Resources(
        scaling_arn=scaling_arn,
        missing_scaling_arn=_missing(scaling_arn),
        observability_arn=tracing_arn,
        missing_observability_arn=_missing(tracing_arn),
        service_arn=svc.service_arn,
        service_name=svc.service_name,
        operation_id=paused.operation_id,
        connection_arn=conn.connection.connection_arn,
        missing_service_arn=_missing(svc.service_arn),
        missing_operation_id=str(uuid.uuid4()),
        missing_connection_arn=_missing(conn.connection.connection_arn),
        vpc_connector_arn=connector_arn,
        missing_vpc_connector_arn=_missing(connector_arn),
        vpc_ingress_arn=ingress_arn,
        missing_vpc_ingress_arn=_missing(ingress_arn),
    )


def _normalised(err: RichError, ids: tuple[str, ...]) -> tuple[Any, ...]:
    def scrub(text: str) -> str:
        for value in ids:
            text = text.replace(value, "<id>")
        return text

    return (
        err.code,
        err.reason,
        scrub(err.message),
        {k: scrub(v) for k, v in err.metadata.items()},
    )


# A case calls an RPC as the second account with the first account's identifiers
# (`foreign`) and with identifiers that exist nowhere (`missing`).
Request = Callable[[Resources, bool], Any]
GRPC_NOT_FOUND: dict[str, Request] = {
    "DescribeService": lambda r, f: api.DescribeServiceRequest(service_arn=_svc(r, f)),
    "UpdateService": lambda r, f: api.UpdateServiceRequest(
        service_arn=_svc(r, f), source_configuration=IMAGE
    ),
    "DeleteService": lambda r, f: api.DeleteServiceRequest(service_arn=_svc(r, f)),
    "PauseService": lambda r, f: api.PauseServiceRequest(service_arn=_svc(r, f)),
    "ResumeService": lambda r, f: api.ResumeServiceRequest(service_arn=_svc(r, f)),
    "ListOperations": lambda r, f: api.ListOperationsRequest(service_arn=_svc(r, f)),
    "DescribeOperation": lambda r, f: api.DescribeOperationRequest(operation_id=_op(r, f)),
    "WaitOperation": lambda r, f: api.WaitOperationRequest(operation_id=_op(r, f)),
    "DeleteConnection": lambda r, f: api.DeleteConnectionRequest(
        connection_arn=r.connection_arn if f else r.missing_connection_arn
    ),
    "AssociateCustomDomain": lambda r, f: api.AssociateCustomDomainRequest(
        service_arn=_svc(r, f), domain_name=DOMAIN
    ),
    "DisassociateCustomDomain": lambda r, f: api.DisassociateCustomDomainRequest(
        service_arn=_svc(r, f), domain_name=DOMAIN
    ),
    "DescribeCustomDomains": lambda r, f: api.DescribeCustomDomainsRequest(service_arn=_svc(r, f)),
    "StartDeployment": lambda r, f: api.StartDeploymentRequest(service_arn=_svc(r, f)),
    "TagResource": lambda r, f: api.TagResourceRequest(
        resource_arn=_svc(r, f), tags={"team": "other"}
    ),
    "UntagResource": lambda r, f: api.UntagResourceRequest(
        resource_arn=_svc(r, f), tag_keys=["team"]
    ),
    "ListTagsForResource": lambda r, f: api.ListTagsForResourceRequest(resource_arn=_svc(r, f)),
    # Auto scaling and observability configurations.
    "DescribeAutoScalingConfiguration": lambda r, f: cpb.DescribeAutoScalingConfigurationRequest(
        auto_scaling_configuration_arn=_scaling(r, f)
    ),
    "DeleteAutoScalingConfiguration": lambda r, f: cpb.DeleteAutoScalingConfigurationRequest(
        auto_scaling_configuration_arn=_scaling(r, f)
    ),
    "UpdateDefaultAutoScalingConfiguration": lambda r, f: (
        cpb.UpdateDefaultAutoScalingConfigurationRequest(
            auto_scaling_configuration_arn=_scaling(r, f)
        )
    ),
    "ListServicesForAutoScalingConfiguration": lambda r, f: (
        cpb.ListServicesForAutoScalingConfigurationRequest(
            auto_scaling_configuration_arn=_scaling(r, f)
        )
    ),
    "DescribeObservabilityConfiguration": lambda r, f: (
        cpb.DescribeObservabilityConfigurationRequest(
            observability_configuration_arn=_tracing(r, f)
        )
    ),
    "DeleteObservabilityConfiguration": lambda r, f: cpb.DeleteObservabilityConfigurationRequest(
        observability_configuration_arn=_tracing(r, f)
    ),
    # VPC connectors and ingress connections
    "DescribeVpcConnector": lambda r, f: vpc_pb2.DescribeVpcConnectorRequest(
        vpc_connector_arn=_connector(r, f)
    ),
    "DeleteVpcConnector": lambda r, f: vpc_pb2.DeleteVpcConnectorRequest(
        vpc_connector_arn=_connector(r, f)
    ),
    "CreateVpcIngressConnection": lambda r, f: vpc_pb2.CreateVpcIngressConnectionRequest(
        service_arn=_svc(r, f),
        vpc_ingress_connection_name="other-ingress",
        ingress_vpc_configuration={"vpc_id": "vpc-2", "vpc_endpoint_id": "vpce-2"},
    ),
    "DescribeVpcIngressConnection": lambda r, f: vpc_pb2.DescribeVpcIngressConnectionRequest(
        vpc_ingress_connection_arn=_ingress(r, f)
    ),
    "UpdateVpcIngressConnection": lambda r, f: vpc_pb2.UpdateVpcIngressConnectionRequest(
        vpc_ingress_connection_arn=_ingress(r, f),
        ingress_vpc_configuration={"vpc_id": "vpc-2", "vpc_endpoint_id": "vpce-2"},
    ),
    "DeleteVpcIngressConnection": lambda r, f: vpc_pb2.DeleteVpcIngressConnectionRequest(
        vpc_ingress_connection_arn=_ingress(r, f)
    ),
}
# Listings and creations: nothing of the first account shows, and its names are free.
GRPC_EMPTY_LISTS: dict[str, Callable[[Resources], Any]] = {
    "ListServices": lambda r: api.ListServicesRequest(),
    "ListConnections": lambda r: api.ListConnectionsRequest(connection_name=CONNECTION),
    "ListCertificates": lambda r: api.ListCertificatesRequest(domain_name=DOMAIN),
    "WatchEvents": lambda r: api.WatchEventsRequest(cursor="0"),
    "ListAutoScalingConfigurations": lambda r: cpb.ListAutoScalingConfigurationsRequest(
        latest_only=False
    ),
    "ListObservabilityConfigurations": lambda r: cpb.ListObservabilityConfigurationsRequest(
        latest_only=False
    ),
    "ListVpcConnectors": lambda r: vpc_pb2.ListVpcConnectorsRequest(),
    "ListVpcIngressConnections": lambda r: vpc_pb2.ListVpcIngressConnectionsRequest(),
}
GRPC_CREATES: dict[str, Callable[[Resources], Any]] = {
    "CreateService": lambda r: api.CreateServiceRequest(
        service_name=r.service_name, source_configuration=IMAGE, validate_only=True
    ),
    "CreateConnection": lambda r: api.CreateConnectionRequest(
        connection_name=CONNECTION, provider_type=pb.Connection.GITHUB, validate_only=True
    ),
    # A revision of the same name in the second account is its own revision 1.
    "CreateAutoScalingConfiguration": lambda r: cpb.CreateAutoScalingConfigurationRequest(
        auto_scaling_configuration_name=SCALING
    ),
    "CreateObservabilityConfiguration": lambda r: cpb.CreateObservabilityConfigurationRequest(
        observability_configuration_name=SCALING
    ),
    "CreateVpcConnector": lambda r: vpc_pb2.CreateVpcConnectorRequest(
        vpc_connector_name=VPC_CONNECTOR, subnets=["s-1"], validate_only=True
    ),
}


# The source registry's images are not resources of an account: every account of the
# server pulls from one registry, as one organisation's private registry is shared by its
# teams (docs/security.md, "Isolation"). Pushing and asking what a push has sent are
# authenticated and writer-only, but name no account's resource.
GRPC_SHARED_REGISTRY = frozenset({"PushImage", "GetImageUploadStatus"})


def _svc(r: Resources, foreign: bool) -> str:
    return r.service_arn if foreign else r.missing_service_arn


def _op(r: Resources, foreign: bool) -> str:
    return r.operation_id if foreign else r.missing_operation_id


def _scaling(r: Resources, foreign: bool) -> str:
    return r.scaling_arn if foreign else r.missing_scaling_arn


def _tracing(r: Resources, foreign: bool) -> str:
    return r.observability_arn if foreign else r.missing_observability_arn


def _connector(r: Resources, foreign: bool) -> str:
    return r.vpc_connector_arn if foreign else r.missing_vpc_connector_arn


def _ingress(r: Resources, foreign: bool) -> str:
    return r.vpc_ingress_arn if foreign else r.missing_vpc_ingress_arn


async def _error(call: Awaitable[Any]) -> RichError | None:
    """The call's error; None when it succeeded."""
    try:
        await call
    except grpc.aio.AioRpcError as err:
        return parse(err)
    return None


async def test_every_rpc_treats_another_accounts_resources_as_missing(
    harness: Harness, first: Resources
) -> None:
    rpcs = identity.methods()
    covered = set(GRPC_NOT_FOUND) | set(GRPC_EMPTY_LISTS) | set(GRPC_CREATES) | GRPC_SHARED_REGISTRY
    assert covered == set(rpcs), f"RPCs without an isolation case: {set(rpcs) - covered}"
    other = harness.meta(OTHER_ACCOUNT)
    ids = (
        first.service_arn,
        first.missing_service_arn,
        first.operation_id,
        first.missing_operation_id,
        first.connection_arn,
        first.missing_connection_arn,
        first.scaling_arn,
        first.missing_scaling_arn,
        first.observability_arn,
        first.missing_observability_arn,
        *first.ids,
    )
    leaks: list[str] = []
    for name, make in GRPC_NOT_FOUND.items():
        method = rpcs[name]
        foreign = await _error(identity.call(harness.channel, method, make(first, True), other))
        missing = await _error(identity.call(harness.channel, method, make(first, False), other))
        assert missing is not None, f"{name}: a missing resource was found"
        if foreign is None:
            leaks.append(f"{name}: succeeded on another account's resource")
            continue
        if foreign.code != grpc.StatusCode.NOT_FOUND:
            leaks.append(f"{name}: {foreign.code} {foreign.message}")
        if _normalised(foreign, ids) != _normalised(missing, ids):
            leaks.append(f"{name}: {_normalised(foreign, ids)} != {_normalised(missing, ids)}")
    for name, make_list in GRPC_EMPTY_LISTS.items():
        answers = await identity.call(
            harness.channel, rpcs[name], make_list(first), other, timeout=1.5
        )
        seen = " ".join(str(a) for a in answers)
        if ACCOUNT in seen or DOMAIN in seen or CONNECTION in seen or VPC_INGRESS in seen:
            leaks.append(f"{name}: answered {seen[:300]}")
    for name, make_create in GRPC_CREATES.items():
        answers = await identity.call(harness.channel, rpcs[name], make_create(first), other)
        if ACCOUNT in str(answers):
            leaks.append(f"{name}: answered {answers}")
    # The first account's own event stream, asked for by ARN, is empty for the second.
    watched = await identity.call(
        harness.channel,
        rpcs["WatchEvents"],
        api.WatchEventsRequest(cursor="0", resource_arn=first.service_arn),
        other,
        timeout=1.5,
    )
    if watched:
        leaks.append(f"WatchEvents by ARN: {watched}")
    assert leaks == []
    await _unchanged(harness, first)


async def _unchanged(harness: Harness, first: Resources) -> None:
    svc = await harness.describe(first.service_arn)
    assert svc.status == pb.Service.PAUSED
    domains = await harness.stub.DescribeCustomDomains(
        api.DescribeCustomDomainsRequest(service_arn=first.service_arn), metadata=harness.meta()
    )
    assert [d.domain_name for d in domains.custom_domains] == [DOMAIN]
    conns = await harness.stub.ListConnections(
        api.ListConnectionsRequest(), metadata=harness.meta()
    )
    assert [c.connection_arn for c in conns.connections] == [first.connection_arn]
    scaling = await harness.stub.DescribeAutoScalingConfiguration(
        cpb.DescribeAutoScalingConfigurationRequest(
            auto_scaling_configuration_arn=first.scaling_arn
        ),
        metadata=harness.meta(),
    )
    assert scaling.auto_scaling_configuration.status == cpb.AutoScalingConfiguration.ACTIVE
    assert not scaling.auto_scaling_configuration.is_default
    connector = await harness.stub.DescribeVpcConnector(
        vpc_pb2.DescribeVpcConnectorRequest(vpc_connector_arn=first.vpc_connector_arn),
        metadata=harness.meta(),
    )
    assert connector.vpc_connector.status == vpc_pb2.VpcConnector.ACTIVE
    ingress = await harness.stub.DescribeVpcIngressConnection(
        vpc_pb2.DescribeVpcIngressConnectionRequest(
            vpc_ingress_connection_arn=first.vpc_ingress_arn
        ),
        metadata=harness.meta(),
    )
    assert ingress.vpc_ingress_connection.status == vpc_pb2.VpcIngressConnection.AVAILABLE
    assert ingress.vpc_ingress_connection.ingress_vpc_configuration.vpc_id == "vpc-1"


# ----- App Runner actions -----

AwsCall = Callable[[Resources, bool], tuple[str, dict[str, Any]]]
AWS_NOT_FOUND: dict[str, AwsCall] = {
    "DescribeService": lambda r, f: ("describe_service", {"ServiceArn": _svc(r, f)}),
    "UpdateService": lambda r, f: (
        "update_service",
        {"ServiceArn": _svc(r, f), "InstanceConfiguration": {"Cpu": "1 vCPU"}},
    ),
    "DeleteService": lambda r, f: ("delete_service", {"ServiceArn": _svc(r, f)}),
    "PauseService": lambda r, f: ("pause_service", {"ServiceArn": _svc(r, f)}),
    "ResumeService": lambda r, f: ("resume_service", {"ServiceArn": _svc(r, f)}),
    "ListOperations": lambda r, f: ("list_operations", {"ServiceArn": _svc(r, f)}),
    "DeleteConnection": lambda r, f: (
        "delete_connection",
        {"ConnectionArn": r.connection_arn if f else r.missing_connection_arn},
    ),
    "AssociateCustomDomain": lambda r, f: (
        "associate_custom_domain",
        {"ServiceArn": _svc(r, f), "DomainName": DOMAIN},
    ),
    "DisassociateCustomDomain": lambda r, f: (
        "disassociate_custom_domain",
        {"ServiceArn": _svc(r, f), "DomainName": DOMAIN},
    ),
    "DescribeCustomDomains": lambda r, f: (
        "describe_custom_domains",
        {"ServiceArn": _svc(r, f)},
    ),
    "StartDeployment": lambda r, f: ("start_deployment", {"ServiceArn": _svc(r, f)}),
    "TagResource": lambda r, f: (
        "tag_resource",
        {"ResourceArn": _svc(r, f), "Tags": [{"Key": "team", "Value": "other"}]},
    ),
    "UntagResource": lambda r, f: (
        "untag_resource",
        {"ResourceArn": _svc(r, f), "TagKeys": ["team"]},
    ),
    "ListTagsForResource": lambda r, f: (
        "list_tags_for_resource",
        {"ResourceArn": _svc(r, f)},
    ),
    # Auto scaling and observability configurations.
    "DescribeAutoScalingConfiguration": lambda r, f: (
        "describe_auto_scaling_configuration",
        {"AutoScalingConfigurationArn": _scaling(r, f)},
    ),
    "DeleteAutoScalingConfiguration": lambda r, f: (
        "delete_auto_scaling_configuration",
        {"AutoScalingConfigurationArn": _scaling(r, f)},
    ),
    "UpdateDefaultAutoScalingConfiguration": lambda r, f: (
        "update_default_auto_scaling_configuration",
        {"AutoScalingConfigurationArn": _scaling(r, f)},
    ),
    "ListServicesForAutoScalingConfiguration": lambda r, f: (
        "list_services_for_auto_scaling_configuration",
        {"AutoScalingConfigurationArn": _scaling(r, f)},
    ),
    "DescribeObservabilityConfiguration": lambda r, f: (
        "describe_observability_configuration",
        {"ObservabilityConfigurationArn": _tracing(r, f)},
    ),
    "DeleteObservabilityConfiguration": lambda r, f: (
        "delete_observability_configuration",
        {"ObservabilityConfigurationArn": _tracing(r, f)},
    ),
    # VPC connectors and ingress connections
    "DescribeVpcConnector": lambda r, f: (
        "describe_vpc_connector",
        {"VpcConnectorArn": _connector(r, f)},
    ),
    "DeleteVpcConnector": lambda r, f: (
        "delete_vpc_connector",
        {"VpcConnectorArn": _connector(r, f)},
    ),
    "CreateVpcIngressConnection": lambda r, f: (
        "create_vpc_ingress_connection",
        {
            "ServiceArn": _svc(r, f),
            "VpcIngressConnectionName": "other-ingress",
            "IngressVpcConfiguration": {"VpcId": "vpc-2", "VpcEndpointId": "vpce-2"},
        },
    ),
    "DescribeVpcIngressConnection": lambda r, f: (
        "describe_vpc_ingress_connection",
        {"VpcIngressConnectionArn": _ingress(r, f)},
    ),
    "UpdateVpcIngressConnection": lambda r, f: (
        "update_vpc_ingress_connection",
        {
            "VpcIngressConnectionArn": _ingress(r, f),
            "IngressVpcConfiguration": {"VpcId": "vpc-2", "VpcEndpointId": "vpce-2"},
        },
    ),
    "DeleteVpcIngressConnection": lambda r, f: (
        "delete_vpc_ingress_connection",
        {"VpcIngressConnectionArn": _ingress(r, f)},
    ),
}
AWS_LISTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ListServices": ("list_services", {}),
    "ListConnections": ("list_connections", {"ConnectionName": CONNECTION}),
    "ListAutoScalingConfigurations": ("list_auto_scaling_configurations", {"LatestOnly": False}),
    "ListObservabilityConfigurations": ("list_observability_configurations", {"LatestOnly": False}),
    "ListVpcConnectors": ("list_vpc_connectors", {}),
    "ListVpcIngressConnections": ("list_vpc_ingress_connections", {}),
}
AWS_CREATES: dict[str, Callable[[Resources], tuple[str, dict[str, Any]]]] = {
    "CreateService": lambda r: (
        "create_service",
        {
            "ServiceName": r.service_name,
            "SourceConfiguration": {
                "ImageRepository": {
                    "ImageIdentifier": "hello-web:1.0",
                    "ImageRepositoryType": "ECR",
                }
            },
        },
    ),
    "CreateConnection": lambda r: (
        "create_connection",
        {"ConnectionName": CONNECTION, "ProviderType": "GITHUB"},
    ),
    "CreateAutoScalingConfiguration": lambda r: (
        "create_auto_scaling_configuration",
        {"AutoScalingConfigurationName": SCALING},
    ),
    "CreateObservabilityConfiguration": lambda r: (
        "create_observability_configuration",
        {"ObservabilityConfigurationName": SCALING},
    ),
    "CreateVpcConnector": lambda r: (
        "create_vpc_connector",
        {"VpcConnectorName": VPC_CONNECTOR, "Subnets": ["s-1"]},
    ),
}


async def _aws_error(call: Awaitable[Any]) -> tuple[str, str]:
    try:
        await call
    except ClientError as exc:
        error: Any = exc.response["Error"]
        return str(error["Code"]), str(error["Message"])
    raise AssertionError("the call succeeded")


async def walk_actions_from_elsewhere(
    harness: Harness,
    first: Resources,
    aws: AppRunnerClient,
    recorder: Recorder,
    *,
    listed_leak: Callable[[str], bool],
    created_leak: Callable[[str], bool],
) -> None:
    """Every App Runner action, called by `aws` from somewhere `first`'s resources are not
    (another account, another region): their ARNs are answered as missing ones are, lists
    show none of them (`listed_leak`), creates name nothing of theirs (`created_leak`), and
    nothing of `first` changed."""
    covered = set(AWS_NOT_FOUND) | set(AWS_LISTS) | set(AWS_CREATES)
    assert covered == set(ACTIONS), f"actions without an isolation case: {set(ACTIONS) - covered}"
    ids = (
        first.service_arn,
        first.missing_service_arn,
        first.connection_arn,
        first.missing_connection_arn,
        first.scaling_arn,
        first.missing_scaling_arn,
        first.observability_arn,
        first.missing_observability_arn,
        *first.ids,
    )

    def scrub(text: str) -> str:
        for value in ids:
            text = text.replace(value, "<id>")
        return text

    leaks: list[str] = []
    for name, make in AWS_NOT_FOUND.items():
        method, foreign_args = make(first, True)
        _, missing_args = make(first, False)
        foreign = await _aws_error(getattr(aws, method)(**foreign_args))
        missing = await _aws_error(getattr(aws, method)(**missing_args))
        if foreign[0] not in ("ResourceNotFoundException", "InvalidRequestException"):
            leaks.append(f"{name}: {foreign}")
        if (foreign[0], scrub(foreign[1])) != (missing[0], scrub(missing[1])):
            leaks.append(f"{name}: {foreign} differs from {missing}")
    for name, (method, args) in AWS_LISTS.items():
        answer = await getattr(aws, method)(**args)
        if listed_leak(str(answer)):
            leaks.append(f"{name}: answered {answer}")
    for name, make_create in AWS_CREATES.items():
        method, args = make_create(first)
        answer = await getattr(aws, method)(**args)
        if created_leak(str(answer)):
            leaks.append(f"{name}: answered {answer}")
    assert leaks == []
    assert recorder.problems() == []
    await _unchanged(harness, first)


async def test_every_action_treats_another_accounts_resources_as_missing(
    harness: Harness, first: Resources
) -> None:
    recorder = Recorder()
    aws = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials(OTHER_ACCOUNT))
    await walk_actions_from_elsewhere(
        harness,
        first,
        aws,
        recorder,
        listed_leak=lambda answer: (
            ACCOUNT in answer or CONNECTION in answer or VPC_INGRESS in answer
        ),
        created_leak=lambda answer: ACCOUNT in answer,
    )
