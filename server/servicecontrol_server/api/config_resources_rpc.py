"""The auto scaling and observability configuration RPCs, mixed into
ServiceControlServicer; the same use cases as App Runner's actions."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from servicecontrol.v1 import config_resources_pb2 as cpb

from ..application.config_commands import ConfigCommands
from ..domain.config_resources import ConfigKind, ConfigResource
from .convert import ts
from .errors import translated


def auto_scaling(config: ConfigResource) -> cpb.AutoScalingConfiguration:
    out = cpb.AutoScalingConfiguration(
        auto_scaling_configuration_arn=config.arn,
        auto_scaling_configuration_name=config.name,
        auto_scaling_configuration_revision=config.revision,
        latest=config.latest,
        status=cpb.AutoScalingConfiguration.Status.Value(config.status.value),
        max_concurrency=int(config.settings.get("max_concurrency", 0)),
        min_size=int(config.settings.get("min_size", 0)),
        max_size=int(config.settings.get("max_size", 0)),
        has_associated_service=config.has_associated_service,
        is_default=config.is_default,
    )
    _times(config, out)
    return out


def observability(config: ConfigResource) -> cpb.ObservabilityConfiguration:
    out = cpb.ObservabilityConfiguration(
        observability_configuration_arn=config.arn,
        observability_configuration_name=config.name,
        observability_configuration_revision=config.revision,
        latest=config.latest,
        status=cpb.ObservabilityConfiguration.Status.Value(config.status.value),
        trace_vendor=str(config.settings.get("trace_vendor") or ""),
    )
    _times(config, out)
    return out


def _times(
    config: ConfigResource, out: cpb.AutoScalingConfiguration | cpb.ObservabilityConfiguration
) -> None:
    created = ts(config.created_at)
    if created is not None:
        out.created_at.CopyFrom(created)
    deleted = ts(config.deleted_at)
    if deleted is not None:
        out.deleted_at.CopyFrom(deleted)


def _optional(request: object, name: str) -> int | None:
    return getattr(request, name) if request.HasField(name) else None  # type: ignore[attr-defined]


class ConfigResourcesRpc:
    configs: ConfigCommands
    account: Callable[[grpc.aio.ServicerContext], str]

    @translated
    async def CreateAutoScalingConfiguration(
        self,
        request: cpb.CreateAutoScalingConfigurationRequest,
        context: grpc.aio.ServicerContext,
    ) -> cpb.CreateAutoScalingConfigurationResponse:
        config = await self.configs.create_auto_scaling(
            self.account(context),
            request.auto_scaling_configuration_name,
            _optional(request, "max_concurrency"),
            _optional(request, "min_size"),
            _optional(request, "max_size"),
            tags=sorted(request.tags.items()),
        )
        return cpb.CreateAutoScalingConfigurationResponse(
            auto_scaling_configuration=auto_scaling(config)
        )

    @translated
    async def DescribeAutoScalingConfiguration(
        self,
        request: cpb.DescribeAutoScalingConfigurationRequest,
        context: grpc.aio.ServicerContext,
    ) -> cpb.DescribeAutoScalingConfigurationResponse:
        config = await self.configs.describe(
            self.account(context), ConfigKind.AUTO_SCALING, request.auto_scaling_configuration_arn
        )
        return cpb.DescribeAutoScalingConfigurationResponse(
            auto_scaling_configuration=auto_scaling(config)
        )

    @translated
    async def ListAutoScalingConfigurations(
        self,
        request: cpb.ListAutoScalingConfigurationsRequest,
        context: grpc.aio.ServicerContext,
    ) -> cpb.ListAutoScalingConfigurationsResponse:
        page = await self.configs.list(
            self.account(context),
            ConfigKind.AUTO_SCALING,
            request.auto_scaling_configuration_name,
            request.latest_only if request.HasField("latest_only") else True,
            request.page_size,
            request.page_token,
        )
        return cpb.ListAutoScalingConfigurationsResponse(
            auto_scaling_configurations=[auto_scaling(c) for c in page.items],
            next_page_token=page.next_page_token,
        )

    @translated
    async def DeleteAutoScalingConfiguration(
        self,
        request: cpb.DeleteAutoScalingConfigurationRequest,
        context: grpc.aio.ServicerContext,
    ) -> cpb.DeleteAutoScalingConfigurationResponse:
        config = await self.configs.delete(
            self.account(context),
            ConfigKind.AUTO_SCALING,
            request.auto_scaling_configuration_arn,
            request.delete_all_revisions,
        )
        return cpb.DeleteAutoScalingConfigurationResponse(
            auto_scaling_configuration=auto_scaling(config)
        )

    @translated
    async def UpdateDefaultAutoScalingConfiguration(
        self,
        request: cpb.UpdateDefaultAutoScalingConfigurationRequest,
        context: grpc.aio.ServicerContext,
    ) -> cpb.UpdateDefaultAutoScalingConfigurationResponse:
        config = await self.configs.update_default(
            self.account(context), request.auto_scaling_configuration_arn
        )
        return cpb.UpdateDefaultAutoScalingConfigurationResponse(
            auto_scaling_configuration=auto_scaling(config)
        )

    @translated
    async def ListServicesForAutoScalingConfiguration(
        self,
        request: cpb.ListServicesForAutoScalingConfigurationRequest,
        context: grpc.aio.ServicerContext,
    ) -> cpb.ListServicesForAutoScalingConfigurationResponse:
        page = await self.configs.list_services(
            self.account(context),
            request.auto_scaling_configuration_arn,
            request.page_size,
            request.page_token,
        )
        return cpb.ListServicesForAutoScalingConfigurationResponse(
            service_arns=list(page.items), next_page_token=page.next_page_token
        )

    @translated
    async def CreateObservabilityConfiguration(
        self,
        request: cpb.CreateObservabilityConfigurationRequest,
        context: grpc.aio.ServicerContext,
    ) -> cpb.CreateObservabilityConfigurationResponse:
        config = await self.configs.create_observability(
            self.account(context),
            request.observability_configuration_name,
            request.trace_vendor or None,
            tags=sorted(request.tags.items()),
        )
        return cpb.CreateObservabilityConfigurationResponse(
            observability_configuration=observability(config)
        )

    @translated
    async def DescribeObservabilityConfiguration(
        self,
        request: cpb.DescribeObservabilityConfigurationRequest,
        context: grpc.aio.ServicerContext,
    ) -> cpb.DescribeObservabilityConfigurationResponse:
        config = await self.configs.describe(
            self.account(context),
            ConfigKind.OBSERVABILITY,
            request.observability_configuration_arn,
        )
        return cpb.DescribeObservabilityConfigurationResponse(
            observability_configuration=observability(config)
        )

    @translated
    async def ListObservabilityConfigurations(
        self,
        request: cpb.ListObservabilityConfigurationsRequest,
        context: grpc.aio.ServicerContext,
    ) -> cpb.ListObservabilityConfigurationsResponse:
        page = await self.configs.list(
            self.account(context),
            ConfigKind.OBSERVABILITY,
            request.observability_configuration_name,
            request.latest_only if request.HasField("latest_only") else True,
            request.page_size,
            request.page_token,
        )
        return cpb.ListObservabilityConfigurationsResponse(
            observability_configurations=[observability(c) for c in page.items],
            next_page_token=page.next_page_token,
        )

    @translated
    async def DeleteObservabilityConfiguration(
        self,
        request: cpb.DeleteObservabilityConfigurationRequest,
        context: grpc.aio.ServicerContext,
    ) -> cpb.DeleteObservabilityConfigurationResponse:
        config = await self.configs.delete(
            self.account(context),
            ConfigKind.OBSERVABILITY,
            request.observability_configuration_arn,
        )
        return cpb.DeleteObservabilityConfigurationResponse(
            observability_configuration=observability(config)
        )
