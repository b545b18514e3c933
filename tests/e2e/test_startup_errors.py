"""What an operator sees when `servicecontrol` cannot start: one line per problem naming
the fix, exit code 2, no traceback (unless --debug); and a busy port is refused even when
its listener allows port reuse, so two servers never share one port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "servicecontrol"

pytestmark = pytest.mark.slow


def run(*args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    base.update(
        SERVICECONTROL_GRPC_LISTEN="127.0.0.1:0",
        SERVICECONTROL_AWS_LISTEN="127.0.0.1:0",
        SERVICECONTROL_METRICS_LISTEN="127.0.0.1:0",
        SERVICECONTROL_MIGRATE_ON_START="false",
        SERVICECONTROL_LOG_FORMAT="json",
    )
    base.update(env)
    return subprocess.run(
        [str(BIN), *args], env=base, capture_output=True, text=True, timeout=timeout
    )


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("servicecontrol:")]


def assert_one_clear_failure(result: subprocess.CompletedProcess[str], *words: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = error_lines(result)
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def reusable_listener() -> Iterator[int]:
    """A port held by a listener that allows SO_REUSEPORT, as another gRPC server's is."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def test_a_busy_grpc_port_fails_at_start(database_url: str, reusable_listener: int) -> None:
    result = run(
        "serve",
        "--listen",
        f"127.0.0.1:{reusable_listener}",
        SERVICECONTROL_DATABASE_URL=database_url,
    )
    line = assert_one_clear_failure(result, "gRPC", f"127.0.0.1:{reusable_listener}", "--listen")
    assert "already in use" in line
    assert "SERVICECONTROL_READY" not in result.stdout


def test_a_busy_app_runner_port_fails_at_start(database_url: str, reusable_listener: int) -> None:
    result = run(
        "serve",
        "--aws-listen",
        f"127.0.0.1:{reusable_listener}",
        SERVICECONTROL_DATABASE_URL=database_url,
    )
    assert_one_clear_failure(result, "App Runner", "already in use", "--aws-listen")


@pytest.mark.parametrize(
    ("flag", "what"), [("--metrics-listen", "metrics"), ("--console", "console")]
)
def test_a_busy_metrics_or_console_port_fails_at_start(
    database_url: str, reusable_listener: int, flag: str, what: str
) -> None:
    result = run(
        "serve",
        flag,
        f"127.0.0.1:{reusable_listener}",
        SERVICECONTROL_DATABASE_URL=database_url,
    )
    assert_one_clear_failure(result, what, "already in use", flag)


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "not-a-dir"
    file.write_text("")
    result = run("--data-dir", str(file), "serve")
    assert_one_clear_failure(result, str(file), "is a file", "--data-dir")

    below = run("--data-dir", str(file / "data"), "serve")
    assert_one_clear_failure(below, "cannot create data dir", "--data-dir")


def test_bad_settings_are_one_line_each() -> None:
    result = run(
        "serve", SERVICECONTROL_WORKERS_IN_SERVER="-1", SERVICECONTROL_GRPC_LISTEN="nonsense"
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = error_lines(result)
    assert len(lines) == 2, result.stderr
    text = "\n".join(lines)
    assert "workers_in_server (got '-1')" in text and "--workers" in text
    assert "grpc_listen (got 'nonsense')" in text and "<host>:<port>" in text


def test_an_unreachable_database_is_one_line_without_its_password() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once closed
    url = f"postgresql://someone:s3cret@127.0.0.1:{port}/db"
    result = run("--database-url", url, "serve")
    line = assert_one_clear_failure(result, "cannot reach the database", "--database-url")
    assert "s3cret" not in result.stderr
    assert f"someone:***@127.0.0.1:{port}" in line

    debug = run("--debug", "--database-url", url, "serve")
    assert debug.returncode == 2
    assert "Traceback" in debug.stderr


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip().startswith("servicecontrol 0.")


def serve_until_ready(*args: str, **env: str) -> tuple[str, str]:
    """Starts `serve`, stops it with SIGTERM once ready; returns its stdout and stderr."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    base.update(
        SERVICECONTROL_GRPC_LISTEN="127.0.0.1:0",
        SERVICECONTROL_AWS_LISTEN="",
        SERVICECONTROL_METRICS_LISTEN="",
        # No console: its default port is not this test's to take (tests run side by side).
        SERVICECONTROL_CONSOLE_LISTEN="",
        SERVICECONTROL_MIGRATE_ON_START="false",
        SERVICECONTROL_LOG_FORMAT="json",
    )
    base.update(env)
    proc = subprocess.Popen(
        [str(BIN), *args, "serve"],
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("SERVICECONTROL_READY"), ready
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return ready + out, err


def test_serve_without_any_worker_warns_at_start(database_url: str) -> None:
    _, err = serve_until_ready(
        SERVICECONTROL_DATABASE_URL=database_url, SERVICECONTROL_WORKERS_IN_SERVER="0"
    )
    records = [json.loads(line) for line in err.splitlines()]
    warnings = [r for r in records if r["level"] == "WARNING"]
    assert len(warnings) == 1, err
    assert "no job workers" in warnings[0]["message"]
    assert "servicecontrol worker" in warnings[0]["message"]

    _, with_workers = serve_until_ready(SERVICECONTROL_DATABASE_URL=database_url)
    assert "no job workers" not in with_workers


@pytest.mark.parametrize(
    ("args", "env", "words"),
    [
        ((), {"SERVICECONTROL_REGIONS": "us-east-1,moon-base"}, ("'moon-base' is not a region",)),
        (("--regions", "us-east-1,us-east-1"), {}, ("names a region twice", "--regions")),
        ((), {"SERVICECONTROL_REGION": "EU"}, ("'EU' is not a region", "SERVICECONTROL_REGION")),
    ],
)
def test_a_bad_region_is_one_line(
    args: tuple[str, ...], env: dict[str, str], words: tuple[str, ...]
) -> None:
    assert_one_clear_failure(run("serve", *args, **env), *words)


@pytest.mark.parametrize("value", ["61", "-1", "soon", "nan"])
def test_a_bad_api_key_cache_bound_is_one_line(value: str) -> None:
    assert_one_clear_failure(
        run("serve", SERVICECONTROL_API_KEY_CACHE_SECONDS=value),
        f"api_key_cache_seconds (got '{value}')",
        "SERVICECONTROL_API_KEY_CACHE_SECONDS",
    )
