"""Auto scaling and observability configurations over gRPC: the same use cases as the
App Runner endpoint's actions, with the contract's codes and reasons."""

from __future__ import annotations

import grpc

from servicecontrol.v1 import config_resources_pb2 as cpb
from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, Harness

IMAGE = pb.SourceConfiguration(
    image_repository=pb.ImageRepository(image_identifier="hello-web:1.0")
)
PREFIX = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:autoscalingconfiguration"


async def test_configurations_over_grpc(harness: Harness) -> None:
    meta = harness.meta()
    stub = harness.stub
    made = (
        await stub.CreateAutoScalingConfiguration(
            cpb.CreateAutoScalingConfigurationRequest(
                auto_scaling_configuration_name="grpc-scaling", min_size=2, tags={"team": "web"}
            ),
            metadata=meta,
        )
    ).auto_scaling_configuration
    assert (made.auto_scaling_configuration_revision, made.min_size, made.max_size) == (1, 2, 25)
    assert made.max_concurrency == 100 and made.status == cpb.AutoScalingConfiguration.ACTIVE
    tags = await stub.ListTagsForResource(
        api.ListTagsForResourceRequest(resource_arn=made.auto_scaling_configuration_arn),
        metadata=meta,
    )
    assert dict(tags.tags) == {"team": "web"}

    err = await expect_error(
        stub.CreateAutoScalingConfiguration(
            cpb.CreateAutoScalingConfigurationRequest(
                auto_scaling_configuration_name="grpc-scaling", max_size=0
            ),
            metadata=meta,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "max_size" in err.field_violations
    err = await expect_error(
        stub.DescribeAutoScalingConfiguration(
            cpb.DescribeAutoScalingConfigurationRequest(
                auto_scaling_configuration_arn=f"{PREFIX}/never-made"
            ),
            metadata=meta,
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert err.reason == "AUTO_SCALING_CONFIGURATION_NOT_FOUND"

    tracing = (
        await stub.CreateObservabilityConfiguration(
            cpb.CreateObservabilityConfigurationRequest(
                observability_configuration_name="grpc-tracing", trace_vendor="AWSXRAY"
            ),
            metadata=meta,
        )
    ).observability_configuration
    assert tracing.trace_vendor == "AWSXRAY"

    created = await stub.CreateService(
        api.CreateServiceRequest(
            service_name="grpc-scaled",
            source_configuration=IMAGE,
            auto_scaling_configuration_arn=f"{PREFIX}/grpc-scaling",
            observability_configuration=cpb.ServiceObservabilityConfiguration(
                observability_enabled=True,
                observability_configuration_arn=tracing.observability_configuration_arn,
            ),
        ),
        metadata=meta,
    )
    service = created.service
    assert service.auto_scaling_configuration_arn == made.auto_scaling_configuration_arn
    assert service.observability_configuration_arn == tracing.observability_configuration_arn
    await harness.wait(created.operation_id)
    using = await stub.ListServicesForAutoScalingConfiguration(
        cpb.ListServicesForAutoScalingConfigurationRequest(
            auto_scaling_configuration_arn=made.auto_scaling_configuration_arn
        ),
        metadata=meta,
    )
    assert list(using.service_arns) == [service.service_arn]
    err = await expect_error(
        stub.DeleteAutoScalingConfiguration(
            cpb.DeleteAutoScalingConfigurationRequest(
                auto_scaling_configuration_arn=made.auto_scaling_configuration_arn
            ),
            metadata=meta,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert err.reason == "CONFIGURATION_IN_USE"

    listed = await stub.ListAutoScalingConfigurations(
        cpb.ListAutoScalingConfigurationsRequest(), metadata=meta
    )
    assert [c.auto_scaling_configuration_name for c in listed.auto_scaling_configurations] == [
        "DefaultConfiguration",
        "grpc-scaling",
    ]
    described = await stub.DescribeAutoScalingConfiguration(
        cpb.DescribeAutoScalingConfigurationRequest(
            auto_scaling_configuration_arn=made.auto_scaling_configuration_arn
        ),
        metadata=meta,
    )
    assert described.auto_scaling_configuration.has_associated_service
    made_default = await stub.UpdateDefaultAutoScalingConfiguration(
        cpb.UpdateDefaultAutoScalingConfigurationRequest(
            auto_scaling_configuration_arn=made.auto_scaling_configuration_arn
        ),
        metadata=meta,
    )
    assert made_default.auto_scaling_configuration.is_default

    deleted = await stub.DeleteService(
        api.DeleteServiceRequest(service_arn=service.service_arn), metadata=meta
    )
    await harness.wait(deleted.operation_id)
    gone = await stub.DeleteObservabilityConfiguration(
        cpb.DeleteObservabilityConfigurationRequest(
            observability_configuration_arn=tracing.observability_configuration_arn
        ),
        metadata=meta,
    )
    assert gone.observability_configuration.status == cpb.ObservabilityConfiguration.INACTIVE
    assert gone.observability_configuration.HasField("deleted_at")
    remaining = await stub.ListObservabilityConfigurations(
        cpb.ListObservabilityConfigurationsRequest(), metadata=meta
    )
    assert list(remaining.observability_configurations) == []
    err = await expect_error(
        stub.DescribeObservabilityConfiguration(
            cpb.DescribeObservabilityConfigurationRequest(observability_configuration_arn="x"),
            metadata=meta,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "observability_configuration_arn" in err.field_violations
