"""`servicecontrol serve` runs its job workers in processes of its own and supervises
them: a worker killed is started again and jobs still finish, its job metrics reach the
server's /metrics, SIGTERM stops every worker before the server exits 0, and a server
killed outright leaves no worker behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import psutil

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import service_control_pb2_grpc as api_grpc
from tests.support.processes import SERVICECONTROL, environment
from tests.support.server import Harness, harness_settings, running_harness
from tests.support.waiting import wait_until

GRACE = 3.0


def worker_pids(server_pid: int) -> set[int]:
    """The server's live worker processes."""
    try:
        children = psutil.Process(server_pid).children()
    except psutil.NoSuchProcess:
        return set()
    return {c.pid for c in children if _alive(c.pid) and "servicecontrol_server" in _cmd(c)}


def _cmd(proc: psutil.Process) -> str:
    with contextlib.suppress(psutil.Error):
        return " ".join(proc.cmdline())
    return ""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped by whoever adopted it is gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _served(log: Path) -> dict[str, Any] | None:
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if entry.get("message") == "serving":
                return dict(entry)
    return None


@contextlib.asynccontextmanager
async def serving(
    h: Harness, tmp: Path, *args: str, **env: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int, Path]]:
    """A `servicecontrol serve` on the harness's database; yields it, its gRPC port and
    its log once it is ready."""
    log = tmp / f"serve-{uuid.uuid4().hex[:6]}.log"
    environ = environment(
        h.settings,
        SERVICECONTROL_GRPC_LISTEN="127.0.0.1:0",
        SERVICECONTROL_AWS_LISTEN="",
        SERVICECONTROL_CONSOLE_LISTEN="",
        SERVICECONTROL_GRPC_GRACE_SECONDS=str(GRACE),
        **env,
    )
    with log.open("wb") as sink:
        server = await asyncio.create_subprocess_exec(
            SERVICECONTROL, "serve", *args, env=environ, stdout=asyncio.subprocess.PIPE, stderr=sink
        )
    try:
        assert server.stdout is not None
        line = (await asyncio.wait_for(server.stdout.readline(), 90)).decode()
        assert line.startswith("SERVICECONTROL_READY port="), log.read_text()[-3000:]
        yield server, int(line.strip().rpartition("=")[2]), log
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()


async def created_and_running(port: int, h: Harness) -> pb.Operation:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = api_grpc.ServiceControlStub(channel)
        made = await stub.CreateService(
            api.CreateServiceRequest(
                service_name=f"proc-{uuid.uuid4().hex[:10]}",
                source_configuration=pb.SourceConfiguration(
                    image_repository=pb.ImageRepository(image_identifier="hello-web:1.0")
                ),
            ),
            metadata=h.meta(),
        )
        waited = await stub.WaitOperation(
            api.WaitOperationRequest(operation_id=made.operation_id),
            metadata=h.meta(),
            timeout=90,
        )
        while waited.operation.status in (pb.Operation.PENDING, pb.Operation.IN_PROGRESS):
            waited = await stub.WaitOperation(
                api.WaitOperationRequest(operation_id=made.operation_id),
                metadata=h.meta(),
                timeout=90,
            )
        return waited.operation


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        return str(response.read().decode())


def jobs_succeeded(text: str, kind: str) -> float:
    prefix = f'servicecontrol_jobs_total{{kind="{kind}",outcome="succeeded"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


async def test_a_killed_worker_is_restarted_jobs_finish_and_sigterm_leaves_no_process(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    async with running_harness(settings, tmp_path, workers=0) as h:
        h.push_image()
        async with serving(h, tmp_path, "--worker-processes", "2") as (server, port, log):
            await wait_until(lambda: len(worker_pids(server.pid)) == 2, timeout=60)
            first = worker_pids(server.pid)
            # Each worker process holds the presence lock that the server's hints read.
            await wait_until(lambda: _live_workers(h, 2), timeout=60)

            assert (await created_and_running(port, h)).status == pb.Operation.SUCCEEDED

            victim = min(first)
            psutil.Process(victim).kill()
            await wait_until(
                lambda: len(worker_pids(server.pid)) == 2 and victim not in worker_pids(server.pid),
                timeout=60,
            )
            restarted = worker_pids(server.pid)
            await wait_until(lambda: "restarting it in" in log.read_text(), timeout=10)
            warnings = [
                json.loads(line)
                for line in log.read_text().splitlines()
                if "restarting it in" in line
            ]
            assert len(warnings) == 1, warnings
            assert "killed by SIGKILL" in warnings[0]["message"], warnings
            assert "Traceback" not in log.read_text()

            # Jobs still finish; the workers' job counts reach the server's /metrics.
            for _ in range(2):
                assert (await created_and_running(port, h)).status == pb.Operation.SUCCEEDED
            served = _served(log)
            assert served is not None and served["metrics"], log.read_text()[-2000:]
            text = await asyncio.to_thread(scrape, served["metrics"])
            assert jobs_succeeded(text, "create_service") >= 3, text[-3000:]
            worker_lines = [
                json.loads(line)
                for line in log.read_text().splitlines()
                if '"worker started"' in line
            ]
            assert {line["worker"] for line in worker_lines} == {1, 2}, worker_lines

            server.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(server.wait(), 4 * GRACE + 30) == 0, log.read_text()[
                -3000:
            ]
            for pid in first | restarted:
                assert not _alive(pid), f"worker {pid} outlived the server"
            text = log.read_text()
            assert "Traceback" not in text, text[-4000:]
            assert "Exception during reset" not in text, text[-4000:]
            assert await h.app.presence.live_workers() == 0


async def _live_workers(h: Harness, n: int) -> bool:
    return await h.app.presence.live_workers() == n


async def test_a_server_killed_outright_leaves_no_worker_behind(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    async with (
        running_harness(settings, tmp_path, workers=0) as h,
        serving(h, tmp_path) as (server, _port, log),
    ):
        await wait_until(lambda: len(worker_pids(server.pid)) == 1, timeout=60)
        workers = worker_pids(server.pid)
        server.kill()
        await server.wait()
        await wait_until(lambda: not any(_alive(pid) for pid in workers), timeout=30)
        await wait_until(lambda: _live_workers(h, 0), timeout=30)
        assert "Traceback" not in log.read_text()


async def test_in_process_mode_runs_the_workers_in_the_server(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    async with running_harness(settings, tmp_path, workers=0) as h:
        h.push_image()
        async with serving(h, tmp_path, "--worker-mode", "in-process") as (server, port, _log):
            assert (await created_and_running(port, h)).status == pb.Operation.SUCCEEDED
            assert worker_pids(server.pid) == set()
            assert await h.app.presence.live_workers() == 1
            server.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(server.wait(), 4 * GRACE + 30) == 0
