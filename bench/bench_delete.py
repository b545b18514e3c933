"""Delete latency, each beside a reference measured in the same run on the same machine,
so the numbers mean something on any hardware.

    .venv/bin/python bench/bench_delete.py [--quick] [--json report.json]

Measures, against a real PostgreSQL ($SERVICECONTROL_DATABASE_URL when set, in a scratch
database created there and dropped after; else an embedded server of its own) and a real
S3-compatible test server:
  1. DeleteService request latency (RPC in, OPERATION_IN_PROGRESS out); reference: one
     single-row UPDATE commit over psycopg.
  2. Request-to-DELETED time of a service whose image copy has 20 objects, on an idle
     system; reference (the floor): the same objects deleted straight through the object
     store, plus one commit. Target: within 2x of the floor.
  3. The delete job's fixed overhead, from the same deletes: the handler's run (load,
     step markers, compute stop, progress saves, the outcome transaction with the job's
     fenced completion) minus the time spent inside object-store calls (a timing wrapper
     around the job's store). Target: at most 2 ms; reported beside one durable commit
     measured in the same run, the unit it is made of.
The job engine's throughput is bench_engine.py's; a copy's size, bench_scale.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from common import Row  # noqa: E402
from sqlalchemy import text  # noqa: E402

from servicecontrol.v1 import resources_pb2 as pb  # noqa: E402
from servicecontrol.v1 import service_control_pb2 as api  # noqa: E402
from servicecontrol_server.adapters.postgres.database import libpq_url  # noqa: E402

# The request-latency client: deletes each ARN read from stdin, waits for the operation
# to end, pauses so the next request meets an idle system, prints the latencies.
CLIENT = """
import json, sys, time
import grpc
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import service_control_pb2_grpc as api_grpc
target, authorization = sys.argv[1], sys.argv[2]
meta = (("authorization", authorization),)
stub = api_grpc.ServiceControlStub(grpc.insecure_channel(target))
samples = []
for arn in sys.stdin.read().split():
    t = time.perf_counter()
    resp = stub.DeleteService(api.DeleteServiceRequest(service_arn=arn), metadata=meta)
    samples.append(time.perf_counter() - t)
    assert resp.service.status == 6, resp
    stub.WaitOperation(api.WaitOperationRequest(operation_id=resp.operation_id), metadata=meta)
    time.sleep(0.05)
print(json.dumps(samples))
"""


# Request to DELETED at idle: at most this multiple of the floor.
E2E_TARGET_VS_FLOOR = 2.0
# A delete job's fixed overhead (object-store time excluded), in milliseconds.
JOB_OVERHEAD_TARGET_MS = 2.0


class _TimedStore:
    """The job's object store, adding up the time spent inside its calls (listings
    included, item by item as they are consumed). Deletes run one at a time here, so the
    total during one job's run is that job's object-store time."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        # run_blocking only hands a call (made through this wrapper) to the store's pool.
        if not callable(target) or name.startswith("_") or name == "run_blocking":
            return target

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                result = target(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t
            return self._items(result) if hasattr(result, "__next__") else result

        return timed

    def _items(self, items: Any) -> Any:
        while True:
            t = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                return
            finally:
                self.seconds += time.perf_counter() - t
            yield item


def _time_delete_job(handler: Any) -> list[float]:
    """Wraps the delete handler: each run appends (run time - object-store time)."""
    store = handler.store = _TimedStore(handler.store)
    run = handler.run
    overheads: list[float] = []

    async def timed_run(ctx: Any) -> None:
        store.seconds = 0.0
        t = time.perf_counter()
        try:
            await run(ctx)
        finally:
            overheads.append(time.perf_counter() - t - store.seconds)

    handler.run = timed_run
    return overheads


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def p95_ms(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[int(0.95 * (len(ordered) - 1))] * 1000


async def settled(engine: Any, timeout: float = 10.0) -> None:
    """Waits until no outbox row awaits the relay and no job is queued or running."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        async with engine.connect() as conn:
            busy = (
                await conn.execute(
                    text(
                        "SELECT (SELECT count(*) FROM outbox WHERE position IS NULL)"
                        " + (SELECT count(*) FROM jobs WHERE state <> 'failed')"
                    )
                )
            ).scalar_one()
        if busy == 0:
            return
        await asyncio.sleep(0.005)
    raise TimeoutError("the system did not settle")


async def reference_commit_latency(url: str, n: int) -> list[float]:
    async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS bench_ref (id int primary key, v int)")
        await conn.execute("INSERT INTO bench_ref VALUES (1, 0) ON CONFLICT DO NOTHING")
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            await conn.execute("UPDATE bench_ref SET v = v + 1 WHERE id = 1")
            samples.append(time.perf_counter() - t)
        return samples


async def run(quick: bool) -> dict[str, Any]:
    from common import postgres_server, scratch_database
    from moto.server import ThreadedMotoServer

    from servicecontrol_server.application.images import delete_image_copy

    n_latency = 10 if quick else 200
    n_e2e = 5 if quick else 30
    tmp = Path(tempfile.mkdtemp(prefix="sc-bench-"))
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    moto.start()
    host, port = moto.get_host_and_port()
    try:
        with postgres_server() as server, scratch_database(server) as url:
            return await _measure(url, host, port, tmp, n_latency, n_e2e, delete_image_copy)
    finally:
        moto.stop()


async def _measure(
    url: str, host: str, port: int, tmp: Path, n_latency: int, n_e2e: int, delete_image_copy: Any
) -> dict[str, Any]:
    from tests.support.server import harness_settings, running_harness

    class S3:
        endpoint = f"{host}:{port}"
        access_key = secret_key = "testing"

    # One account sends hundreds of mutations as fast as it can: no rate limit here.
    settings = harness_settings(
        url,
        S3,
        tmp,
        service_quota=10_000,
        job_poll_seconds=1.0,
        mutation_rate_per_second=0,
    )
    report: dict[str, Any] = {}
    ref = await reference_commit_latency(url, n_latency)
    report["reference_commit_ms"] = {"median": median_ms(ref), "p95": p95_ms(ref)}

    async with running_harness(settings, tmp, workers=2) as h:
        h.push_image("bench-app:1", layers=19, layer_size=512)  # config + 19 layers + manifest = 21
        # 1. request latency: services prepared RUNNING, then one DeleteService each.
        arns = []
        for i in range(n_latency):
            created = await h.create(f"lat-{i:04d}", image="bench-app:1")
            arns.append(created)
        for c in arns:
            await h.wait(c.operation_id)
        # The client is another process, as callers are: its CPU time is not the
        # server's latency. It paces requests so that each meets an idle system.
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENT,
            f"127.0.0.1:{h.port}",
            h.meta()[0][1],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        arn_lines = "".join(c.service.service_arn + "\n" for c in arns).encode()
        out, _ = await child.communicate(arn_lines)
        lat = json.loads(out)
        report["delete_request_ms"] = {
            "median": median_ms(lat),
            "p95": p95_ms(lat),
        }

        # 2. request to DELETED, 20-object image copy, idle system.
        # 3. the delete job's own time in each of those deletes, object-store time excluded.
        overheads = _time_delete_job(h.app.handlers["delete_service"])
        e2e: list[float] = []
        objects = 0
        for i in range(n_e2e):
            c = await h.create(f"e2e-{i:04d}", image="bench-app:1")
            await h.wait(c.operation_id)
            objects = sum(
                1
                for _ in h.app.store.list_objects(
                    settings.image_bucket, f"services/{c.service.service_id}/"
                )
            )
            t = time.perf_counter()
            resp = await h.stub.DeleteService(
                api.DeleteServiceRequest(service_arn=c.service.service_arn), metadata=h.meta()
            )
            op = await h.wait(resp.operation_id)
            e2e.append(time.perf_counter() - t)
            assert op.status == pb.Operation.SUCCEEDED
        # Reference: the same object work done directly, plus three commits.
        ref_e2e: list[float] = []
        for i in range(n_e2e):
            prefix = f"ref/{i}/"
            for k in range(objects):
                h.app.store.put_bytes(settings.image_bucket, f"{prefix}{k}", b"x" * 512)
            t = time.perf_counter()
            delete_image_copy(h.app.store, settings.image_bucket, prefix)
            await reference_commit_latency(url, 1)
            ref_e2e.append(time.perf_counter() - t)
        report["delete_to_deleted_ms"] = {
            "objects": objects,
            "median": median_ms(e2e),
            "p95": p95_ms(e2e),
            "reference_direct_median": median_ms(ref_e2e),
            "ratio_to_reference": median_ms(e2e) / median_ms(ref_e2e),
        }
        report["delete_job_overhead_ms"] = {
            "median": median_ms(overheads),
            "p95": p95_ms(overheads),
            "samples": len(overheads),
        }

    req = report["delete_request_ms"]["median"]
    ref = report["reference_commit_ms"]["median"]
    e2e = report["delete_to_deleted_ms"]
    report["rows"] = [
        Row(
            "delete",
            "DeleteService request latency, median (ms)",
            req,
            "ms",
            "one single-row UPDATE commit",
            ref,
            lower_is_better=True,
        ).as_dict(),
        Row(
            "delete",
            f"request to DELETED, {e2e['objects']}-object copy, idle, median (ms)",
            e2e["median"],
            "ms",
            "the same object deletes directly, plus one commit (floor)",
            e2e["reference_direct_median"],
            E2E_TARGET_VS_FLOOR,
            lower_is_better=True,
        ).as_dict(),
        Row(
            "delete",
            "delete job's fixed overhead (run minus object-store time), idle, median (ms)",
            report["delete_job_overhead_ms"]["median"],
            "ms",
            "target",
            JOB_OVERHEAD_TARGET_MS,
            1.0,
            lower_is_better=True,
        ).as_dict(),
        Row(
            "delete",
            "delete job's fixed overhead in durable commits (ms)",
            report["delete_job_overhead_ms"]["median"],
            "ms",
            "one single-row UPDATE commit",
            ref,
            lower_is_better=True,
        ).as_dict(),
    ]
    return report


def main() -> None:
    import logging

    # The S3 test server logs every request; the report is what matters here.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few samples (a smoke run)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    report = asyncio.run(run(args.quick))
    text_report = json.dumps(report, indent=2)
    print(text_report)
    if args.json:
        args.json.write_text(text_report)


if __name__ == "__main__":
    main()
