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

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def shell_blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command() -> None:
    test_command = shell_blocks()[1].strip()
    assert test_command.endswith("pytest -n 2")
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci


def test_run_command_starts_serve_on_embedded_defaults() -> None:
    run_command = shell_blocks()[0].strip()
    assert run_command.endswith(".venv/bin/servicecontrol serve")


async def test_grpcurl_walkthrough_works_when_pasted(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    env.update(
        SERVICECONTROL_DATA_DIR=str(tmp_path / "data"),
        SERVICECONTROL_GRPC_LISTEN="127.0.0.1:0",
        SERVICECONTROL_AWS_LISTEN="",
        SERVICECONTROL_LOG_JSON="true",
    )
    server = await asyncio.create_subprocess_exec(
        str(BIN / "servicecontrol"), "serve", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=(tmp_path / "serve.log").open("wb"),
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
            "bash", str(script), cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(shell.communicate(), 120)
        text = out.decode()
        assert shell.returncode == 0, text
        assert "servicecontrol.v1.ServiceControl" in text
        assert '"status": "OPERATION_IN_PROGRESS"' in text
        assert '"status": "SUCCEEDED"' in text
        assert text.rstrip().count('"status": "DELETED"') == 1
        assert "pushed hello-web:1.0" in text
    finally:
        server.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(server.wait(), 30) == 0
