"""Instance sizes on both APIs: only the CPU and memory combinations App Runner offers,
refused in each API's own terms (App Runner's wording on its wire, INVALID_ARGUMENT with a
field violation on gRPC), and echoed in the spelling the request used."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from botocore.exceptions import ClientError

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from tests.support.aws import AppRunnerClient, Recorder
from tests.support.rpc import expect_error
from tests.support.server import Harness

IMAGE_SOURCE: dict[str, Any] = {
    "ImageRepository": {"ImageIdentifier": "hello-web:1.0", "ImageRepositoryType": "ECR"}
}


async def test_sizes_not_offered_together_are_refused_on_both_apis(harness: Harness) -> None:
    recorder = Recorder()
    aws = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials())
    with pytest.raises(ClientError) as refused:
        await aws.create_service(
            ServiceName="too-little",
            SourceConfiguration=IMAGE_SOURCE,
            InstanceConfiguration={"Cpu": "4 vCPU", "Memory": "2048"},
        )
    error: Any = refused.value.response["Error"]
    assert (error["Code"], error["Message"]) == (
        "InvalidRequestException",
        "1 validation error detected: Value at 'instanceConfiguration.memory' failed to "
        "satisfy constraint: 2 GB is not offered with 4 vCPU, which takes 8 GB, 10 GB or 12 GB",
    )
    err = await expect_error(
        harness.stub.CreateService(
            api.CreateServiceRequest(
                service_name="too-little",
                source_configuration=pb.SourceConfiguration(
                    image_repository=pb.ImageRepository(image_identifier="hello-web:1.0")
                ),
                instance_configuration=pb.InstanceConfiguration(cpu="4096", memory="2 GB"),
            ),
            metadata=harness.meta(),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(err.field_violations) == {"instance_configuration.memory"}
    assert (await aws.list_services())["ServiceSummaryList"] == []

    created = await aws.create_service(
        ServiceName="mixed-spelling",
        SourceConfiguration=IMAGE_SOURCE,
        InstanceConfiguration={"Cpu": "4096", "Memory": "12 GB"},
    )
    assert created["Service"]["InstanceConfiguration"] == {"Cpu": "4096", "Memory": "12 GB"}
    await harness.wait(created["OperationId"])
    described = await aws.describe_service(ServiceArn=created["Service"]["ServiceArn"])
    assert described["Service"]["InstanceConfiguration"] == {"Cpu": "4096", "Memory": "12 GB"}
    assert recorder.problems() == []
