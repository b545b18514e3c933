"""The VPC connector and VPC ingress connection RPCs, mixed into ServiceControlServicer;
the same use cases as App Runner's VPC actions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import vpc_pb2

from ..application.vpc_commands import VpcCommands
from ..domain.vpc import VpcConnector, VpcIngressConnection
from . import convert
from .errors import translated


def vpc_connector(connector: VpcConnector) -> vpc_pb2.VpcConnector:
    out = vpc_pb2.VpcConnector(
        vpc_connector_name=connector.name,
        vpc_connector_arn=connector.arn,
        vpc_connector_revision=connector.revision,
        subnets=connector.subnets,
        security_groups=connector.security_groups,
        status=vpc_pb2.VpcConnector.Status.Value(connector.status.value),
    )
    for name in ("created_at", "deleted_at", "purge_at"):
        value = convert.ts(getattr(connector, name))
        if value is not None:
            getattr(out, name).CopyFrom(value)
    return out


def vpc_ingress_connection(connection: VpcIngressConnection) -> vpc_pb2.VpcIngressConnection:
    out = vpc_pb2.VpcIngressConnection(
        vpc_ingress_connection_arn=connection.arn,
        vpc_ingress_connection_name=connection.name,
        service_arn=connection.service_arn,
        status=vpc_pb2.VpcIngressConnection.Status.Value(connection.status.value),
        account_id=connection.account_id,
        domain_name=connection.domain_name,
        ingress_vpc_configuration=vpc_pb2.IngressVpcConfiguration(
            vpc_id=connection.vpc_id, vpc_endpoint_id=connection.vpc_endpoint_id
        ),
    )
    for name in ("created_at", "deleted_at", "purge_at"):
        value = convert.ts(getattr(connection, name))
        if value is not None:
            getattr(out, name).CopyFrom(value)
    return out


def network_from_request(request: Any) -> dict[str, Any] | None:
    """The request's `network_configuration` as the domain's dict; None when unset."""
    if not request.HasField("network_configuration"):
        return None
    return convert.to_dict(request.network_configuration)


class VpcRpc:
    vpc: VpcCommands
    account: Callable[[grpc.aio.ServicerContext], str]

    @translated
    async def CreateVpcConnector(
        self, request: vpc_pb2.CreateVpcConnectorRequest, context: grpc.aio.ServicerContext
    ) -> vpc_pb2.CreateVpcConnectorResponse:
        connector = await self.vpc.create_vpc_connector(
            self.account(context),
            request.vpc_connector_name,
            list(request.subnets),
            list(request.security_groups),
            tags=sorted(request.tags.items()),
            request_id=request.request_id,
            validate_only=request.validate_only,
        )
        return vpc_pb2.CreateVpcConnectorResponse(vpc_connector=vpc_connector(connector))

    @translated
    async def DescribeVpcConnector(
        self, request: vpc_pb2.DescribeVpcConnectorRequest, context: grpc.aio.ServicerContext
    ) -> vpc_pb2.DescribeVpcConnectorResponse:
        connector = await self.vpc.describe_vpc_connector(
            self.account(context), request.vpc_connector_arn
        )
        return vpc_pb2.DescribeVpcConnectorResponse(vpc_connector=vpc_connector(connector))

    @translated
    async def ListVpcConnectors(
        self, request: vpc_pb2.ListVpcConnectorsRequest, context: grpc.aio.ServicerContext
    ) -> vpc_pb2.ListVpcConnectorsResponse:
        page = await self.vpc.list_vpc_connectors(
            self.account(context), request.page_size, request.page_token
        )
        return vpc_pb2.ListVpcConnectorsResponse(
            vpc_connectors=[vpc_connector(c) for c in page.items],
            next_page_token=page.next_page_token,
        )

    @translated
    async def DeleteVpcConnector(
        self, request: vpc_pb2.DeleteVpcConnectorRequest, context: grpc.aio.ServicerContext
    ) -> vpc_pb2.DeleteVpcConnectorResponse:
        connector = await self.vpc.delete_vpc_connector(
            self.account(context),
            request.vpc_connector_arn,
            request.request_id,
            request.validate_only,
        )
        return vpc_pb2.DeleteVpcConnectorResponse(vpc_connector=vpc_connector(connector))

    @translated
    async def CreateVpcIngressConnection(
        self,
        request: vpc_pb2.CreateVpcIngressConnectionRequest,
        context: grpc.aio.ServicerContext,
    ) -> vpc_pb2.CreateVpcIngressConnectionResponse:
        config = request.ingress_vpc_configuration
        connection = await self.vpc.create_vpc_ingress_connection(
            self.account(context),
            request.service_arn,
            request.vpc_ingress_connection_name,
            config.vpc_id,
            config.vpc_endpoint_id,
            tags=sorted(request.tags.items()),
            request_id=request.request_id,
            validate_only=request.validate_only,
        )
        return vpc_pb2.CreateVpcIngressConnectionResponse(
            vpc_ingress_connection=vpc_ingress_connection(connection)
        )

    @translated
    async def DescribeVpcIngressConnection(
        self,
        request: vpc_pb2.DescribeVpcIngressConnectionRequest,
        context: grpc.aio.ServicerContext,
    ) -> vpc_pb2.DescribeVpcIngressConnectionResponse:
        connection = await self.vpc.describe_vpc_ingress_connection(
            self.account(context), request.vpc_ingress_connection_arn
        )
        return vpc_pb2.DescribeVpcIngressConnectionResponse(
            vpc_ingress_connection=vpc_ingress_connection(connection)
        )

    @translated
    async def ListVpcIngressConnections(
        self,
        request: vpc_pb2.ListVpcIngressConnectionsRequest,
        context: grpc.aio.ServicerContext,
    ) -> vpc_pb2.ListVpcIngressConnectionsResponse:
        page = await self.vpc.list_vpc_ingress_connections(
            self.account(context),
            request.service_arn,
            request.vpc_endpoint_id,
            request.page_size,
            request.page_token,
        )
        return vpc_pb2.ListVpcIngressConnectionsResponse(
            vpc_ingress_connections=[vpc_ingress_connection(c) for c in page.items],
            next_page_token=page.next_page_token,
        )

    @translated
    async def UpdateVpcIngressConnection(
        self,
        request: vpc_pb2.UpdateVpcIngressConnectionRequest,
        context: grpc.aio.ServicerContext,
    ) -> vpc_pb2.UpdateVpcIngressConnectionResponse:
        config = request.ingress_vpc_configuration
        connection = await self.vpc.update_vpc_ingress_connection(
            self.account(context),
            request.vpc_ingress_connection_arn,
            config.vpc_id,
            config.vpc_endpoint_id,
            request.request_id,
            request.validate_only,
        )
        return vpc_pb2.UpdateVpcIngressConnectionResponse(
            vpc_ingress_connection=vpc_ingress_connection(connection)
        )

    @translated
    async def DeleteVpcIngressConnection(
        self,
        request: vpc_pb2.DeleteVpcIngressConnectionRequest,
        context: grpc.aio.ServicerContext,
    ) -> vpc_pb2.DeleteVpcIngressConnectionResponse:
        connection = await self.vpc.delete_vpc_ingress_connection(
            self.account(context),
            request.vpc_ingress_connection_arn,
            request.request_id,
            request.validate_only,
        )
        return vpc_pb2.DeleteVpcIngressConnectionResponse(
            vpc_ingress_connection=vpc_ingress_connection(connection)
        )


__all__ = ["VpcRpc", "api"]
