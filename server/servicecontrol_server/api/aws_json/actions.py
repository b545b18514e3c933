"""One function per App Runner action: read the request, call the same use case the
gRPC API calls, shape the answer. No rules live here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ...application.regions import request_region
from ...application.results import Configs, MutationResult, Page
from ...domain.vpc import VpcIngressConnectionStatus
from ..use_cases import UseCases
from . import config_actions, model, shapes
from .errors import (
    INTERNAL,
    INVALID_REQUEST,
    INVALID_STATE,
    QUOTA_EXCEEDED,
    RESOURCE_NOT_FOUND,
)
from .replies import created
from .replies import page as _page
from .replies import with_token as _with_token

Body = dict[str, Any]

# The longest ARN App Runner's model allows (its members' own bounds are the model's).
ARN_MAX = 1011


@dataclass(frozen=True)
class Context:
    app: UseCases
    account_id: str

    @property
    def region(self) -> str:
        return request_region(self.app.settings)


Handler = Callable[[Context, Body], Awaitable[Body]]


@dataclass(frozen=True)
class Action:
    name: str
    handler: Handler
    # The errors App Runner's model declares for the action.
    errors: frozenset[str]


ACTIONS: dict[str, Action] = {}
# What a `reader` key may call; every other action is a mutation, writers only.
READ_ONLY_ACTIONS = frozenset(
    {
        "DescribeService",
        "ListServices",
        "ListOperations",
        "ListConnections",
        "DescribeCustomDomains",
        # VPC connectors and ingress connections
        "DescribeVpcConnector",
        "ListVpcConnectors",
        "DescribeVpcIngressConnection",
        "ListVpcIngressConnections",
    }
    | config_actions.READ_ONLY
)


def action(name: str, *_listed_errors: str) -> Callable[[Handler], Handler]:
    """Registers the handler of an App Runner action. The errors it may answer are those
    App Runner's model declares for it (errors listed at a call site are the model's
    already); any other client error is InvalidRequestException, which every action
    declares."""

    def register(fn: Handler) -> Handler:
        errors = model.declared_errors(name) | {INVALID_REQUEST, INTERNAL}
        ACTIONS[name] = Action(name, fn, frozenset(errors))
        return fn

    return register


def _service_arn(body: Body) -> str:
    return shapes.string(body, "ServiceArn")


def _next_token(body: Body) -> str:
    return shapes.string(body, "NextToken")


async def _service(ctx: Context, svc: Any) -> Body:
    """The service with the auto scaling configuration it uses, as App Runner shows it."""
    config = svc.configuration
    scaling = await ctx.app.configs.summary_for_service(
        ctx.account_id, config.auto_scaling_configuration_arn if config else None
    )
    return shapes.service(svc, config_actions.auto_scaling_summary(scaling))


async def _mutation(ctx: Context, result: MutationResult) -> Body:
    return {"Service": await _service(ctx, result.service), "OperationId": result.operation_id}


def _references(body: Body, configs: Configs) -> Configs:
    """The auto scaling and observability configurations a create or update names."""
    arn = shapes.string(body, "AutoScalingConfigurationArn", min_len=1, max_len=ARN_MAX)
    configs.auto_scaling_configuration_arn = arn or None
    configs.observability = shapes.observability(body)
    return configs


# ----- services -----


@action("CreateService", QUOTA_EXCEEDED)
async def create_service(ctx: Context, body: Body) -> Body:
    name = shapes.string(body, "ServiceName")
    configs = Configs(
        source=shapes.optional_struct(body, shapes.SOURCE_CONFIGURATION, required=True),
        instance=shapes.optional_struct(body, shapes.INSTANCE_CONFIGURATION),
        health_check=shapes.optional_struct(body, shapes.HEALTH_CHECK_CONFIGURATION),
        network=shapes.network_configuration(body),
    )
    tags = shapes.tags(body)
    shapes.refuse_changed_fixed_settings(body, ctx.region, ctx.account_id)
    _references(body, configs)
    result = await ctx.app.commands.create_service(ctx.account_id, name, configs, tags=tags)
    return await _mutation(ctx, result)


@action("DescribeService", RESOURCE_NOT_FOUND)
async def describe_service(ctx: Context, body: Body) -> Body:
    svc = await ctx.app.commands.describe_service(ctx.account_id, _service_arn(body))
    return {"Service": await _service(ctx, svc)}


@action("ListServices")
async def list_services(ctx: Context, body: Body) -> Body:
    max_results = shapes.integer(body, "MaxResults")
    token = _next_token(body)

    async def fetch(size: int, page_token: str) -> Page:
        return await ctx.app.commands.list_services(ctx.account_id, size, page_token)

    page = await _page(fetch, max_results, token)
    return _with_token(
        {"ServiceSummaryList": [shapes.service_summary(s) for s in page.items]},
        page.next_page_token,
    )


@action("UpdateService", RESOURCE_NOT_FOUND, INVALID_STATE)
async def update_service(ctx: Context, body: Body) -> Body:
    arn = _service_arn(body)
    configs = Configs(
        source=shapes.optional_struct(body, shapes.SOURCE_CONFIGURATION),
        instance=shapes.optional_struct(body, shapes.INSTANCE_CONFIGURATION),
        health_check=shapes.optional_struct(body, shapes.HEALTH_CHECK_CONFIGURATION),
        network=shapes.network_configuration(body),
    )
    shapes.refuse_changed_fixed_settings(body, ctx.region, ctx.account_id)
    _references(body, configs)
    result = await ctx.app.commands.update_service(ctx.account_id, arn, configs)
    return await _mutation(ctx, result)


@action("DeleteService", RESOURCE_NOT_FOUND, INVALID_STATE)
async def delete_service(ctx: Context, body: Body) -> Body:
    result = await ctx.app.commands.delete_service(ctx.account_id, _service_arn(body))
    return await _mutation(ctx, result)


@action("PauseService", RESOURCE_NOT_FOUND, INVALID_STATE)
async def pause_service(ctx: Context, body: Body) -> Body:
    result = await ctx.app.commands.pause_service(ctx.account_id, _service_arn(body))
    return await _mutation(ctx, result)


@action("ResumeService", RESOURCE_NOT_FOUND, INVALID_STATE)
async def resume_service(ctx: Context, body: Body) -> Body:
    result = await ctx.app.commands.resume_service(ctx.account_id, _service_arn(body))
    return await _mutation(ctx, result)


@action("StartDeployment", RESOURCE_NOT_FOUND)
async def start_deployment(ctx: Context, body: Body) -> Body:
    result = await ctx.app.commands.start_deployment(ctx.account_id, _service_arn(body))
    return {"OperationId": result.operation_id}


@action("ListOperations", RESOURCE_NOT_FOUND)
async def list_operations(ctx: Context, body: Body) -> Body:
    arn = _service_arn(body)
    max_results = shapes.integer(body, "MaxResults")
    token = _next_token(body)

    async def fetch(size: int, page_token: str) -> Page:
        return await ctx.app.commands.list_operations(ctx.account_id, arn, size, page_token)

    page = await _page(fetch, max_results, token)
    return _with_token(
        {"OperationSummaryList": [shapes.operation_summary(o) for o in page.items]},
        page.next_page_token,
    )


# ----- connections -----


def _connection_name(body: Body) -> str:
    return shapes.string(body, "ConnectionName")


@action("CreateConnection", QUOTA_EXCEEDED)
async def create_connection(ctx: Context, body: Body) -> Body:
    name = _connection_name(body)
    provider = shapes.string(body, "ProviderType")
    return await created(
        body,
        "Connection",
        shapes.connection,
        ctx.app.connections.create_connection,
        ctx.account_id,
        name,
        provider,
    )


@action("ListConnections")
async def list_connections(ctx: Context, body: Body) -> Body:
    name = _connection_name(body)
    max_results = shapes.integer(body, "MaxResults")
    token = _next_token(body)

    async def fetch(size: int, page_token: str) -> Page:
        return await ctx.app.connections.list_connections(ctx.account_id, name, size, page_token)

    page = await _page(fetch, max_results, token)
    return _with_token(
        {"ConnectionSummaryList": [shapes.connection(c) for c in page.items]},
        page.next_page_token,
    )


@action("DeleteConnection", RESOURCE_NOT_FOUND)
async def delete_connection(ctx: Context, body: Body) -> Body:
    arn = shapes.string(body, "ConnectionArn")
    conn = await ctx.app.connections.delete_connection(ctx.account_id, arn)
    return {"Connection": shapes.connection(conn)}


# ----- custom domains -----


def _domain_name(body: Body) -> str:
    return shapes.string(body, "DomainName")


async def _vpc_dns_targets(ctx: Context, service_arn: str) -> list[Body]:
    """The service's AVAILABLE VPC ingress connections, as the targets a custom domain's
    DNS records point at from inside the VPC."""
    page = await ctx.app.vpc.list_vpc_ingress_connections(ctx.account_id, service_arn, "", 0, "")
    return [
        {"VpcIngressConnectionArn": c.arn, "VpcId": c.vpc_id, "DomainName": c.domain_name}
        for c in page.items
        if c.status is VpcIngressConnectionStatus.AVAILABLE
    ]


async def _domain_result(ctx: Context, result: Any) -> Body:
    return {
        "DNSTarget": result.dns_target,
        "ServiceArn": result.service_arn,
        "CustomDomain": shapes.custom_domain(result.custom_domain),
        "VpcDNSTargets": await _vpc_dns_targets(ctx, result.service_arn),
    }


@action("AssociateCustomDomain", INVALID_STATE)
async def associate_custom_domain(ctx: Context, body: Body) -> Body:
    arn = _service_arn(body)
    domain = _domain_name(body)
    enable_www = shapes.boolean(body, "EnableWWWSubdomain")
    result = await ctx.app.domains.associate(ctx.account_id, arn, domain, enable_www)
    return await _domain_result(ctx, result)


@action("DisassociateCustomDomain", RESOURCE_NOT_FOUND, INVALID_STATE)
async def disassociate_custom_domain(ctx: Context, body: Body) -> Body:
    arn = _service_arn(body)
    domain = _domain_name(body)
    result = await ctx.app.domains.disassociate(ctx.account_id, arn, domain)
    return await _domain_result(ctx, result)


@action("DescribeCustomDomains", RESOURCE_NOT_FOUND)
async def describe_custom_domains(ctx: Context, body: Body) -> Body:
    arn = _service_arn(body)
    max_results = shapes.integer(body, "MaxResults")
    token = _next_token(body)
    target: list[Any] = []

    async def fetch(size: int, page_token: str) -> Page:
        result, page = await ctx.app.domains.describe(ctx.account_id, arn, size, page_token)
        target.append(result)
        return page

    page = await _page(fetch, max_results, token)
    first = target[0]
    return _with_token(
        {
            "DNSTarget": first.dns_target,
            "ServiceArn": first.service_arn,
            "CustomDomains": [shapes.custom_domain(d) for d in page.items],
            "VpcDNSTargets": await _vpc_dns_targets(ctx, first.service_arn),
        },
        page.next_page_token,
    )


# ----- tags -----


def _resource_arn(body: Body) -> str:
    return shapes.string(body, "ResourceArn")


@action("TagResource", RESOURCE_NOT_FOUND, INVALID_STATE)
async def tag_resource(ctx: Context, body: Body) -> Body:
    arn = _resource_arn(body)
    await ctx.app.tags.tag_resource(ctx.account_id, arn, shapes.tags(body))
    return {}


@action("UntagResource", RESOURCE_NOT_FOUND, INVALID_STATE)
async def untag_resource(ctx: Context, body: Body) -> Body:
    arn = _resource_arn(body)
    await ctx.app.tags.untag_resource(ctx.account_id, arn, shapes.tag_keys(body))
    return {}


@action("ListTagsForResource", RESOURCE_NOT_FOUND, INVALID_STATE)
async def list_tags_for_resource(ctx: Context, body: Body) -> Body:
    tags = await ctx.app.tags.list_tags(ctx.account_id, _resource_arn(body))
    return {"Tags": shapes.tag_list(tags)}


# ----- auto scaling and observability configurations -----

for _name, (_handler, _errors) in config_actions.HANDLERS.items():
    action(_name, *_errors)(_handler)
