"""README.md's promises, executed: the run command's `servicecontrol serve` on the
embedded defaults, the grpcurl walkthrough pasted into bash, and CI running the README's
test command."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from servicecontrol_server.identity_cli import read_credentials
from servicecontrol_server.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = shell_blocks()[1].strip()
    # Every tier, the fast one first.
    assert test_command.endswith(
        ".venv/bin/pytest tests/unit && "
        ".venv/bin/pytest -n 3 tests/checks tests/integration tests/e2e"
    )
    tiers = {p.name for p in (ROOT / "tests").iterdir() if p.is_dir() and p.name != "support"}
    assert tiers - {"__pycache__"} == {"unit", "checks", "integration", "e2e"}
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci
    # CI writes bytecode (the machine may say not to): the end-to-end tier's many server
    # processes would otherwise each compile the project's sources anew.
    assert ci.index("\nunset PYTHONDONTWRITEBYTECODE\n") < ci.index(test_command)


def test_every_example_acts_in_the_one_default_account() -> None:
    # grpcurl, the AWS CLI, Python, scctl and Node share ARNs: one account throughout
    # (the operator's commands, which make other accounts, come after them).
    examples = README.partition("## Operator commands")[0]
    accounts = set(re.findall(r"(?<![\d.])\d{12}(?![\d.])", examples))
    assert accounts == {Settings().default_account}


def test_run_command_starts_serve_on_embedded_defaults() -> None:
    run_command = shell_blocks()[0].strip()
    assert run_command.endswith(".venv/bin/servicecontrol serve")


async def test_grpcurl_walkthrough_works_when_pasted(
    tmp_path: Path, embedded_data_dir: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    env.update(
        SERVICECONTROL_DATA_DIR=str(embedded_data_dir),
        SERVICECONTROL_GRPC_LISTEN="127.0.0.1:0",
        SERVICECONTROL_AWS_LISTEN="",
        SERVICECONTROL_LOG_FORMAT="json",
        SERVICECONTROL_METRICS_LISTEN="127.0.0.1:0",
        SERVICECONTROL_CONSOLE_LISTEN="",
    )
    server = await asyncio.create_subprocess_exec(
        str(BIN / "servicecontrol"),
        "serve",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=(tmp_path / "serve.log").open("wb"),
    )
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 90)).decode()
        port = re.search(r"port=(\d+)", line)
        assert port, line
        walkthrough = shell_blocks()[2].replace("localhost:50051", f"localhost:{port[1]}")
        script = tmp_path / "walkthrough.sh"
        script.write_text("set -euo pipefail\n" + walkthrough)
        shell = await asyncio.create_subprocess_exec(
            "bash",
            str(script),
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(shell.communicate(), 120)
        text = out.decode()
        assert shell.returncode == 0, text
        assert "servicecontrol.v1.ServiceControl" in text
        assert '"status": "OPERATION_IN_PROGRESS"' in text
        assert '"status": "SUCCEEDED"' in text
        assert text.rstrip().count('"status": "DELETED"') == 1
        assert '"imageIdentifier": "hello-web:1.0"' in text
        # The audit log holds a row for each of the walkthrough's mutations, under the
        # development key; the delete's row links its operation.
        credentials = read_credentials(embedded_data_dir / "credentials")
        key_id = credentials["AWS_ACCESS_KEY_ID"]
        audit = [line for line in text.splitlines() if f" key={key_id} " in line]
        assert [line.split()[1:3] for line in audit] == [
            ["PushImage", "OK"],
            ["CreateService", "OK"],
            ["DeleteService", "OK"],
        ], text
        # WaitOperation printed the delete's operation: `"id": …` just before its type.
        operation = re.search(r'"id": "([0-9a-f-]{36})",\s*"type": "DELETE_SERVICE"', text)
        assert operation is not None, text
        assert f"operation={operation[1]}" in audit[2]
        # The development key was printed once, at the first start, and is kept private.
        assert credentials["SERVICECONTROL_API_KEY"] in (tmp_path / "serve.log").read_text()
        mode = (embedded_data_dir / "credentials").stat().st_mode & 0o777
        assert mode == 0o600
    finally:
        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.wait(), 30) == 0


async def test_embedded_defaults_keep_data_across_restarts(
    tmp_path: Path, embedded_data_dir: Path
) -> None:
    """`serve` with no configuration: embedded Postgres and the local object store in the
    data directory, both still there after a graceful restart."""
    import grpc

    from servicecontrol.v1 import service_control_pb2 as api
    from servicecontrol.v1 import service_control_pb2_grpc as api_grpc

    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    env.update(
        SERVICECONTROL_DATA_DIR=str(embedded_data_dir),
        SERVICECONTROL_GRPC_LISTEN="127.0.0.1:0",
        SERVICECONTROL_AWS_LISTEN="",
        SERVICECONTROL_METRICS_LISTEN="",
        SERVICECONTROL_CONSOLE_LISTEN="",
    )
    push = await asyncio.create_subprocess_exec(
        str(BIN / "servicecontrol"),
        "images",
        "push",
        "--sample",
        "keep-me:1",
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    assert (await asyncio.wait_for(push.communicate(), 60))[0].startswith(b"pushed keep-me:1")

    async def serving() -> tuple[asyncio.subprocess.Process, str]:
        proc = await asyncio.create_subprocess_exec(
            str(BIN / "servicecontrol"),
            "serve",
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=(tmp_path / "serve.log").open("ab"),
        )
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 90)).decode()
        port = re.search(r"port=(\d+)", line)
        assert port, line
        return proc, f"127.0.0.1:{port[1]}"

    async def stop(proc: asyncio.subprocess.Process) -> None:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0

    proc, target = await serving()
    credentials = read_credentials(embedded_data_dir / "credentials")
    auth = (("authorization", f"Bearer {credentials['SERVICECONTROL_API_KEY']}"),)
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = api_grpc.ServiceControlStub(channel)
            created = await stub.CreateService(
                api.CreateServiceRequest(
                    service_name="survivor",
                    source_configuration={"image_repository": {"image_identifier": "keep-me:1"}},
                ),
                metadata=auth,
            )
            waited = await stub.WaitOperation(
                api.WaitOperationRequest(operation_id=created.operation_id),
                timeout=60,
                metadata=auth,
            )
            assert waited.operation.status == waited.operation.SUCCEEDED
    finally:
        await stop(proc)
    proc, target = await serving()
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            stub = api_grpc.ServiceControlStub(channel)
            again = await stub.DescribeService(
                api.DescribeServiceRequest(service_arn=created.service.service_arn),
                metadata=auth,
            )
            assert again.service.status == again.service.RUNNING
            assert again.service.service_url == created.service.service_url
    finally:
        await stop(proc)
    copies = list((embedded_data_dir / "objects").rglob("manifest.json"))
    assert len(copies) == 1
    # One development key, made at the first start only, and still the one on file.
    assert read_credentials(embedded_data_dir / "credentials") == credentials
    log = (tmp_path / "serve.log").read_text()
    assert log.count("development credentials") == 1
    assert log.count(credentials["SERVICECONTROL_API_KEY"]) == 1
