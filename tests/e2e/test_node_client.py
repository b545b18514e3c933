"""The Node.js client: clients/node/example.js, run by a real node against a real server,
creates, pauses, resumes and deletes a service, then decodes two rich errors; the client
pushes an image, finds its API key, and acts in the region it is given."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from servicecontrol.v1 import resources_pb2 as pb
from tests.support.node import REPO, node_marks, run_node
from tests.support.server import (
    ACCOUNT,
    OTHER_ACCOUNT,
    Harness,
    harness_settings,
    running_harness,
)

pytestmark = node_marks("@grpc/grpc-js")

HOME, AWAY = "us-east-1", "eu-west-1"


async def test_the_example_runs_a_service_through_its_lifecycle(harness: Harness) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCCTL_", "EXAMPLE_"))}
    env["EXAMPLE_SERVICE_NAME"] = "node-example"
    # The second account's key, from the environment: the key decides the account.
    env["SERVICECONTROL_API_KEY"] = harness.keys[OTHER_ACCOUNT].token
    out = await run_node(
        str(REPO / "clients" / "node" / "example.js"), f"127.0.0.1:{harness.port}", env=env
    )
    lines = [json.loads(line) for line in out.splitlines()]

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


PUSH_SCRIPT = """
const crypto = require('crypto');
const { ServiceControlClient } = require('./clients/node/client');
const sha = (data) => 'sha256:' + crypto.createHash('sha256').update(data).digest('hex');
(async () => {
  const client = new ServiceControlClient(process.argv[1], { apiKey: process.argv[2] });
  const config = Buffer.from('{"os":"linux"}');
  const layer = crypto.randomBytes(3000);
  const header = {
    imageIdentifier: 'from-node:1',
    config: { digest: sha(config), size: config.length },
    layers: [{ digest: sha(layer), size: layer.length,
               mediaType: 'application/vnd.oci.image.layer.v1.tar' }],
  };
  const requests = [
    { header },
    { chunk: { digest: sha(config), offset: 0, data: config } },
    { chunk: { digest: sha(layer), offset: 0, data: layer.subarray(0, 1000) } },
    { chunk: { digest: sha(layer), offset: 1000, data: layer.subarray(1000) } },
  ];
  const pushed = await client.pushImage(requests);
  let refused = null;
  try {
    await client.pushImage([{ header }, { chunk: { digest: sha(layer), offset: 5, data: layer } }]);
  } catch (err) {
    refused = err.reason;
  }
  console.log(JSON.stringify({ pushed, refused }));
  client.close();
})().catch((err) => { console.error(err); process.exit(1); });
"""


async def test_push_image_streams_from_node(harness: Harness) -> None:
    out = await run_node(
        "-e", PUSH_SCRIPT, f"127.0.0.1:{harness.port}", harness.keys[OTHER_ACCOUNT].token
    )
    result = json.loads(out)
    assert result["pushed"]["imageIdentifier"] == "from-node:1"
    assert result["pushed"]["bytesReceived"] == str(3000 + len('{"os":"linux"}'))
    # The layer is stored: sending it again from offset 5 is refused with the resume point.
    assert result["refused"] == "IMAGE_UPLOAD_OFFSET_MISMATCH"
    service = await harness.running_service("from-node", image="from-node:1")
    assert service.status == pb.Service.RUNNING


async def test_the_api_key_comes_from_the_environment_or_the_credentials_file(
    tmp_path: Path,
) -> None:
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
    out = await run_node("-e", script, cwd=tmp_path, timeout=30)
    assert json.loads(out) == ["SCKFILE.secret", "SCKENV.s", None]


REGION_SCRIPT = """
const { ServiceControlClient } = require('./clients/node/client');
(async () => {
  const [target, apiKey, away] = process.argv.slice(1);
  const there = new ServiceControlClient(target, { apiKey, region: away });
  const made = await there.createConnection({ connectionName: 'github', providerType: 'GITHUB' });
  const listedThere = await there.listConnections({});
  there.close();
  const home = new ServiceControlClient(target, { apiKey });
  const listedHome = await home.listConnections({});
  home.close();
  const unserved = new ServiceControlClient(target, { apiKey, region: 'ap-south-1' });
  let refused = null;
  try {
    await unserved.listConnections({});
  } catch (err) {
    const fields = err.fieldViolations.map((v) => v.field);
    refused = { name: err.name, reason: err.reason, fields };
  }
  unserved.close();
  console.log(JSON.stringify({
    arn: made.connection.connectionArn,
    there: listedThere.connections.map((c) => c.connectionArn),
    home: listedHome.connections.map((c) => c.connectionArn),
    refused,
  }));
})().catch((err) => { console.error(err); process.exit(1); });
"""


@pytest.fixture
async def two_region_harness(
    database_url: str, s3_server: Any, tmp_path: Path
) -> AsyncIterator[Harness]:
    settings = harness_settings(database_url, s3_server, tmp_path, regions=f"{HOME},{AWAY}")
    async with running_harness(settings, tmp_path) as h:
        yield h


async def test_the_client_acts_in_the_region_it_is_given(two_region_harness: Harness) -> None:
    harness = two_region_harness
    out = await run_node(
        "-e", REGION_SCRIPT, f"127.0.0.1:{harness.port}", harness.keys[ACCOUNT].token, AWAY
    )
    result = json.loads(out)
    assert result["arn"].split(":")[3] == AWAY
    assert result["there"] == [result["arn"]]
    assert result["home"] == []  # the same key, without a region: the default one
    assert result["refused"] == {
        "name": "InvalidRequestException",
        "reason": "REGION_NOT_SERVED",
        "fields": ["x-servicecontrol-region"],
    }
