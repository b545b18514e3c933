"""Request latency with many idle WatchEvents streams open, beside the same latency with
none, measured in the same run against the same server process.

    .venv/bin/python bench/bench_watch.py [--streams 1000] [--samples 300] [--json out.json]

A `servicecontrol serve` process on an embedded PostgreSQL of the benchmark's own and a
local-directory object store; 20 services exist. Phase one: ListServices p50/p99 with no
stream open. Phase two: the same with `--streams` WatchEvents streams open and idle (one
event is then written and must reach every stream, proving they are live). The report is
the ratio of the two; with one reader of the event log per process it stays near 1."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
import psycopg  # noqa: E402

from servicecontrol.v1 import resources_pb2 as pb  # noqa: E402
from servicecontrol.v1 import service_control_pb2 as api  # noqa: E402
from servicecontrol.v1 import service_control_pb2_grpc as api_grpc  # noqa: E402
from servicecontrol_server.adapters.postgres.database import libpq_url, with_database  # noqa: E402
from servicecontrol_server.adapters.postgres.embedded import EmbeddedPostgres  # noqa: E402
from servicecontrol_server.adapters.postgres.migrate import upgrade_to_head  # noqa: E402
from servicecontrol_server.bootstrap import build  # noqa: E402
from servicecontrol_server.domain.identity import Role  # noqa: E402
from servicecontrol_server.settings import Settings  # noqa: E402

ACCOUNT = "100000000001"
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def list_latencies(
    stub: api_grpc.ServiceControlStub, meta: Any, samples: int
) -> dict[str, float]:
    took: list[float] = []
    for _ in range(samples):
        start = time.perf_counter()
        await stub.ListServices(api.ListServicesRequest(page_size=20), metadata=meta)
        took.append(time.perf_counter() - start)
    return {
        "p50_ms": round(statistics.median(took) * 1000, 2),
        "p99_ms": round(percentile(took, 0.99), 2),
    }


async def run(streams: int, samples: int, workdir: Path) -> dict[str, Any]:
    pg = EmbeddedPostgres(workdir / "pgdata")
    pg.start()
    proc: asyncio.subprocess.Process | None = None
    try:
        admin = pg.url("postgres")
        with psycopg.connect(libpq_url(admin), autocommit=True) as conn:
            conn.execute('CREATE DATABASE "bench"')
        url = with_database(admin, "bench")
        upgrade_to_head(url)
        settings = Settings(database_url=url, data_dir=workdir / "data", default_account=ACCOUNT)
        app = await build(settings, url, migrate=False)
        try:
            await app.identity.create_account(ACCOUNT)
            token = (await app.identity.create_key(ACCOUNT, Role.WRITER)).token
        finally:
            await app.close()
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
        env.update(
            {
                "SERVICECONTROL_DATABASE_URL": url,
                "SERVICECONTROL_DATA_DIR": str(workdir / "data"),
                "SERVICECONTROL_DEFAULT_ACCOUNT": ACCOUNT,
                "SERVICECONTROL_AWS_LISTEN": "",
                "SERVICECONTROL_CONSOLE_LISTEN": "",
                "SERVICECONTROL_METRICS_LISTEN": "",
                "SERVICECONTROL_LOG_FORMAT": "json",
                "SERVICECONTROL_MUTATION_RATE_PER_SECOND": "0",
                "SERVICECONTROL_WATCH_STREAMS_PER_ACCOUNT": str(streams + 10),
                "SERVICECONTROL_WATCH_STREAMS_PER_SERVER": str(streams + 10),
                "GRPC_VERBOSITY": "NONE",
            }
        )
        with (workdir / "server.log").open("ab") as sink:
            proc = await asyncio.create_subprocess_exec(
                str(BIN / "servicecontrol"),
                "serve",
                "--workers",
                "2",
                "--listen",
                f"127.0.0.1:{port}",
                env=env,
                stdout=asyncio.subprocess.PIPE,
                stderr=sink,
            )
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 120)
        assert line.startswith(b"SERVICECONTROL_READY"), line
        meta = (("authorization", f"Bearer {token}"),)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stub = api_grpc.ServiceControlStub(channel)
        operations = []
        for i in range(20):
            created = await stub.CreateService(
                api.CreateServiceRequest(
                    service_name=f"bench-{i}",
                    source_configuration=pb.SourceConfiguration(
                        image_repository=pb.ImageRepository(image_identifier="hello-web:1.0")
                    ),
                ),
                metadata=meta,
            )
            operations.append(created.operation_id)
        # Measured on a quiet server: every create has finished.
        for operation_id in operations:
            await stub.WaitOperation(
                api.WaitOperationRequest(operation_id=operation_id), metadata=meta
            )
        await list_latencies(stub, meta, 20)  # warm up
        idle = await list_latencies(stub, meta, samples)

        with_streams = await with_idle_streams(stub, meta, port, url, streams, samples)
        # The baseline again, after the streams closed: drift of a shared machine shows
        # as a difference between the two baselines.
        after = await list_latencies(stub, meta, samples)
        baseline = {
            "p50_ms": round((idle["p50_ms"] + after["p50_ms"]) / 2, 2),
            "p99_ms": round((idle["p99_ms"] + after["p99_ms"]) / 2, 2),
        }
        for c in [channel]:
            await c.close()
        return {
            "streams": streams,
            "samples": samples,
            "list_services_no_streams_before": idle,
            "list_services_with_idle_streams": with_streams,
            "list_services_no_streams_after": after,
            "p50_ratio": round(with_streams["p50_ms"] / baseline["p50_ms"], 2),
            "p99_ratio": round(with_streams["p99_ms"] / baseline["p99_ms"], 2),
            "every_stream_received_the_next_event": True,
        }
    finally:
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        pg.stop()


async def with_idle_streams(
    stub: api_grpc.ServiceControlStub, meta: Any, port: int, url: str, streams: int, samples: int
) -> dict[str, float]:
    """ListServices latency with `streams` idle WatchEvents streams open."""
    # Many streams over a few channels, as many clients would open them. Each starts
    # one event back, so its first message proves it open; then they sit idle.
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _ in range(10)]
    cursor = max(await event_head(url) - 1, 0)
    counts = [0] * streams
    calls = []

    async def follow(k: int, call: Any) -> None:
        async for _ in call:
            counts[k] += 1

    tasks = []
    for k in range(streams):
        stream_stub = api_grpc.ServiceControlStub(channels[k % len(channels)])
        call = stream_stub.WatchEvents(api.WatchEventsRequest(cursor=str(cursor)), metadata=meta)
        calls.append(call)
        tasks.append(asyncio.create_task(follow(k, call)))
    await until(lambda: all(counts), "every stream open")
    opened = list(counts)
    with_streams = await list_latencies(stub, meta, samples)
    # Proof that they were live all along: the next event reaches every stream.
    await stub.CreateService(
        api.CreateServiceRequest(
            service_name="bench-last",
            source_configuration=pb.SourceConfiguration(
                image_repository=pb.ImageRepository(image_identifier="hello-web:1.0")
            ),
        ),
        metadata=meta,
    )
    await until(lambda: all(c > o for c, o in zip(counts, opened, strict=True)), "delivery")
    for call in calls:
        call.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in channels:
        await c.close()
    return with_streams


async def event_head(url: str) -> int:
    async with await psycopg.AsyncConnection.connect(libpq_url(url)) as conn:
        cur = await conn.execute("SELECT coalesce(max(position), 0) FROM outbox")
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def until(predicate: Any, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="servicecontrol-bench-watch-"))
    workdir.chmod(0o755)
    try:
        report = asyncio.run(run(args.streams, args.samples, workdir))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
