"""SIGTERM under load: a `servicecontrol serve` process with workers, busy with calls and
with jobs stuck on a hung object store, drains its calls within the grace, finishes or
hands back every job (no lease left held), and exits 0; another worker then finishes
every acknowledged operation."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
from sqlalchemy import text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import service_control_pb2_grpc as api_grpc
from tests.support.blackhole import hanging_proxy
from tests.support.processes import SERVICECONTROL, environment
from tests.support.server import Harness, harness_settings, running_harness
from tests.support.waiting import wait_until

GRACE = 3.0
WORKERS = 4
# What a caller may see from a server that is going away: an answer, or "try again".
DRAINING = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
STUCK_IN_STORE = """
    select count(*) from jobs join operations using (operation_id)
    where jobs.state = 'running'
      and operations.current_step in ('copy_image', 'delete_image_copy', 'prune_image_copy')
      and operations.updated_at < now() - interval '1 second'
"""


async def scalar(h: Harness, sql: str) -> Any:
    async with h.app.engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


def create_request() -> api.CreateServiceRequest:
    return api.CreateServiceRequest(
        service_name=f"busy-{uuid.uuid4().hex[:10]}",
        source_configuration=pb.SourceConfiguration(
            image_repository=pb.ImageRepository(image_identifier="hello-web:1.0")
        ),
    )


async def test_sigterm_under_load_drains_hands_jobs_back_and_exits_0(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    with hanging_proxy(s3_server.endpoint) as proxy:
        through_proxy = SimpleNamespace(
            endpoint=proxy.endpoint,
            access_key=s3_server.access_key,
            secret_key=s3_server.secret_key,
        )
        settings = harness_settings(
            database_url, through_proxy, tmp_path, job_retry_window_seconds=600
        )
        # The in-process harness only makes keys, pushes the image and reads the tables.
        async with running_harness(settings, tmp_path, workers=0) as h:
            h.push_image()
            env = environment(
                settings,
                SERVICECONTROL_GRPC_LISTEN="127.0.0.1:0",
                SERVICECONTROL_AWS_LISTEN="",
                SERVICECONTROL_CONSOLE_LISTEN="",
                SERVICECONTROL_GRPC_GRACE_SECONDS=str(GRACE),
                SERVICECONTROL_WORKERS_IN_SERVER=str(WORKERS),
                # Longer than the grace: jobs stuck in the hung store outlast it and
                # must be handed back.
                SERVICECONTROL_OBJECT_STORE_CALL_TIMEOUT_SECONDS="60",
                SERVICECONTROL_JOB_RETRY_WINDOW_SECONDS="600",
            )
            log = tmp_path / "serve.log"
            with log.open("wb") as sink:
                server = await asyncio.create_subprocess_exec(
                    SERVICECONTROL, "serve", env=env, stdout=asyncio.subprocess.PIPE, stderr=sink
                )
            try:
                assert server.stdout is not None
                line = (await asyncio.wait_for(server.stdout.readline(), 60)).decode()
                assert line.startswith("SERVICECONTROL_READY port="), line
                port = int(line.strip().rpartition("=")[2])
                # The server's job workers run in a process of their own: up before the load.
                await wait_until(_workers_alive(h), timeout=60)
                acknowledged, outcomes, ended = await _load_then_sigterm(
                    h, server, port, proxy, log
                )
            finally:
                if server.returncode is None:
                    server.kill()
                    await server.wait()

            assert server.returncode == 0, log.read_text()[-3000:]
            # Calls drained within the grace; workers got the grace again, then handed
            # their jobs back: bounded well under a lease's expiry.
            assert ended <= 3 * GRACE + 10, ended
            assert not {c for c in outcomes if c is not None} - DRAINING, outcomes
            assert acknowledged, "no mutation was acknowledged before the signal"
            assert await scalar(h, "select count(*) from jobs where state = 'running'") == 0
            assert await scalar(h, "select count(*) from jobs where lease_token is not null") == 0
            assert "job interrupted by shutdown; lease released" in log.read_text()

            # Nothing acknowledged is lost: with the store back, a worker finishes it all.
            proxy.set_mode("pass")
            stop = asyncio.Event()
            tasks = h.app.background_tasks(stop, workers=4, role="after")
            try:
                for operation_id in acknowledged:
                    op = await h.wait(operation_id, timeout=60)
                    assert op.status == pb.Operation.SUCCEEDED, op
            finally:
                stop.set()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait_for(task, 20)


def _workers_alive(h: Harness) -> Any:
    async def alive() -> bool:
        return await h.app.presence.live_workers() > 0

    return alive


async def _load_then_sigterm(
    h: Harness, server: asyncio.subprocess.Process, port: int, proxy: Any, log: Path
) -> tuple[list[str], list[grpc.StatusCode | None], float]:
    """Callers create and read services without pause; the store hangs so that jobs are
    in flight; SIGTERM while it all runs. Returns the acknowledged operations, each
    failed call's code, and seconds from the signal to the exit."""
    acknowledged: list[str] = []
    outcomes: list[grpc.StatusCode | None] = []
    stopping = asyncio.Event()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = api_grpc.ServiceControlStub(channel)

        async def caller(creates: bool) -> None:
            while not stopping.is_set():
                try:
                    # Creates stop once the store hangs: with jobs stuck, the account's
                    # limits (quota, rate, backlog) would answer RESOURCE_EXHAUSTED.
                    if creates and proxy.mode == "pass":
                        made = await stub.CreateService(
                            create_request(), metadata=h.meta(), timeout=30
                        )
                        acknowledged.append(made.operation_id)
                    else:
                        await stub.ListServices(
                            api.ListServicesRequest(), metadata=h.meta(), timeout=30
                        )
                except grpc.aio.AioRpcError as exc:
                    outcomes.append(exc.code())
                    if exc.code() in DRAINING:
                        return

        callers = [asyncio.create_task(caller(i % 2 == 0)) for i in range(8)]
        await wait_until(lambda: len(acknowledged) >= 8, timeout=30)
        proxy.set_mode("hang")

        async def stuck_jobs() -> bool:
            # Every worker slot holds a job stuck in the hung store: it marked a store
            # step over a second ago (a copy of this image takes milliseconds) and has
            # not moved on. A running job past its store call, which finishes within the
            # grace, does not count.
            stuck = await scalar(h, STUCK_IN_STORE)
            return bool(stuck == WORKERS)

        await wait_until(stuck_jobs, timeout=30)
        signalled = time.monotonic()
        server.send_signal(signal.SIGTERM)
        await asyncio.wait_for(server.wait(), 3 * GRACE + 30)
        ended = time.monotonic() - signalled
        stopping.set()
        await asyncio.gather(*callers)
    return acknowledged, outcomes, ended
