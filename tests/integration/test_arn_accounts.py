"""An ARN of another account than the caller's is not found, and the message says so:
the ARN's account is in the ARN itself, so saying it reveals nothing."""

from __future__ import annotations

import grpc

from servicecontrol.v1 import config_resources_pb2 as cpb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import vpc_pb2
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, OTHER_ACCOUNT, Harness


async def test_another_accounts_arn_names_both_accounts(harness: Harness) -> None:
    created = await harness.create("mine")
    arn = created.service.service_arn
    error = await expect_error(
        harness.stub.DescribeService(
            api.DescribeServiceRequest(service_arn=arn), metadata=harness.meta(OTHER_ACCOUNT)
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert error.reason == "SERVICE_NOT_FOUND"
    assert error.metadata == {"serviceArn": arn}
    assert error.message == (
        f"Service {arn} not found: the ARN names account {ACCOUNT}, "
        f"but this call acts in account {OTHER_ACCOUNT}."
    )
    # The same for the connection ARNs and every other ARN the one resolver reads.
    connection = await harness.stub.CreateConnection(
        api.CreateConnectionRequest(connection_name="conn-one", provider_type=1),
        metadata=harness.meta(),
    )
    error = await expect_error(
        harness.stub.DeleteConnection(
            api.DeleteConnectionRequest(connection_arn=connection.connection.connection_arn),
            metadata=harness.meta(OTHER_ACCOUNT),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert error.reason == "CONNECTION_NOT_FOUND"
    assert f"acts in account {OTHER_ACCOUNT}" in error.message


async def test_an_arn_of_another_region_says_which(harness: Harness) -> None:
    created = await harness.create("regional")
    arn = created.service.service_arn.replace(":us-east-1:", ":eu-west-1:")
    error = await expect_error(
        harness.stub.DescribeService(
            api.DescribeServiceRequest(service_arn=arn), metadata=harness.meta()
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert error.message.endswith(
        "the ARN names region eu-west-1, but this call acts in region us-east-1."
    )


async def test_an_unknown_arn_of_ones_own_account_is_plainly_not_found(harness: Harness) -> None:
    created = await harness.create("known")
    arn = created.service.service_arn.rsplit("/", 1)[0] + "/" + "0" * 32
    error = await expect_error(
        harness.stub.DescribeService(
            api.DescribeServiceRequest(service_arn=arn), metadata=harness.meta()
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert error.message == f"Service {arn} not found."


async def test_vpc_and_configuration_arns_of_another_account_say_so_too(harness: Harness) -> None:
    """VPC connector, VPC ingress connection and configuration ARNs are read by their own
    parsers, through the same resolver: another account's gets the same answer."""
    connector = await harness.stub.CreateVpcConnector(
        vpc_pb2.CreateVpcConnectorRequest(vpc_connector_name="conn-vpc", subnets=["s-1"]),
        metadata=harness.meta(),
    )
    private = await harness.running_service(
        "private-web",
        network_configuration=vpc_pb2.NetworkConfiguration(
            ingress_configuration={"is_publicly_accessible": False}
        ),
    )
    ingress = await harness.stub.CreateVpcIngressConnection(
        vpc_pb2.CreateVpcIngressConnectionRequest(
            service_arn=private.service_arn,
            vpc_ingress_connection_name="ingress-one",
            ingress_vpc_configuration={"vpc_id": "vpc-1", "vpc_endpoint_id": "vpce-1"},
        ),
        metadata=harness.meta(),
    )
    scaling = await harness.stub.CreateAutoScalingConfiguration(
        cpb.CreateAutoScalingConfigurationRequest(auto_scaling_configuration_name="scale-one"),
        metadata=harness.meta(),
    )
    connector_arn = connector.vpc_connector.vpc_connector_arn
    ingress_arn = ingress.vpc_ingress_connection.vpc_ingress_connection_arn
    scaling_arn = scaling.auto_scaling_configuration.auto_scaling_configuration_arn
    elsewhere = f": the ARN names account {ACCOUNT}, but this call acts in account {OTHER_ACCOUNT}."
    cases = [
        (
            harness.stub.DescribeVpcConnector(
                vpc_pb2.DescribeVpcConnectorRequest(vpc_connector_arn=connector_arn),
                metadata=harness.meta(OTHER_ACCOUNT),
            ),
            "VPC_CONNECTOR_NOT_FOUND",
            f"VPC connector {connector_arn} not found{elsewhere}",
        ),
        (
            harness.stub.DeleteVpcIngressConnection(
                vpc_pb2.DeleteVpcIngressConnectionRequest(vpc_ingress_connection_arn=ingress_arn),
                metadata=harness.meta(OTHER_ACCOUNT),
            ),
            "VPC_INGRESS_CONNECTION_NOT_FOUND",
            f"VPC ingress connection {ingress_arn} not found{elsewhere}",
        ),
        (
            harness.stub.CreateVpcIngressConnection(
                vpc_pb2.CreateVpcIngressConnectionRequest(
                    service_arn=private.service_arn,
                    vpc_ingress_connection_name="ingress-two",
                    ingress_vpc_configuration={"vpc_id": "vpc-1", "vpc_endpoint_id": "vpce-2"},
                ),
                metadata=harness.meta(OTHER_ACCOUNT),
            ),
            "SERVICE_NOT_FOUND",
            f"Service {private.service_arn} not found{elsewhere}",
        ),
        (
            harness.stub.DescribeAutoScalingConfiguration(
                cpb.DescribeAutoScalingConfigurationRequest(
                    auto_scaling_configuration_arn=scaling_arn
                ),
                metadata=harness.meta(OTHER_ACCOUNT),
            ),
            "AUTO_SCALING_CONFIGURATION_NOT_FOUND",
            f"The auto scaling configuration {scaling_arn} doesn't exist{elsewhere}",
        ),
    ]
    for call, reason, message in cases:
        error = await expect_error(call, grpc.StatusCode.NOT_FOUND)
        assert (error.reason, error.message) == (reason, message)
