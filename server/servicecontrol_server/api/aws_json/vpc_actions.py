"""App Runner's VPC connector and VPC ingress connection actions, on the same use cases
as their gRPC twins (application/vpc_commands.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...application.results import Page
from ...domain.vpc import VpcConnector, VpcIngressConnection
from . import shapes
from .actions import ARN_MAX, Body, Context, _page, _with_token, action
from .errors import INVALID_STATE, QUOTA_EXCEEDED, RESOURCE_NOT_FOUND, invalid_request
from .replies import created

NAME_MIN, NAME_MAX = 4, 40
LIST_TOKEN_MIN, LIST_TOKEN_MAX = 1, 1024
STRING_MAX = 51200


def _string_list(body: Mapping[str, Any], name: str, *, required: bool = False) -> list[str]:
    value = body.get(name)
    if value is None:
        if required:
            raise invalid_request(
                "1 validation error detected: Value null at "
                f"'{name[0].lower() + name[1:]}' failed to satisfy constraint: "
                "Member must not be null"
            )
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid_request(f"{name} must be a list of strings.")
    for item in value:
        if len(item) > STRING_MAX:
            raise invalid_request(f"{name}: an item is longer than {STRING_MAX} characters.")
    return list(value)


def _ingress_vpc_configuration(body: Mapping[str, Any]) -> tuple[str, str]:
    value = body.get("IngressVpcConfiguration")
    if value is None:
        raise invalid_request(
            "1 validation error detected: Value null at 'ingressVpcConfiguration' failed to "
            "satisfy constraint: Member must not be null"
        )
    if not isinstance(value, dict):
        raise invalid_request("IngressVpcConfiguration must be a structure.")
    return (
        shapes.string(value, "VpcId", max_len=STRING_MAX),
        shapes.string(value, "VpcEndpointId", max_len=STRING_MAX),
    )


def vpc_connector(connector: VpcConnector) -> dict[str, Any]:
    out: dict[str, Any] = {
        "VpcConnectorName": connector.name,
        "VpcConnectorArn": connector.arn,
        "VpcConnectorRevision": connector.revision,
        "Subnets": list(connector.subnets),
        "SecurityGroups": list(connector.security_groups),
        "Status": connector.status.value,
        "CreatedAt": shapes.timestamp(connector.created_at),
    }
    if connector.deleted_at is not None:
        out["DeletedAt"] = shapes.timestamp(connector.deleted_at)
    return out


def vpc_ingress_connection(connection: VpcIngressConnection) -> dict[str, Any]:
    out: dict[str, Any] = {
        "VpcIngressConnectionArn": connection.arn,
        "VpcIngressConnectionName": connection.name,
        "ServiceArn": connection.service_arn,
        "Status": connection.status.value,
        "AccountId": connection.account_id,
        "DomainName": connection.domain_name,
        "IngressVpcConfiguration": {
            "VpcId": connection.vpc_id,
            "VpcEndpointId": connection.vpc_endpoint_id,
        },
        "CreatedAt": shapes.timestamp(connection.created_at),
    }
    if connection.deleted_at is not None:
        out["DeletedAt"] = shapes.timestamp(connection.deleted_at)
    return out


# ----- VPC connectors -----


def _connector_arn(body: Body) -> str:
    return shapes.string(body, "VpcConnectorArn", required=True, min_len=1, max_len=ARN_MAX)


@action("CreateVpcConnector", QUOTA_EXCEEDED)
async def create_vpc_connector(ctx: Context, body: Body) -> Body:
    name = shapes.string(
        body, "VpcConnectorName", required=True, min_len=NAME_MIN, max_len=NAME_MAX
    )
    subnets = _string_list(body, "Subnets", required=True)
    security_groups = _string_list(body, "SecurityGroups")
    return await created(
        body,
        "VpcConnector",
        vpc_connector,
        ctx.app.vpc.create_vpc_connector,
        ctx.account_id,
        name,
        subnets,
        security_groups,
    )


@action("DescribeVpcConnector", RESOURCE_NOT_FOUND)
async def describe_vpc_connector(ctx: Context, body: Body) -> Body:
    connector = await ctx.app.vpc.describe_vpc_connector(ctx.account_id, _connector_arn(body))
    return {"VpcConnector": vpc_connector(connector)}


@action("ListVpcConnectors")
async def list_vpc_connectors(ctx: Context, body: Body) -> Body:
    max_results = shapes.integer(body, "MaxResults", 1, 100)
    token = shapes.string(body, "NextToken", min_len=LIST_TOKEN_MIN, max_len=LIST_TOKEN_MAX)

    async def fetch(size: int, page_token: str) -> Page:
        return await ctx.app.vpc.list_vpc_connectors(ctx.account_id, size, page_token)

    page = await _page(fetch, max_results, token)
    return _with_token(
        {"VpcConnectors": [vpc_connector(c) for c in page.items]}, page.next_page_token
    )


@action("DeleteVpcConnector", RESOURCE_NOT_FOUND)
async def delete_vpc_connector(ctx: Context, body: Body) -> Body:
    connector = await ctx.app.vpc.delete_vpc_connector(ctx.account_id, _connector_arn(body))
    return {"VpcConnector": vpc_connector(connector)}


# ----- VPC ingress connections -----


def _ingress_arn(body: Body) -> str:
    return shapes.string(body, "VpcIngressConnectionArn", required=True, min_len=1, max_len=ARN_MAX)


@action("CreateVpcIngressConnection", INVALID_STATE, QUOTA_EXCEEDED)
async def create_vpc_ingress_connection(ctx: Context, body: Body) -> Body:
    service_arn = shapes.string(body, "ServiceArn", required=True, min_len=1, max_len=ARN_MAX)
    name = shapes.string(
        body, "VpcIngressConnectionName", required=True, min_len=NAME_MIN, max_len=NAME_MAX
    )
    vpc_id, endpoint_id = _ingress_vpc_configuration(body)
    return await created(
        body,
        "VpcIngressConnection",
        vpc_ingress_connection,
        ctx.app.vpc.create_vpc_ingress_connection,
        ctx.account_id,
        service_arn,
        name,
        vpc_id,
        endpoint_id,
    )


@action("DescribeVpcIngressConnection", RESOURCE_NOT_FOUND)
async def describe_vpc_ingress_connection(ctx: Context, body: Body) -> Body:
    connection = await ctx.app.vpc.describe_vpc_ingress_connection(
        ctx.account_id, _ingress_arn(body)
    )
    return {"VpcIngressConnection": vpc_ingress_connection(connection)}


@action("ListVpcIngressConnections")
async def list_vpc_ingress_connections(ctx: Context, body: Body) -> Body:
    filter_ = body.get("Filter")
    service_arn = endpoint_id = ""
    if filter_ is not None:
        if not isinstance(filter_, dict):
            raise invalid_request("Filter must be a structure.")
        service_arn = shapes.string(filter_, "ServiceArn", min_len=1, max_len=ARN_MAX)
        endpoint_id = shapes.string(filter_, "VpcEndpointId", max_len=STRING_MAX)
    max_results = shapes.integer(body, "MaxResults", 1, 100)
    token = shapes.string(body, "NextToken", min_len=LIST_TOKEN_MIN, max_len=LIST_TOKEN_MAX)

    async def fetch(size: int, page_token: str) -> Page:
        return await ctx.app.vpc.list_vpc_ingress_connections(
            ctx.account_id, service_arn, endpoint_id, size, page_token
        )

    page = await _page(fetch, max_results, token)
    return _with_token(
        {
            "VpcIngressConnectionSummaryList": [
                {"VpcIngressConnectionArn": c.arn, "ServiceArn": c.service_arn} for c in page.items
            ]
        },
        page.next_page_token,
    )


@action("UpdateVpcIngressConnection", RESOURCE_NOT_FOUND, INVALID_STATE)
async def update_vpc_ingress_connection(ctx: Context, body: Body) -> Body:
    arn = _ingress_arn(body)
    vpc_id, endpoint_id = _ingress_vpc_configuration(body)
    connection = await ctx.app.vpc.update_vpc_ingress_connection(
        ctx.account_id, arn, vpc_id, endpoint_id
    )
    return {"VpcIngressConnection": vpc_ingress_connection(connection)}


@action("DeleteVpcIngressConnection", RESOURCE_NOT_FOUND, INVALID_STATE)
async def delete_vpc_ingress_connection(ctx: Context, body: Body) -> Body:
    connection = await ctx.app.vpc.delete_vpc_ingress_connection(ctx.account_id, _ingress_arn(body))
    return {"VpcIngressConnection": vpc_ingress_connection(connection)}
