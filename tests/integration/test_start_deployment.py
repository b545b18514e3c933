"""StartDeployment: the image the service's tag names now is copied into the service's
copy and deployed, and the replaced image's objects are deleted, through the job engine;
over the App Runner endpoint (boto3) and gRPC."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.application.images import copy_manifest_key, manifest_key
from tests.support.aws import AppRunnerClient, Recorder
from tests.support.rpc import expect_error
from tests.support.server import Harness

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/hello-web:1.0"
SOURCE: dict[str, Any] = {
    "ImageRepository": {"ImageIdentifier": IMAGE, "ImageRepositoryType": "ECR"}
}


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    problems = rec.problems()
    assert not problems, "\n".join(problems)


async def copy_keys(h: Harness, service_id: str) -> set[str]:
    def listing() -> set[str]:
        prefix = f"services/{service_id}/"
        return {i.key for i in h.app.store.list_objects(h.settings.image_bucket, prefix)}

    return await asyncio.to_thread(listing)


def blobs_of(manifest: bytes) -> set[str]:
    body = json.loads(manifest)
    return {d["digest"] for d in [body["config"], *body["layers"]]}


async def test_start_deployment_replaces_the_image_copy(
    harness: Harness, recorder: Recorder
) -> None:
    aws = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials())
    created = await aws.create_service(ServiceName="deployed", SourceConfiguration=SOURCE)
    service = created["Service"]
    await harness.wait(created["OperationId"])
    before = await copy_keys(harness, service["ServiceId"])
    assert len(before) == 4  # two layers, the config, the manifest

    # The tag moves to a new image with three layers.
    harness.push_image("hello-web:1.0", layers=3)
    source_manifest = harness.app.store.get_bytes(
        harness.settings.source_bucket, manifest_key("hello-web", "1.0")
    )

    started = await aws.start_deployment(ServiceArn=service["ServiceArn"])
    assert set(started) - {"ResponseMetadata"} == {"OperationId"}
    op = await harness.wait(started["OperationId"])
    assert (op.type, op.status) == (pb.Operation.START_DEPLOYMENT, pb.Operation.SUCCEEDED)
    assert (await aws.describe_service(ServiceArn=service["ServiceArn"]))["Service"][
        "Status"
    ] == "RUNNING"

    prefix = f"services/{service['ServiceId']}/"
    copied = harness.app.store.get_bytes(harness.settings.image_bucket, copy_manifest_key(prefix))
    assert copied == source_manifest
    after = await copy_keys(harness, service["ServiceId"])
    # Exactly the new image: its blobs and its manifest, nothing of the old one.
    assert after == {f"{prefix}blobs/{d}" for d in blobs_of(copied)} | {f"{prefix}manifest.json"}
    assert len(after) == 5
    assert not (before - {f"{prefix}manifest.json"}) & after

    operations = await aws.list_operations(ServiceArn=service["ServiceArn"])
    assert [o["Type"] for o in operations["OperationSummaryList"]] == [
        "START_DEPLOYMENT",
        "CREATE_SERVICE",
    ]
    async with harness.app.engine.connect() as conn:
        rows = await conn.execute(
            text("select type from outbox where resource_arn = :arn order by seq"),
            {"arn": service["ServiceArn"]},
        )
        types = [r[0] for r in rows]
    assert types[-2:] == ["service.deployment_requested", "service.deployed"]

    # Only a RUNNING service deploys; the model declares no InvalidStateException.
    paused = await aws.pause_service(ServiceArn=service["ServiceArn"])
    await harness.wait(paused["OperationId"])
    with pytest.raises(ClientError) as refused:
        await aws.start_deployment(ServiceArn=service["ServiceArn"])
    error: Any = refused.value.response["Error"]
    assert error["Code"] == "InvalidRequestException" and "PAUSED" in error["Message"]
    assert await copy_keys(harness, service["ServiceId"]) == after


async def test_start_deployment_over_grpc(harness: Harness) -> None:
    created = await harness.create("grpc-deploy")
    await harness.wait(created.operation_id)
    started = await harness.stub.StartDeployment(
        api.StartDeploymentRequest(service_arn=created.service.service_arn),
        metadata=harness.meta(),
    )
    assert started.service.status == pb.Service.OPERATION_IN_PROGRESS
    op = await harness.wait(started.operation_id)
    assert (op.type, op.status) == (pb.Operation.START_DEPLOYMENT, pb.Operation.SUCCEEDED)
    # A second deployment while one runs is refused as any second operation is.
    again = await harness.stub.StartDeployment(
        api.StartDeploymentRequest(service_arn=created.service.service_arn),
        metadata=harness.meta(),
    )
    await expect_error(
        harness.stub.StartDeployment(
            api.StartDeploymentRequest(service_arn=created.service.service_arn),
            metadata=harness.meta(),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    await harness.wait(again.operation_id)
