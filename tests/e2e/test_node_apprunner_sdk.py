"""The AWS SDK for JavaScript v3 (`@aws-sdk/client-apprunner`), nobody here wrote it, runs
the delete flow against the App Runner endpoint: create, describe, delete, and describe
until DELETED, signed with an account's key; a missing service is the SDK's modeled
ResourceNotFoundException."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.support.node import REPO, node_marks, run_node
from tests.support.server import OTHER_ACCOUNT, Harness

SCRIPT = Path(__file__).parent / "node" / "apprunner_delete_flow.js"

pytestmark = node_marks("@aws-sdk/client-apprunner")


async def test_the_javascript_sdk_deletes_a_service(harness: Harness) -> None:
    key_id, secret = harness.aws_credentials(OTHER_ACCOUNT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=key_id,
        AWS_SECRET_ACCESS_KEY=secret,
        AWS_CONFIG_FILE="/dev/null",
        AWS_SHARED_CREDENTIALS_FILE="/dev/null",
        NODE_PATH=str(REPO / "node_modules"),
    )
    out = await run_node(
        str(SCRIPT), f"http://127.0.0.1:{harness.aws_port}", "js-sdk-app", env=env, timeout=90
    )
    steps = {line["step"]: line for line in map(json.loads, out.splitlines())}
    assert list(steps) == ["create", "describe", "delete", "deleted", "missing"]
    arn = steps["create"]["arn"]
    # The key decided the account.
    assert f":{OTHER_ACCOUNT}:service/js-sdk-app/" in arn
    assert steps["create"]["status"] == "OPERATION_IN_PROGRESS"
    # Sizes come back in the spelling sent; timestamps parse as dates.
    assert steps["describe"] == {
        "step": "describe",
        "status": "RUNNING",
        "cpu": "1024",
        "memory": "2 GB",
        "createdAt": True,
    }
    assert steps["delete"]["status"] == "OPERATION_IN_PROGRESS"
    assert steps["deleted"] == {"step": "deleted", "status": "DELETED", "deletedAt": True}
    assert steps["missing"] == {
        "step": "missing",
        "error": "ResourceNotFoundException",
        "status": 400,
    }
    # The service's image copy is gone with it.
    op = await harness.wait(steps["delete"]["operationId"], OTHER_ACCOUNT)
    assert op.HasField("deletion_report")
