"""App Runner's auto scaling and observability configuration actions, on the same use
cases as their gRPC twins. `actions.py` adds HANDLERS to its action table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ...application.results import Page
from ...domain.config_resources import ConfigKind, ConfigResource, ConfigStatus
from . import shapes
from .errors import QUOTA_EXCEEDED, RESOURCE_NOT_FOUND, serialization
from .replies import created, with_token
from .replies import page as _page

Body = dict[str, Any]

ARN_MAX = 1011
NAME_MIN, NAME_MAX = 4, 32


def wire_status(config: ConfigResource) -> str:
    """App Runner answers an auto scaling configuration's status in lowercase (`active`,
    `inactive`), though its model lists the values in uppercase; Terraform waits on the
    lowercase values. An observability configuration's status is uppercase, as modelled."""
    if config.kind is ConfigKind.AUTO_SCALING:
        return config.status.value.lower()
    return config.status.value


def timestamp_members(config: ConfigResource, out: Body) -> Body:
    out["CreatedAt"] = shapes.timestamp(config.created_at)
    if config.status is ConfigStatus.INACTIVE and config.deleted_at is not None:
        out["DeletedAt"] = shapes.timestamp(config.deleted_at)
    return out


def auto_scaling(config: ConfigResource) -> Body:
    out: Body = {
        "AutoScalingConfigurationArn": config.arn,
        "AutoScalingConfigurationName": config.name,
        "AutoScalingConfigurationRevision": config.revision,
        "Latest": config.latest,
        "Status": wire_status(config),
        "MaxConcurrency": config.settings.get("max_concurrency"),
        "MinSize": config.settings.get("min_size"),
        "MaxSize": config.settings.get("max_size"),
    }
    timestamp_members(config, out)
    out["HasAssociatedService"] = config.has_associated_service
    out["IsDefault"] = config.is_default
    return out


def auto_scaling_summary(config: ConfigResource) -> Body:
    return {
        "AutoScalingConfigurationArn": config.arn,
        "AutoScalingConfigurationName": config.name,
        "AutoScalingConfigurationRevision": config.revision,
        "Status": wire_status(config),
        "CreatedAt": shapes.timestamp(config.created_at),
        "HasAssociatedService": config.has_associated_service,
        "IsDefault": config.is_default,
    }


def observability(config: ConfigResource) -> Body:
    out: Body = {
        "ObservabilityConfigurationArn": config.arn,
        "ObservabilityConfigurationName": config.name,
        "ObservabilityConfigurationRevision": config.revision,
        "Latest": config.latest,
        "Status": wire_status(config),
    }
    vendor = config.settings.get("trace_vendor")
    if vendor:
        out["TraceConfiguration"] = {"Vendor": vendor}
    return timestamp_members(config, out)


def observability_summary(config: ConfigResource) -> Body:
    return {
        "ObservabilityConfigurationArn": config.arn,
        "ObservabilityConfigurationName": config.name,
        "ObservabilityConfigurationRevision": config.revision,
    }


Handler = Callable[[Any, Body], Awaitable[Body]]
# name -> (handler, the errors App Runner's model declares beyond InvalidRequestException)
HANDLERS: dict[str, tuple[Handler, tuple[str, ...]]] = {}


def _action(name: str, *errors: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = (fn, errors)
        return fn

    return register


def arn_of(body: Body, member: str) -> str:
    return shapes.string(body, member, required=True, min_len=1, max_len=ARN_MAX)


def name_of(body: Body, member: str, required: bool) -> str:
    return shapes.string(body, member, required=required, min_len=NAME_MIN, max_len=NAME_MAX)


def listing_args(body: Body) -> tuple[bool, int | None, str]:
    latest = shapes.boolean(body, "LatestOnly")
    max_results = shapes.integer(body, "MaxResults", 1, 100)
    token = shapes.string(body, "NextToken", min_len=1, max_len=1024)
    # App Runner's default: the latest revision of each name only.
    return (True if latest is None else latest), max_results, token


# ----- auto scaling -----


@_action("CreateAutoScalingConfiguration", QUOTA_EXCEEDED)
async def create_auto_scaling(ctx: Any, body: Body) -> Body:
    name = name_of(body, "AutoScalingConfigurationName", True)
    max_concurrency = shapes.integer(body, "MaxConcurrency", 1, 200)
    min_size = shapes.integer(body, "MinSize", 1, 25)
    max_size = shapes.integer(body, "MaxSize", 1, 2**31 - 1)
    return await created(
        body,
        "AutoScalingConfiguration",
        auto_scaling,
        ctx.app.configs.create_auto_scaling,
        ctx.account_id,
        name,
        max_concurrency,
        min_size,
        max_size,
    )


@_action("DescribeAutoScalingConfiguration", RESOURCE_NOT_FOUND)
async def describe_auto_scaling(ctx: Any, body: Body) -> Body:
    arn = arn_of(body, "AutoScalingConfigurationArn")
    config = await ctx.app.configs.describe(ctx.account_id, ConfigKind.AUTO_SCALING, arn)
    return {"AutoScalingConfiguration": auto_scaling(config)}


@_action("ListAutoScalingConfigurations")
async def list_auto_scaling(ctx: Any, body: Body) -> Body:
    name = name_of(body, "AutoScalingConfigurationName", False)
    latest, max_results, token = listing_args(body)

    async def fetch(size: int, page_token: str) -> Page:
        return await ctx.app.configs.list(
            ctx.account_id, ConfigKind.AUTO_SCALING, name, latest, size, page_token
        )

    found = await _page(fetch, max_results, token)
    return with_token(
        {"AutoScalingConfigurationSummaryList": [auto_scaling_summary(c) for c in found.items]},
        found.next_page_token,
    )


@_action("DeleteAutoScalingConfiguration", RESOURCE_NOT_FOUND)
async def delete_auto_scaling(ctx: Any, body: Body) -> Body:
    arn = arn_of(body, "AutoScalingConfigurationArn")
    everything = shapes.boolean(body, "DeleteAllRevisions") or False
    config = await ctx.app.configs.delete(ctx.account_id, ConfigKind.AUTO_SCALING, arn, everything)
    return {"AutoScalingConfiguration": auto_scaling(config)}


@_action("UpdateDefaultAutoScalingConfiguration", RESOURCE_NOT_FOUND)
async def update_default(ctx: Any, body: Body) -> Body:
    arn = arn_of(body, "AutoScalingConfigurationArn")
    config = await ctx.app.configs.update_default(ctx.account_id, arn)
    return {"AutoScalingConfiguration": auto_scaling(config)}


@_action("ListServicesForAutoScalingConfiguration", RESOURCE_NOT_FOUND)
async def list_services_for(ctx: Any, body: Body) -> Body:
    arn = arn_of(body, "AutoScalingConfigurationArn")
    max_results = shapes.integer(body, "MaxResults", 1, 100)
    token = shapes.string(body, "NextToken", min_len=1, max_len=1024)

    async def fetch(size: int, page_token: str) -> Page:
        return await ctx.app.configs.list_services(ctx.account_id, arn, size, page_token)

    found = await _page(fetch, max_results, token)
    return with_token({"ServiceArnList": list(found.items)}, found.next_page_token)


# ----- observability -----


@_action("CreateObservabilityConfiguration", QUOTA_EXCEEDED)
async def create_observability(ctx: Any, body: Body) -> Body:
    name = name_of(body, "ObservabilityConfigurationName", True)
    trace = body.get("TraceConfiguration")
    vendor = None
    if trace is not None:
        if not isinstance(trace, dict):
            raise serialization("Cannot read TraceConfiguration as TraceConfiguration.")
        vendor = shapes.string(
            {"TraceConfiguration.Vendor": trace.get("Vendor")},
            "TraceConfiguration.Vendor",
            required=True,
            enum=("AWSXRAY",),
        )
    return await created(
        body,
        "ObservabilityConfiguration",
        observability,
        ctx.app.configs.create_observability,
        ctx.account_id,
        name,
        vendor,
    )


@_action("DescribeObservabilityConfiguration", RESOURCE_NOT_FOUND)
async def describe_observability(ctx: Any, body: Body) -> Body:
    arn = arn_of(body, "ObservabilityConfigurationArn")
    config = await ctx.app.configs.describe(ctx.account_id, ConfigKind.OBSERVABILITY, arn)
    return {"ObservabilityConfiguration": observability(config)}


@_action("ListObservabilityConfigurations")
async def list_observability(ctx: Any, body: Body) -> Body:
    name = name_of(body, "ObservabilityConfigurationName", False)
    latest, max_results, token = listing_args(body)

    async def fetch(size: int, page_token: str) -> Page:
        return await ctx.app.configs.list(
            ctx.account_id, ConfigKind.OBSERVABILITY, name, latest, size, page_token
        )

    found = await _page(fetch, max_results, token)
    return with_token(
        {"ObservabilityConfigurationSummaryList": [observability_summary(c) for c in found.items]},
        found.next_page_token,
    )


@_action("DeleteObservabilityConfiguration", RESOURCE_NOT_FOUND)
async def delete_observability(ctx: Any, body: Body) -> Body:
    arn = arn_of(body, "ObservabilityConfigurationArn")
    config = await ctx.app.configs.delete(ctx.account_id, ConfigKind.OBSERVABILITY, arn)
    return {"ObservabilityConfiguration": observability(config)}


READ_ONLY = frozenset(
    {
        "DescribeAutoScalingConfiguration",
        "ListAutoScalingConfigurations",
        "ListServicesForAutoScalingConfiguration",
        "DescribeObservabilityConfiguration",
        "ListObservabilityConfigurations",
    }
)
