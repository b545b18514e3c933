"""The first start as a person sees it: on a terminal, the development credentials once,
a short banner (addresses, data dir, account and where its key is, a command to try) and
human-readable log lines; not on a terminal, JSON lines. Either way, no third-party chatter
(alembic, initdb, platformdirs), no traceback and no line twice."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from servicecontrol_server.cli import package_version

BIN = Path(sys.executable).parent / "servicecontrol"
NOISE = ("alembic", "initdb", "The files belonging", "platformdirs", "Traceback", "Success.")

pytestmark = pytest.mark.slow


def _env(data: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    env.update(
        SERVICECONTROL_DATA_DIR=str(data),
        SERVICECONTROL_GRPC_LISTEN="127.0.0.1:0",
        SERVICECONTROL_AWS_LISTEN="127.0.0.1:0",
        SERVICECONTROL_METRICS_LISTEN="127.0.0.1:0",
        SERVICECONTROL_CONSOLE_LISTEN="",
        TERM="xterm",
    )
    return env


def _read_until(fd: int, screen: bytearray, marker: bytes | None, timeout: float) -> None:
    """Reads the terminal into `screen` until `marker` appears (or, with None, until the
    process closes it); fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while marker is None or marker not in screen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{marker!r} not seen within {timeout} s:\n{screen.decode()}")
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the process closed the terminal
            chunk = b""
        if not chunk:
            if marker is None:
                return
            raise AssertionError(f"ended before {marker!r}:\n{screen.decode()}")
        screen += chunk


def _on_a_terminal(data: Path) -> tuple[int, str]:
    pid, fd = pty.fork()
    if pid == 0:  # the child: serve on the terminal
        os.execve(str(BIN), [str(BIN), "serve"], _env(data))
    screen = bytearray()
    try:
        # The worker's own line, not the supervisor's "job worker started", which may
        # come first.
        _read_until(fd, screen, b"INFO  worker started", 180)
        os.kill(pid, signal.SIGTERM)
        _read_until(fd, screen, None, 60)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), screen.decode().replace("\r\n", "\n")


def _assert_quiet(text: str) -> None:
    for word in NOISE:
        assert word not in text, text
    lines = [re.sub(r"^\d\d:\d\d:\d\d ", "", line) for line in text.splitlines() if line]
    repeated = {line for line in lines if lines.count(line) > 1}
    assert not repeated, text


def test_on_a_terminal_a_banner_and_readable_lines(embedded_data_dir: Path) -> None:
    code, screen = _on_a_terminal(embedded_data_dir)
    assert code == 0, screen
    data = embedded_data_dir.resolve()
    credentials = data / "credentials"
    assert "ServiceControl development credentials" in screen
    assert f"ServiceControl {package_version()} is ready" in screen
    grpc = re.search(r"^  gRPC +(127\.0\.0\.1:\d+)$", screen, re.M)
    assert grpc, screen
    assert re.search(r"^  App Runner +http://127\.0\.0\.1:\d+$", screen, re.M), screen
    assert re.search(r"^  metrics +http://127\.0\.0\.1:\d+/metrics$", screen, re.M), screen
    assert re.search(rf"^  data dir +{re.escape(str(data))}$", screen, re.M), screen
    assert f"000000000000 (key in {credentials})" in screen
    assert f"scctl --endpoint {grpc[1]} services list" in screen
    # Human-readable, not JSON.
    assert re.search(r"^\d\d:\d\d:\d\d INFO +worker started", screen, re.M), screen
    assert not [line for line in screen.splitlines() if line.startswith("{")]
    _assert_quiet(screen)


def test_not_on_a_terminal_json_lines(embedded_data_dir: Path) -> None:
    proc = subprocess.Popen(
        [str(BIN), "serve"],
        env=_env(embedded_data_dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("SERVICECONTROL_READY"), ready
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines()]
    assert "shutting down" in {r["message"] for r in records}, err
    # The first start's credentials are one record of the stream, like every other line.
    (created,) = [r for r in records if r["message"].startswith("development credentials")]
    assert created["kept_in"] == str(embedded_data_dir.resolve() / "credentials")
    assert created["api_key"].startswith(created["aws_access_key_id"] + ".")
    assert "is ready" not in err  # no banner off a terminal
    _assert_quiet(err)
