"""The embedded PostgreSQL never outlives its server for long: SIGHUP (the terminal
closed) stops both like SIGTERM, and after a SIGKILL the next server on the data dir
adopts the PostgreSQL left running, says so, and stops it when it stops."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import psutil
import pytest

from servicecontrol_server.adapters.postgres.embedded import postmaster_pid
from tests.support.waiting import wait_until

BIN = Path(sys.executable).parent / "servicecontrol"

pytestmark = pytest.mark.slow


def postgres_processes(pgdata: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if proc.info["name"] == "postgres" and any(str(pgdata) in part for part in cmdline):
            found.append(proc)
    return found


@asynccontextmanager
async def serving(data: Path, log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    env.update(
        SERVICECONTROL_DATA_DIR=str(data),
        SERVICECONTROL_GRPC_LISTEN="127.0.0.1:0",
        SERVICECONTROL_AWS_LISTEN="",
        SERVICECONTROL_METRICS_LISTEN="",
        # No console: its default port is not this test's to take (tests run side by side).
        SERVICECONTROL_CONSOLE_LISTEN="",
        SERVICECONTROL_LOG_FORMAT="json",
        SERVICECONTROL_WORKERS_IN_SERVER="1",
    )
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            str(BIN), "serve", env=env, stdout=asyncio.subprocess.PIPE, stderr=sink
        )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 90)
        assert line.startswith(b"SERVICECONTROL_READY"), log.read_text()
        yield proc
    finally:
        if proc.returncode is None:
            # Gracefully, so that a failed test leaves no PostgreSQL behind.
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def adoptions(log: Path) -> list[dict[str, object]]:
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [r for r in records if str(r["message"]).startswith("adopting an embedded")]


async def test_sighup_stops_the_server_and_its_postgres(
    embedded_data_dir: Path, tmp_path: Path
) -> None:
    data = embedded_data_dir
    async with serving(data, tmp_path / "serve.log") as proc:
        postmaster = postmaster_pid(data / "postgres")
        assert postmaster is not None
        proc.send_signal(signal.SIGHUP)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    await wait_until(lambda: not psutil.pid_exists(postmaster), timeout=15)
    assert postgres_processes(data / "postgres") == []


async def test_after_sigkill_the_next_server_adopts_and_stops_the_orphan(
    embedded_data_dir: Path, tmp_path: Path
) -> None:
    data = embedded_data_dir
    log = tmp_path / "serve.log"
    async with serving(data, log) as proc:
        orphan = postmaster_pid(data / "postgres")
        assert orphan is not None
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    # SIGKILL cannot be handled: PostgreSQL is still running, with no live user.
    assert postmaster_pid(data / "postgres") == orphan
    assert adoptions(log) == []

    async with serving(data, log) as proc:
        assert postmaster_pid(data / "postgres") == orphan  # adopted, not restarted
        [adopted] = adoptions(log)
        assert adopted["postgres_pid"] == orphan
        assert adopted["level"] == "WARNING"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0

    await wait_until(lambda: not psutil.pid_exists(orphan), timeout=15)
    assert postgres_processes(data / "postgres") == []
    # The killed server's pid was dropped from the embedded library's list of users.
    assert json.loads((data / "postgres" / ".handle_pids.json").read_text()) == []
