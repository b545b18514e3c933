"""The Node.js client: clients/node/example.js, run by a real node against a real server,
creates, pauses, resumes and deletes a service, then decodes two rich errors."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest

from servicecontrol.v1 import resources_pb2 as pb
from tests.support.server import OTHER_ACCOUNT, Harness

REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")

pytestmark = [
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
    pytest.mark.skipif(
        not (REPO / "node_modules" / "@grpc" / "grpc-js").is_dir(),
        reason="the Node modules are not installed: run `npm ci` in the repository root",
    ),
]


async def test_the_example_runs_a_service_through_its_lifecycle(harness: Harness) -> None:
    assert NODE is not None
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCCTL_", "EXAMPLE_"))}
    env["EXAMPLE_SERVICE_NAME"] = "node-example"
    # The second account's key, from the environment: the key decides the account.
    env["SERVICECONTROL_API_KEY"] = harness.keys[OTHER_ACCOUNT].token
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(REPO / "clients" / "node" / "example.js"),
        f"127.0.0.1:{harness.port}",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    lines = [json.loads(line) for line in out.decode().splitlines()]

    lifecycle = [(line["step"], line.get("phase")) for line in lines]
    assert lifecycle == [
        ("create", "requested"),
        ("create", "done"),
        ("pause", "requested"),
        ("pause", "done"),
        ("resume", "requested"),
        ("resume", "done"),
        ("delete", "requested"),
        ("delete", "done"),
        ("error", None),
        ("bad-request", None),
    ]
    steps = {(line["step"], line.get("phase")): line for line in lines}
    arn = steps["create", "requested"]["serviceArn"]
    assert f":{OTHER_ACCOUNT}:service/node-example/" in arn
    for name, status, op_type in [
        ("create", "RUNNING", "CREATE_SERVICE"),
        ("pause", "PAUSED", "PAUSE_SERVICE"),
        ("resume", "RUNNING", "RESUME_SERVICE"),
        ("delete", "DELETED", "DELETE_SERVICE"),
    ]:
        assert steps[name, "requested"]["serviceStatus"] == "OPERATION_IN_PROGRESS"
        assert steps[name, "requested"]["operationId"]
        done = steps[name, "done"]
        assert (done["serviceStatus"], done["operationType"], done["operationStatus"]) == (
            status,
            op_type,
            "SUCCEEDED",
        ), done

    error = steps["error", None]
    assert error["name"] == "ResourceNotFoundException" and error["codeName"] == "NOT_FOUND"
    assert error["reason"] == "SERVICE_NOT_FOUND" and error["domain"] == "servicecontrol"
    assert error["metadata"]["serviceArn"].endswith("/" + "0" * 32)
    bad = steps["bad-request", None]
    assert bad["name"] == "InvalidRequestException" and bad["reason"] == "INVALID_REQUEST"
    assert {v["field"] for v in bad["fieldViolations"]} == {
        "service_name",
        "instance_configuration.cpu",
    }

    assert (await harness.describe(arn, account=OTHER_ACCOUNT)).status == pb.Service.DELETED


async def test_the_api_key_comes_from_the_environment_or_the_credentials_file(
    tmp_path: Path,
) -> None:
    assert NODE is not None
    (tmp_path / ".servicecontrol").mkdir()
    (tmp_path / ".servicecontrol" / "credentials").write_text(
        "# development\nSERVICECONTROL_API_KEY=SCKFILE.secret\n"
    )
    script = (
        f"const {{ defaultApiKey }} = require({json.dumps(str(REPO / 'clients/node/client.js'))});"
        "console.log(JSON.stringify([defaultApiKey({}, process.cwd()),"
        " defaultApiKey({SERVICECONTROL_API_KEY: 'SCKENV.s'}, process.cwd()),"
        " defaultApiKey({SERVICECONTROL_DATA_DIR: 'nowhere'}, process.cwd())]));"
    )
    proc = await asyncio.create_subprocess_exec(
        NODE, "-e", script, cwd=tmp_path, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert json.loads(out) == ["SCKFILE.secret", "SCKENV.s", None]
