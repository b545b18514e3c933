"""VPC connectors, VPC ingress connections and services' network configuration over
gRPC: the same use cases as the App Runner endpoint's VPC actions."""

from __future__ import annotations

import uuid

import grpc

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import vpc_pb2
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, Harness

NETWORK = vpc_pb2.NetworkConfiguration


async def test_vpc_connectors_over_grpc(harness: Harness) -> None:
    meta = harness.meta()
    request_id = str(uuid.uuid4())
    create = vpc_pb2.CreateVpcConnectorRequest(
        vpc_connector_name="grpc-egress",
        subnets=["subnet-1", "subnet-2"],
        security_groups=["sg-1"],
        tags={"team": "net"},
        request_id=request_id,
    )
    created = (await harness.stub.CreateVpcConnector(create, metadata=meta)).vpc_connector
    assert created.status == vpc_pb2.VpcConnector.ACTIVE
    assert created.vpc_connector_revision == 1
    assert list(created.subnets) == ["subnet-1", "subnet-2"]
    # The same request id: the first call's connector, not a second one.
    again = (await harness.stub.CreateVpcConnector(create, metadata=meta)).vpc_connector
    assert again.vpc_connector_arn == created.vpc_connector_arn
    tags = await harness.stub.ListTagsForResource(
        api.ListTagsForResourceRequest(resource_arn=created.vpc_connector_arn), metadata=meta
    )
    assert dict(tags.tags) == {"team": "net"}

    err = await expect_error(
        harness.stub.CreateVpcConnector(
            vpc_pb2.CreateVpcConnectorRequest(vpc_connector_name="grpc-egress", subnets=["s"]),
            metadata=meta,
        ),
        grpc.StatusCode.ALREADY_EXISTS,
    )
    assert err.reason == "VPC_CONNECTOR_NAME_TAKEN"
    err = await expect_error(
        harness.stub.CreateVpcConnector(
            vpc_pb2.CreateVpcConnectorRequest(vpc_connector_name="x"), metadata=meta
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(err.field_violations) == {"vpc_connector_name", "subnets"}

    # A service sends its egress through it; the connector cannot be deleted meanwhile.
    svc = await harness.running_service(
        "grpc-vpc-web",
        network_configuration=NETWORK(
            egress_configuration=NETWORK.EgressConfiguration(
                egress_type=NETWORK.VPC, vpc_connector_arn=created.vpc_connector_arn
            ),
            ip_address_type=NETWORK.DUAL_STACK,
        ),
    )
    assert svc.network_configuration.egress_configuration.vpc_connector_arn == (
        created.vpc_connector_arn
    )
    assert svc.network_configuration.ingress_configuration.is_publicly_accessible is True
    assert svc.network_configuration.ip_address_type == NETWORK.DUAL_STACK
    delete = vpc_pb2.DeleteVpcConnectorRequest(vpc_connector_arn=created.vpc_connector_arn)
    err = await expect_error(
        harness.stub.DeleteVpcConnector(delete, metadata=meta),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert err.reason == "VPC_CONNECTOR_IN_USE"
    assert err.metadata["serviceArns"] == svc.service_arn

    deleting = await harness.stub.DeleteService(
        api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=meta
    )
    await harness.wait(deleting.operation_id)
    deleted = (await harness.stub.DeleteVpcConnector(delete, metadata=meta)).vpc_connector
    assert deleted.status == vpc_pb2.VpcConnector.INACTIVE
    assert deleted.HasField("deleted_at") and deleted.HasField("purge_at")
    described = await harness.stub.DescribeVpcConnector(
        vpc_pb2.DescribeVpcConnectorRequest(vpc_connector_arn=created.vpc_connector_arn),
        metadata=meta,
    )
    assert described.vpc_connector.status == vpc_pb2.VpcConnector.INACTIVE
    listed = await harness.stub.ListVpcConnectors(
        vpc_pb2.ListVpcConnectorsRequest(page_size=10), metadata=meta
    )
    assert [c.vpc_connector_arn for c in listed.vpc_connectors] == [created.vpc_connector_arn]
    err = await expect_error(
        harness.stub.DeleteVpcConnector(delete, metadata=meta), grpc.StatusCode.NOT_FOUND
    )
    assert err.reason == "VPC_CONNECTOR_NOT_FOUND"


async def test_vpc_ingress_connections_over_grpc(harness: Harness) -> None:
    meta = harness.meta()
    svc = await harness.running_service(
        "grpc-private",
        network_configuration=NETWORK(
            ingress_configuration=NETWORK.IngressConfiguration(is_publicly_accessible=False)
        ),
    )
    assert svc.network_configuration.ingress_configuration.is_publicly_accessible is False
    config = vpc_pb2.IngressVpcConfiguration(vpc_id="vpc-1", vpc_endpoint_id="vpce-1")
    created = (
        await harness.stub.CreateVpcIngressConnection(
            vpc_pb2.CreateVpcIngressConnectionRequest(
                service_arn=svc.service_arn,
                vpc_ingress_connection_name="grpc-in",
                ingress_vpc_configuration=config,
            ),
            metadata=meta,
        )
    ).vpc_ingress_connection
    arn = created.vpc_ingress_connection_arn
    assert arn.startswith(f"arn:aws:apprunner:us-east-1:{ACCOUNT}:vpcingressconnection/grpc-in/")
    assert created.status == vpc_pb2.VpcIngressConnection.AVAILABLE
    assert created.domain_name.endswith("us-east-1.servicecontrol.local")

    err = await expect_error(
        harness.stub.CreateVpcIngressConnection(
            vpc_pb2.CreateVpcIngressConnectionRequest(
                service_arn=svc.service_arn,
                vpc_ingress_connection_name="grpc-in-2",
                ingress_vpc_configuration=config,
            ),
            metadata=meta,
        ),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert err.reason == "VPC_INGRESS_CONNECTION_QUOTA_EXCEEDED"
    err = await expect_error(
        harness.stub.DeleteService(
            api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=meta
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert err.metadata["vpcIngressConnectionArn"] == arn
    err = await expect_error(
        harness.stub.UpdateService(
            api.UpdateServiceRequest(
                service_arn=svc.service_arn,
                network_configuration=NETWORK(
                    ingress_configuration=NETWORK.IngressConfiguration(is_publicly_accessible=True)
                ),
            ),
            metadata=meta,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert err.reason == "INVALID_STATE"

    updated = (
        await harness.stub.UpdateVpcIngressConnection(
            vpc_pb2.UpdateVpcIngressConnectionRequest(
                vpc_ingress_connection_arn=arn,
                ingress_vpc_configuration=vpc_pb2.IngressVpcConfiguration(
                    vpc_id="vpc-2", vpc_endpoint_id="vpce-2"
                ),
            ),
            metadata=meta,
        )
    ).vpc_ingress_connection
    assert updated.ingress_vpc_configuration.vpc_endpoint_id == "vpce-2"
    listed = await harness.stub.ListVpcIngressConnections(
        vpc_pb2.ListVpcIngressConnectionsRequest(vpc_endpoint_id="vpce-2"), metadata=meta
    )
    assert [c.vpc_ingress_connection_arn for c in listed.vpc_ingress_connections] == [arn]
    deleted = (
        await harness.stub.DeleteVpcIngressConnection(
            vpc_pb2.DeleteVpcIngressConnectionRequest(vpc_ingress_connection_arn=arn),
            metadata=meta,
        )
    ).vpc_ingress_connection
    assert deleted.status == vpc_pb2.VpcIngressConnection.DELETED
    described = await harness.stub.DescribeVpcIngressConnection(
        vpc_pb2.DescribeVpcIngressConnectionRequest(vpc_ingress_connection_arn=arn),
        metadata=meta,
    )
    assert described.vpc_ingress_connection.status == vpc_pb2.VpcIngressConnection.DELETED
    err = await expect_error(
        harness.stub.UpdateVpcIngressConnection(
            vpc_pb2.UpdateVpcIngressConnectionRequest(
                vpc_ingress_connection_arn=arn, ingress_vpc_configuration=config
            ),
            metadata=meta,
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert err.reason == "VPC_INGRESS_CONNECTION_NOT_FOUND"
    # Now the service may go, and become public first.
    made_public = await harness.stub.UpdateService(
        api.UpdateServiceRequest(
            service_arn=svc.service_arn,
            network_configuration=NETWORK(
                ingress_configuration=NETWORK.IngressConfiguration(is_publicly_accessible=True)
            ),
        ),
        metadata=meta,
    )
    ingress = made_public.service.network_configuration.ingress_configuration
    assert ingress.is_publicly_accessible is True
    await harness.wait(made_public.operation_id)
    deleting = await harness.stub.DeleteService(
        api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=meta
    )
    await harness.wait(deleting.operation_id)
