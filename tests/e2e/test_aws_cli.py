"""The AWS CLI, unchanged, against ServiceControl's App Runner endpoint: the commands of
the source document's "Delete your service using the App Runner API or AWS CLI"."""

from __future__ import annotations

import json
from typing import Any

from servicecontrol.v1 import resources_pb2 as pb
from tests.support.aws import aws_cli as run_aws_cli
from tests.support.aws import service_model, shape_problems
from tests.support.server import ACCOUNT, Harness

SOURCE = '{"ImageRepository": {"ImageIdentifier": "hello-web:1.0", "ImageRepositoryType": "ECR"}}'


async def aws_cli(h: Harness, operation: str, *args: str) -> tuple[int, Any, str]:
    """Runs `aws apprunner <operation> ...` and returns its exit code, its JSON output held
    to the operation's output shape, and its stderr."""
    code, out, err = await run_aws_cli(
        h.aws_port, h.aws_credentials(), "apprunner", operation, *args
    )
    if code != 0:
        return code, None, err
    output = json.loads(out)
    # The CLI prints the answer as it came (timestamps as epoch numbers): hold it to the model.
    name = "".join(part.title() for part in operation.split("-"))
    shape = service_model().operation_model(name).output_shape
    assert shape is not None
    assert shape_problems(shape, output) == [], output
    return code, output, err


async def test_cli_create_describe_list_delete(harness: Harness) -> None:
    code, created, err = await aws_cli(
        harness, "create-service", "--service-name", "cli-web", "--source-configuration", SOURCE
    )
    assert code == 0, err
    arn = created["Service"]["ServiceArn"]
    assert arn.startswith(f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/cli-web/")
    assert created["Service"]["Status"] == "OPERATION_IN_PROGRESS"
    op = await harness.wait(created["OperationId"])
    assert op.status == pb.Operation.SUCCEEDED

    code, described, err = await aws_cli(harness, "describe-service", "--service-arn", arn)
    assert code == 0, err
    assert described["Service"]["Status"] == "RUNNING"
    code, listed, err = await aws_cli(harness, "list-services")
    assert code == 0, err
    assert [s["ServiceArn"] for s in listed["ServiceSummaryList"]] == [arn]

    code, deleting, err = await aws_cli(harness, "delete-service", "--service-arn", arn)
    assert code == 0, err
    assert deleting["Service"]["Status"] == "OPERATION_IN_PROGRESS"
    op = await harness.wait(deleting["OperationId"])
    assert (op.type, op.status) == (pb.Operation.DELETE_SERVICE, pb.Operation.SUCCEEDED)
    code, described, err = await aws_cli(harness, "describe-service", "--service-arn", arn)
    assert code == 0, err
    assert described["Service"]["Status"] == "DELETED"

    # A refusal reaches the CLI as App Runner's modeled error.
    code, _, err = await aws_cli(harness, "pause-service", "--service-arn", arn)
    assert code != 0
    assert "(InvalidStateException) when calling the PauseService operation" in err

    # Every mutation is in the audit log under the signing key; the delete links its operation.
    rows = await harness.app.identity.audit(ACCOUNT, None)
    key_id = harness.aws_credentials()[0]
    assert [(r.action, r.outcome, r.key_id) for r in rows] == [
        ("AppRunner.CreateService", "OK", key_id),
        ("AppRunner.DeleteService", "OK", key_id),
        ("AppRunner.PauseService", "InvalidStateException", key_id),
    ]
    assert rows[1].operation_id == deleting["OperationId"] and rows[1].resource_arn == arn
