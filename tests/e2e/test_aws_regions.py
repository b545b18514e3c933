"""Regions with clients nobody here wrote: the AWS CLI and boto3, each signing for the
region it is configured with, against a server serving two regions. The same service
name lives once in each region, each region's listing shows its own, and a region not
served is refused as a regional endpoint refuses it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from servicecontrol.v1 import resources_pb2 as pb
from tests.support.aws import AppRunnerClient, Recorder
from tests.support.aws import aws_cli as run_aws_cli
from tests.support.server import ACCOUNT, Harness, harness_settings, running_harness

HOME, AWAY, UNSERVED = "us-east-1", "eu-west-1", "ap-south-1"
SOURCE = '{"ImageRepository": {"ImageIdentifier": "hello-web:1.0", "ImageRepositoryType": "ECR"}}'


@pytest.fixture
async def harness(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    settings = harness_settings(database_url, s3_server, tmp_path, regions=f"{HOME},{AWAY}")
    async with running_harness(settings, tmp_path) as h:
        h.push_image()
        yield h


async def aws(h: Harness, region: str, operation: str, *args: str) -> tuple[int, Any, str]:
    code, out, err = await run_aws_cli(
        h.aws_port, h.aws_credentials(), "apprunner", operation, *args, region=region
    )
    return code, (json.loads(out) if code == 0 else None), err


async def test_the_cli_makes_one_service_name_in_two_regions_and_each_lists_its_own(
    harness: Harness,
) -> None:
    arns = {}
    for region in (HOME, AWAY):
        code, created, err = await aws(
            harness,
            region,
            "create-service",
            "--service-name",
            "web-app",
            "--source-configuration",
            SOURCE,
        )
        assert code == 0, err
        arns[region] = created["Service"]["ServiceArn"]
        assert arns[region].startswith(f"arn:aws:apprunner:{region}:{ACCOUNT}:service/web-app/")
        op = await harness.wait(created["OperationId"])
        assert op.status == pb.Operation.SUCCEEDED
    for region in (HOME, AWAY):
        code, listed, err = await aws(harness, region, "list-services")
        assert code == 0, err
        assert [s["ServiceArn"] for s in listed["ServiceSummaryList"]] == [arns[region]]
        code, described, err = await aws(
            harness, region, "describe-service", "--service-arn", arns[region]
        )
        assert code == 0, err
        assert described["Service"]["Status"] == "RUNNING"
    # Each region's ARN is not found in the other.
    code, _, err = await aws(harness, HOME, "describe-service", "--service-arn", arns[AWAY])
    assert code != 0 and "ResourceNotFoundException" in err, err
    # A region not served: refused before anything runs, in AWS's words.
    code, _, err = await aws(harness, UNSERVED, "list-services")
    assert code != 0
    assert "InvalidSignatureException" in err, err
    assert f"Credential should be scoped to a valid region, not '{UNSERVED}'" in err, err


async def test_boto3_signs_for_its_region(harness: Harness) -> None:
    recorder = Recorder()
    away = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials(), region=AWAY)
    made = await away.create_connection(ConnectionName="github", ProviderType="GITHUB")
    assert made["Connection"]["ConnectionArn"].split(":")[3] == AWAY
    home = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials(), region=HOME)
    assert (await home.list_connections())["ConnectionSummaryList"] == []
    unserved = AppRunnerClient(
        harness.aws_port, recorder, harness.aws_credentials(), region=UNSERVED
    )
    with pytest.raises(ClientError) as refused:
        await unserved.list_connections()
    error: Any = refused.value.response["Error"]
    assert error["Code"] == "InvalidSignatureException"
    assert error["Message"] == (
        f"Credential should be scoped to a valid region, not '{UNSERVED}'. "
        f"This endpoint serves '{HOME}', '{AWAY}'."
    )
