"""TLS and mutual TLS on both endpoints, with the Python client, scctl and the Node
client; certificates are made at test time. Plaintext beyond loopback is refused."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
import grpc
import pytest

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_client import ServiceControlClient
from servicecontrol_client.errors import ServiceControlError
from servicecontrol_server.api.tls import TransportRefused, check_transport
from servicecontrol_server.settings import Settings
from tests.support.aws import ACCESS_KEY, REGION, SECRET_KEY
from tests.support.server import (
    ACCOUNT,
    Harness,
    TlsClient,
    harness_settings,
    running_harness,
)
from tests.support.tls import Pki, make_pki

REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
SCCTL = Path(sys.executable).parent / "scctl"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


async def _harness(
    database_url: str, s3: Any, tmp: Path, pki: Pki, *, mutual: bool
) -> AsyncIterator[Harness]:
    settings = harness_settings(
        database_url,
        s3,
        tmp,
        tls_cert=pki.server_cert,
        tls_key=pki.server_key,
        tls_client_ca=pki.ca if mutual else None,
    )
    client = TlsClient(pki.ca, pki.client_cert, pki.client_key) if mutual else TlsClient(pki.ca)
    async with running_harness(settings, tmp, workers=0, tls_client=client) as h:
        yield h


@pytest.fixture
async def tls(
    database_url: str, s3_server: Any, tmp_path: Path, pki: Pki
) -> AsyncIterator[Harness]:
    async for h in _harness(database_url, s3_server, tmp_path, pki, mutual=False):
        yield h


@pytest.fixture
async def mtls(
    database_url: str, s3_server: Any, tmp_path: Path, pki: Pki
) -> AsyncIterator[Harness]:
    async for h in _harness(database_url, s3_server, tmp_path, pki, mutual=True):
        yield h


def _list(port: int, **kwargs: Any) -> int:
    with ServiceControlClient(f"localhost:{port}", account=ACCOUNT, retries=0, **kwargs) as c:
        return len(c.list_services().services)


async def test_grpc_over_tls_with_the_python_client(tls: Harness, pki: Pki) -> None:
    # The harness's own channel is TLS too.
    await tls.stub.ListServices(
        api.ListServicesRequest(),
        metadata=tls.meta(),
    )
    assert await asyncio.to_thread(_list, tls.port, root_certificates=pki.ca.read_bytes()) == 0
    # A client that trusts another CA refuses the server; a plaintext one gets nowhere.
    for kwargs in ({"root_certificates": pki.other_ca.read_bytes()}, {}):
        with pytest.raises(ServiceControlError) as failed:
            await asyncio.to_thread(_list, tls.port, timeout=3, **kwargs)
        assert failed.value.code == grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_requires_a_client_certificate(mtls: Harness, pki: Pki) -> None:
    ca = pki.ca.read_bytes()
    with pytest.raises(ServiceControlError) as failed:
        await asyncio.to_thread(_list, mtls.port, root_certificates=ca, timeout=3)
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    count = await asyncio.to_thread(
        _list,
        mtls.port,
        root_certificates=ca,
        certificate_chain=pki.client_cert.read_bytes(),
        private_key=pki.client_key.read_bytes(),
    )
    assert count == 0


def _aws_list(port: int, verify: str, cert: tuple[str, str] | None = None) -> list[Any]:
    from botocore.config import Config

    client = boto3.client(
        "apprunner",
        endpoint_url=f"https://localhost:{port}",
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        verify=verify,
        config=Config(client_cert=cert, retries={"total_max_attempts": 1}),
    )
    return list(client.list_services()["ServiceSummaryList"])


async def test_app_runner_endpoint_over_tls_and_mutual_tls(
    tls: Harness, mtls: Harness, pki: Pki
) -> None:
    assert await asyncio.to_thread(_aws_list, tls.aws_port, str(pki.ca)) == []
    with pytest.raises(botocore.exceptions.SSLError):
        await asyncio.to_thread(_aws_list, tls.aws_port, str(pki.other_ca))
    # Refused in the handshake, or the connection closed right after it (TLS 1.3).
    with pytest.raises((botocore.exceptions.SSLError, botocore.exceptions.HTTPClientError)):
        await asyncio.to_thread(_aws_list, mtls.aws_port, str(pki.ca))
    client_cert = (str(pki.client_cert), str(pki.client_key))
    assert await asyncio.to_thread(_aws_list, mtls.aws_port, str(pki.ca), client_cert) == []


async def test_scctl_over_mutual_tls(mtls: Harness, pki: Pki) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCCTL_")}
    env |= {
        "SCCTL_ENDPOINT": f"localhost:{mtls.port}",
        "SCCTL_ACCOUNT": ACCOUNT,
        "SCCTL_CA_FILE": str(pki.ca),
    }
    args = ["--cert-file", str(pki.client_cert), "--key-file", str(pki.client_key)]
    proc = await asyncio.create_subprocess_exec(
        str(SCCTL),
        "services",
        "list",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == {"services": []} or "services" in json.loads(out)
    # Without the client certificate the handshake fails: an API error, exit 3.
    proc = await asyncio.create_subprocess_exec(
        str(SCCTL),
        "services",
        "list",
        "--timeout",
        "3",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 3, err.decode()


@pytest.mark.skipif(NODE is None, reason="node is not installed")
async def test_node_client_over_mutual_tls(mtls: Harness, pki: Pki) -> None:
    assert NODE is not None
    script = """
const { ServiceControlClient } = require('./clients/node/client');
const [target, ca, cert, key] = process.argv.slice(1);
(async () => {
  const good = new ServiceControlClient(target, { tls: { ca, cert, key }, timeoutMs: 5000 });
  const page = await good.listServices({});
  let refused = null;
  try {
    await new ServiceControlClient(target, { tls: { ca }, timeoutMs: 3000 }).listServices({});
  } catch (err) { refused = err.codeName; }
  console.log(JSON.stringify({ services: page.services.length, refused }));
  process.exit(0);
})().catch((err) => { console.error(err); process.exit(1); });
"""
    proc = await asyncio.create_subprocess_exec(
        NODE,
        "-e",
        script,
        f"localhost:{mtls.port}",
        str(pki.ca),
        str(pki.client_cert),
        str(pki.client_key),
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert json.loads(out) == {"services": 0, "refused": "UNAVAILABLE"}


def test_plaintext_beyond_loopback_refuses_to_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    env["SERVICECONTROL_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "servicecontrol"), "serve", "--listen", "0.0.0.0:0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "without TLS" in lines[0] and "--insecure" in lines[0], lines
    assert not (tmp_path / "data").exists()


def test_transport_rules() -> None:
    def check(**values: Any) -> None:
        check_transport(Settings(**values))

    check(grpc_listen="127.0.0.1:1", aws_listen="[::1]:2")
    check(grpc_listen="localhost:1", aws_listen="")
    check(grpc_listen="0.0.0.0:1", insecure=True)
    for values in (
        {"grpc_listen": "0.0.0.0:1"},
        {"grpc_listen": "127.0.0.1:1", "aws_listen": "10.0.0.5:2"},
        {"grpc_listen": "example.com:1"},
        {"tls_cert": Path(__file__)},
        {"tls_client_ca": Path(__file__)},
        {"tls_cert": Path("/nonexistent"), "tls_key": Path("/nonexistent")},
    ):
        with pytest.raises(TransportRefused):
            check(**values)
