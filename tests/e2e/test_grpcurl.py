"""docs/grpcurl.md, run: every recipe block of the page, in order, in one bash session with
the real grpcurl binary (through reflection, no proto files), against a real server. The
page is the test's input, so a recipe that stops working fails here."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from servicecontrol.v1 import service_control_pb2 as api
from tests.support.server import (
    ACCOUNT,
    Harness,
    TlsClient,
    harness_settings,
    running_harness,
)
from tests.support.tls import make_pki

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "grpcurl.md"
GRPCURL = Path(sys.executable).parent / "grpcurl"
DOC_ACCOUNT = "123456789012"

pytestmark = pytest.mark.skipif(
    not GRPCURL.exists() or shutil.which("bash") is None,
    reason="grpcurl (installed into the venv by the dev extras) or bash is missing",
)

# What each recipe must print (stdout and stderr together), and the status of its last
# command. A recipe added to the page without an entry here fails the test.
EXPECTED: dict[str, tuple[int, list[str]]] = {
    "list": (0, ["servicecontrol.v1.ServiceControl", "grpc.health.v1.Health"]),
    "describe": (
        0,
        [
            "rpc DeleteService",
            "// Deletes a service: stops it, deletes its image copy",
            '"service_name": ""',
        ],
    ),
    "grpc.health.v1.Health/Check": (0, ['"status": "SERVING"', '"statuses"']),
    "GetImageUploadStatus": (0, ['"blobs"', '"size": "10240"']),
    "PushImage": (0, ['"image_identifier": "hello-grpcurl:1.0"', '"manifest_digest": "sha256:']),
    "ListServices": (0, []),
    "CreateService": (0, ["OPERATION_IN_PROGRESS", f":{DOC_ACCOUNT}:service/hello-web/"]),
    "WaitOperation": (0, ['"status": "SUCCEEDED"', "CREATE_SERVICE"]),
    "DescribeOperation": (0, ['"status": "SUCCEEDED"', '"current_step": "done"']),
    "DescribeService": (0, ['"status": "RUNNING"', '"etag"']),
    "ListOperations": (0, ["CREATE_SERVICE"]),
    "UpdateService": (0, ["UPDATE_SERVICE", '"status": "SUCCEEDED"']),
    "PauseService": (0, ["PAUSE_SERVICE", '"status": "SUCCEEDED"']),
    "ResumeService": (0, ["RESUME_SERVICE", '"status": "SUCCEEDED"']),
    "StartDeployment": (0, ["START_DEPLOYMENT", '"status": "SUCCEEDED"']),
    "TagResource": (0, []),
    "ListTagsForResource": (0, ['"team": "web"', '"env": "test"']),
    "UntagResource": (0, []),
    # Auto scaling and observability configurations.
    "CreateAutoScalingConfiguration": (
        0,
        [
            f":{DOC_ACCOUNT}:autoscalingconfiguration/high-availability/1/",
            '"min_size": 2',
            '"max_concurrency": 100',
        ],
    ),
    "DescribeAutoScalingConfiguration": (0, ['"status": "ACTIVE"', '"latest": true']),
    "ListAutoScalingConfigurations": (0, ["DefaultConfiguration", "high-availability"]),
    "UpdateDefaultAutoScalingConfiguration": (0, ['"is_default": true', "DefaultConfiguration"]),
    # The service made above uses the account's default.
    "ListServicesForAutoScalingConfiguration": (0, [f":{DOC_ACCOUNT}:service/hello-web/"]),
    "DeleteAutoScalingConfiguration": (0, ['"status": "INACTIVE"', '"deleted_at"']),
    "CreateObservabilityConfiguration": (0, ['"trace_vendor": "AWSXRAY"', "/tracing/1/"]),
    "DescribeObservabilityConfiguration": (0, ['"status": "ACTIVE"']),
    "ListObservabilityConfigurations": (0, ['"observability_configuration_name": "tracing"']),
    "DeleteObservabilityConfiguration": (0, ['"status": "INACTIVE"']),
    "AssociateCustomDomain": (0, ['"domain_name": "app.example.com"', '"dns_target"']),
    "DescribeCustomDomains": (0, ['"domain_name": "app.example.com"']),
    "DisassociateCustomDomain": (0, ['"domain_name": "app.example.com"']),
    "ListCertificates": (0, ['"domain_name": "app.example.com"']),
    "CreateConnection": (0, ['"connection_name": "my-github"', "PENDING_HANDSHAKE"]),
    "ListConnections": (0, ['"connection_name": "my-github"']),
    "DeleteConnection": (0, ['"status": "DELETED"']),
    "CreateVpcConnector": (0, ['"status": "ACTIVE"', '"vpc_connector_revision": 1']),
    "DescribeVpcConnector": (0, ['"vpc_connector_name": "my-egress"']),
    "ListVpcConnectors": (0, ['"vpc_connector_name": "my-egress"']),
    "CreateVpcIngressConnection": (0, ['"status": "AVAILABLE"', '"domain_name"']),
    "DescribeVpcIngressConnection": (0, ['"vpc_ingress_connection_name": "my-ingress"']),
    "ListVpcIngressConnections": (0, ['"vpc_endpoint_id": "vpce-0a1b2c"']),
    "UpdateVpcIngressConnection": (0, ['"vpc_endpoint_id": "vpce-0new"']),
    "DeleteVpcIngressConnection": (0, ['"status": "DELETED"']),
    "DeleteVpcConnector": (
        0,
        ["VPC_CONNECTOR_IN_USE", "refused while in use", '"status": "INACTIVE"'],
    ),
    "WatchEvents": (0, ['"type": "service.create_requested"', "DeadlineExceeded"]),
    "DeleteService": (0, ['"plan"', "DELETE_SERVICE", '"status": "DELETED"']),
    "Error: not found": (
        0,
        ["google.rpc.ErrorInfo", '"reason":"SERVICE_NOT_FOUND"', "grpcurl exited 69"],
    ),
    "Error: bad request": (
        0,
        [
            '"reason":"INVALID_REQUEST"',
            "google.rpc.BadRequest",
            "instance_configuration.cpu",
            "grpcurl exited 67",
        ],
    ),
    "Error: no API key": (
        0,
        ['"reason":"UNAUTHENTICATED_REQUEST"', "authorization: Bearer", "grpcurl exited 80"],
    ),
    "TLS": (0, ["listed over TLS"]),
    "Mutual TLS": (0, ["listed over mutual TLS", "refused without a client certificate"]),
}
TLS_RECIPES = ("TLS", "Mutual TLS")


def doc_blocks() -> tuple[str, list[tuple[str, str]]]:
    """The page's session-variables block, and its recipes as (heading, block) in order:
    the `sh` blocks under `###` headings of the Recipes and Reading errors sections."""
    setup = ""
    recipes: list[tuple[str, str]] = []
    section = heading = ""
    lines = iter(DOC.read_text().splitlines())
    for line in lines:
        if line.startswith("## "):
            section, heading = line[3:].strip(), ""
        elif line.startswith("### "):
            heading = line[4:].strip()
        elif line.strip() == "```sh":
            block = "\n".join(iter(lambda: next(lines), "```"))
            if section == "Session variables" and not heading:
                setup = block
            elif section in ("Recipes", "Reading errors", "Over TLS") and heading:
                assert heading not in dict(recipes), f"two blocks under {heading!r}"
                recipes.append((heading, block))
    return setup, recipes


def test_the_page_has_a_recipe_for_every_rpc() -> None:
    _, recipes = doc_blocks()
    service = api.DESCRIPTOR.services_by_name["ServiceControl"]
    rpc = re.compile(r"servicecontrol\.v1\.ServiceControl/(\w+)")
    called = {m for _, block in recipes for m in rpc.findall(block)}
    assert called == {m.name for m in service.methods}
    headed = {h for h, _ in recipes}
    assert {m.name for m in service.methods} <= headed
    assert headed == set(EXPECTED), "every recipe needs an expectation, and only recipes"


async def _run(
    recipes: list[tuple[str, str]], env: dict[str, str], api_key: str, data_dir: Path
) -> list[tuple[str, str, str]]:
    """Runs the recipes in one bash session, reading the API key as the page does: from
    the credentials file in $SERVICECONTROL_DATA_DIR."""
    setup, _ = doc_blocks()
    assert setup, "the Session variables block is missing"
    script = ["exec 2>&1", setup]
    for heading, block in recipes:
        # The blank echo keeps the marker on its own line after output without a newline.
        script += [f'echo "::recipe {heading}"', "{", block, "}", 'rc=$?; echo; echo "::exit $rc"']
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "credentials").write_text(f"SERVICECONTROL_API_KEY={api_key}\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")},
        **env,
        "SERVICECONTROL_DATA_DIR": str(data_dir),
    }
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        "\n".join(script),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), 90)
    output = stdout.decode()
    assert proc.returncode == 0, output

    marked = re.compile(r"^::recipe ([^\n]+)\n(.*?)^::exit (\d+)$", re.MULTILINE | re.DOTALL)
    results = marked.findall(output)
    ran = [heading for heading, _, _ in results]
    assert ran == [heading for heading, _ in recipes], output
    for heading, text, status in results:
        want_status, wanted = EXPECTED[heading]
        assert int(status) == want_status, f"{heading} exited {status}:\n{text}"
        missing = [w for w in wanted if w not in text]
        assert not missing, f"{heading}: {missing} not in:\n{text}"
    return results


async def test_every_recipe_works_against_a_real_server(harness: Harness) -> None:
    _, recipes = doc_blocks()
    plain = [(h, b) for h, b in recipes if h not in TLS_RECIPES]
    harness.keys[DOC_ACCOUNT] = await harness.new_key(DOC_ACCOUNT)
    results = await _run(
        plain,
        {"SC": f"127.0.0.1:{harness.port}"},
        harness.keys[DOC_ACCOUNT].token,
        harness.tmp / "docs-data",
    )

    # The key decided the account: the service lives in the key's account.
    created = next(text for heading, text, _ in results if heading == "CreateService")
    arn = re.search(r'"service_arn": "([^"]+)"', created)
    assert arn is not None and f":{DOC_ACCOUNT}:" in arn.group(1)
    described = await harness.describe(arn.group(1), account=DOC_ACCOUNT)
    assert described.status == described.DELETED


async def test_tls_recipes_work_against_tls_servers(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    _, recipes = doc_blocks()
    tls_recipes = [(h, b) for h, b in recipes if h in TLS_RECIPES]
    assert [h for h, _ in tls_recipes] == list(TLS_RECIPES)
    common = {"tls_cert": pki.server_cert, "tls_key": pki.server_key}
    tls = harness_settings(database_url, s3_server, tmp_path / "tls", **common)
    mtls = harness_settings(
        database_url, s3_server, tmp_path / "mtls", tls_client_ca=pki.ca, **common
    )
    client = TlsClient(pki.ca, pki.client_cert, pki.client_key)
    async with (
        running_harness(tls, tmp_path, workers=0, tls_client=TlsClient(pki.ca)) as one,
        running_harness(mtls, tmp_path, workers=0, tls_client=client) as two,
    ):
        env = {
            "SC_TLS": f"localhost:{one.port}",
            "SC_MTLS": f"localhost:{two.port}",
            "CA": str(pki.ca),
            "CERT": str(pki.client_cert),
            "KEY": str(pki.client_key),
        }
        await _run(tls_recipes, env, one.keys[ACCOUNT].token, tmp_path / "docs-data")
