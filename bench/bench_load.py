"""Jobs under request load, and the server's memory, beside the same jobs on an idle server.

    .venv/bin/python bench/bench_load.py [--quick] [--load-seconds N] [--json report.json]

A real `servicecontrol serve` (its own process; PostgreSQL from SERVICECONTROL_DATABASE_URL
in a scratch database, else an embedded server started here; the local-directory object
store in a temporary data dir) is measured twice in the same run: with its job workers in
processes of their own (the default) and with them on its event loop (`--worker-mode
in-process`, the old layout: the reference that shows the change). Each time:

  1. idle: C services created at once by a grpc.aio load generator in its own process,
     their jobs waited for in the database (no call to the server meanwhile), then the C
     services deleted at once and waited for the same way: 2C jobs, C queued at once;
  2. load: the same C callers loop create -> DescribeService polled without pause until
     RUNNING -> delete -> DescribeService polled until DELETED, for the load's duration:
     the same C jobs queued at once, now beside a request stream as fast as the server
     answers.

From the operations table (the server's own timestamps): jobs/s (operations ended per
second: idle over the whole phase, under load over the load's window) and create->RUNNING
and request->DELETED p50. Targets (workers in processes): jobs/s under load >= 0.5 of
idle; create->RUNNING p50 under load <= 3x idle. Sustained deletes/s under load reported.

Memory (workers in processes): the server's RSS and its worker processes' RSS, sampled
every second from start to stop. Idle is the median over the seconds before the load;
peak is the highest sample under load; the slope is the least-squares fit (MiB/min) over
the last half of the load. Target: idle < 150 MiB; "flat" when the slope over the last
half of a load of at least 5 minutes is below 1 MiB/min (shorter loads are reported, not
judged).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from loadgen import Client, client_main  # noqa: E402

SERVICECONTROL = str(Path(sys.executable).parent / "servicecontrol")
MIB = 1024 * 1024
CALLERS = 64
TARGET_JOBS_RATIO = 0.5
TARGET_CREATE_P50_RATIO = 3.0
TARGET_IDLE_RSS_MIB = 150.0
FLAT_SLOPE_MIB_PER_MIN = 1.0
FLAT_JUDGED_FROM_SECONDS = 300.0
IMAGE = "bench-app:1"
MODES = ("process", "in-process")


# ----------------------------------------------------------------------------- the client
# One process, one channel; one JSON command per phase on stdin, one JSON result on stdout.


class _Calls:
    """A caller's calls, counted by RPC; failures counted by RPC and code, returned None."""

    def __init__(self, stub: Any, meta: Any, stats: dict[str, Any]) -> None:
        self.stub, self.meta, self.stats = stub, meta, stats

    async def call(self, rpc: str, method: str, request: Any) -> Any:
        import grpc

        self.stats["calls"][rpc] = self.stats["calls"].get(rpc, 0) + 1
        try:
            return await getattr(self.stub, method)(request, metadata=self.meta)
        except grpc.aio.AioRpcError as exc:
            key = f"{rpc}:{exc.code().name}"
            self.stats["errors"][key] = self.stats["errors"].get(key, 0) + 1
            return None

    async def settle(self, arn: str, done: tuple[int, ...]) -> bool:
        """DescribeService back to back until the service's status is in `done`."""
        from servicecontrol.v1 import service_control_pb2 as api

        while True:
            got = await self.call(
                "describe", "DescribeService", api.DescribeServiceRequest(service_arn=arn)
            )
            if got is None or got.service.status in done:
                return got is not None


async def _cycle(calls: _Calls, name: str) -> bool:
    """Create a service, wait until RUNNING, delete it, wait until DELETED."""
    from servicecontrol.v1 import resources_pb2 as pb
    from servicecontrol.v1 import service_control_pb2 as api

    created = await calls.call(
        "create",
        "CreateService",
        api.CreateServiceRequest(
            service_name=name,
            source_configuration=pb.SourceConfiguration(
                image_repository=pb.ImageRepository(image_identifier=IMAGE)
            ),
        ),
    )
    if created is None:
        return False
    arn = created.service.service_arn
    running = (pb.Service.RUNNING, pb.Service.CREATE_FAILED)
    if not await calls.settle(arn, running):
        return False
    deleted = await calls.call("delete", "DeleteService", api.DeleteServiceRequest(service_arn=arn))
    if deleted is None:
        return False
    gone = (pb.Service.DELETED, pb.Service.DELETE_FAILED)
    return await calls.settle(arn, gone)


async def _client_phase(channel: Any, cmd: dict[str, Any]) -> dict[str, Any]:
    from servicecontrol.v1 import service_control_pb2_grpc as api_grpc

    stub = api_grpc.ServiceControlStub(channel)
    meta = (("authorization", f"Bearer {cmd['token']}"),)
    stats: dict[str, Any] = {"calls": {}, "errors": {}, "cycles": 0}
    calls = _Calls(stub, meta, stats)
    if cmd["phase"] in ("create", "delete"):
        return await _submit(calls, cmd, stats)
    deadline = time.monotonic() + cmd.get("seconds", 0.0)

    async def caller(i: int) -> None:
        n = 0
        while True:
            name = f"{cmd['prefix']}-{i:03d}-{n:05d}"
            n += 1
            if await _cycle(calls, name):
                stats["cycles"] += 1
            if time.monotonic() >= deadline:
                return

    started = time.monotonic()
    await asyncio.gather(*(caller(i) for i in range(cmd["callers"])))
    stats["elapsed"] = time.monotonic() - started
    return stats


async def _submit(calls: _Calls, cmd: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """The idle reference's requests: `callers` creates (or deletes of `arns`) sent at
    once, and nothing more; the benchmark waits for their jobs in the database."""
    from servicecontrol.v1 import resources_pb2 as pb
    from servicecontrol.v1 import service_control_pb2 as api

    async def create(i: int) -> str:
        created = await calls.call(
            "create",
            "CreateService",
            api.CreateServiceRequest(
                service_name=f"{cmd['prefix']}-{i:03d}",
                source_configuration=pb.SourceConfiguration(
                    image_repository=pb.ImageRepository(image_identifier=IMAGE)
                ),
            ),
        )
        return "" if created is None else str(created.service.service_arn)

    async def delete(arn: str) -> str:
        await calls.call("delete", "DeleteService", api.DeleteServiceRequest(service_arn=arn))
        return arn

    if cmd["phase"] == "create":
        arns = await asyncio.gather(*(create(i) for i in range(cmd["callers"])))
    else:
        arns = await asyncio.gather(*(delete(arn) for arn in cmd["arns"]))
    return {**stats, "arns": [a for a in arns if a]}


# ----------------------------------------------------------------------------- the server


class Server:
    """`servicecontrol serve` with its workers in `mode`, its RSS (and its worker
    processes') sampled every second while it runs."""

    def __init__(self, env: dict[str, str], log: Path, mode: str) -> None:
        import psutil

        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                SERVICECONTROL,
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--aws-listen",
                "",
                "--metrics-listen",
                "",
                "--console",
                "",
                "--no-migrate",
                "--worker-mode",
                mode,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("SERVICECONTROL_READY"):
            self.stop()
            raise RuntimeError(f"the server did not start; see {log}")
        self.port = int(line.split("port=")[1])
        self.ps = psutil.Process(self.proc.pid)
        self.samples: list[tuple[float, float, float]] = []  # (time, server MiB, workers MiB)
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def workers(self) -> list[Any]:
        import psutil

        with contextlib.suppress(psutil.Error):
            return list(self.ps.children())
        return []

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                server = self.ps.memory_info().rss / MIB
                workers = 0.0
                for child in self.workers():
                    with contextlib.suppress(psutil.Error):
                        workers += child.memory_info().rss / MIB
                self.samples.append((time.monotonic(), server, workers))
            self._stop.wait(1.0)

    def wait_for_workers(self, mode: str, timeout: float = 120) -> None:
        """In process mode: until the worker process has said it is ready."""
        if mode != "process":
            return
        deadline = time.monotonic() + timeout
        log = Path(self.log.name)
        while b'"job worker started"' not in log.read_bytes():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no worker process started; see {log}")
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop_sampling()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def _stop_sampling(self) -> None:
        if hasattr(self, "_stop"):
            self._stop.set()
            self._sampler.join(5)


def _env(url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    env.update(
        SERVICECONTROL_DATABASE_URL=url,
        SERVICECONTROL_DATA_DIR=str(data_dir),
        SERVICECONTROL_LOG_FORMAT="json",
        # Hundreds of mutations a second from one account: no rate limit, quota or cap.
        SERVICECONTROL_MUTATION_RATE_PER_SECOND="0",
        SERVICECONTROL_SERVICE_QUOTA="1000000",
        SERVICECONTROL_MAX_READY_JOBS="1000000",
    )
    return env


async def _prepare(url: str, data_dir: Path, accounts: list[str]) -> dict[str, str]:
    """A writer key per account, and the sample image in the source registry."""
    from servicecontrol_server.adapters.postgres.database import create_engine
    from servicecontrol_server.application.images import push_docker_archive
    from servicecontrol_server.application.sample_image import build_docker_archive
    from servicecontrol_server.bootstrap import ensure_buckets, identity, object_store
    from servicecontrol_server.domain.identity import Role
    from servicecontrol_server.settings import Settings

    settings = Settings(database_url=url, data_dir=data_dir)
    engine = create_engine(url, pool_size=2)
    tokens = {}
    try:
        ident = identity(engine, settings)
        for account in accounts:
            await ident.create_account(account)
            tokens[account] = (await ident.create_key(account, Role.WRITER)).token
    finally:
        await engine.dispose()
    store = object_store(settings)
    ensure_buckets(store, settings)
    archive = build_docker_archive(
        data_dir / "sample.tar", layers=2, layer_size=4096, legacy=False, repo_tag=IMAGE
    )
    push_docker_archive(store, settings.source_bucket, archive, IMAGE)
    return tokens


# ----------------------------------------------------------------------------- measuring


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def _operations(url: str, account: str, since: float) -> list[tuple[str, float, float | None]]:
    """(type, started, ended) of the account's operations started since `since`."""
    import psycopg

    from servicecontrol_server.adapters.postgres.database import libpq_url

    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT type, extract(epoch FROM started_at), extract(epoch FROM ended_at)"
            " FROM operations WHERE account_id = %s AND started_at >= %s",
            (account, _utc(since)),
        ).fetchall()
    return [(t, float(s), None if e is None else float(e)) for t, s, e in rows]


def _wait_settled(url: str, account: str, since: float, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while any(e is None for _, _, e in _operations(url, account, since)):
        if time.monotonic() > deadline:
            raise RuntimeError("operations did not end")
        time.sleep(0.2)


def _p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _summarise_ops(
    ops: list[tuple[str, float, float | None]], window: tuple[float, float] | None
) -> dict[str, Any]:
    """Jobs/s (ended per second: in `window`, or over the whole span), p50 durations."""
    ended = [(t, s, e) for t, s, e in ops if e is not None]
    if window is None:
        start = min(s for _, s, _ in ended)
        end = max(e for _, _, e in ended)
        in_window = ended
    else:
        start, end = window
        in_window = [(t, s, e) for t, s, e in ended if start <= e <= end]
    span = max(end - start, 1e-6)
    creates = [e - s for t, s, e in ended if "CREATE" in t.upper()]
    deletes = [e - s for t, s, e in ended if "DELETE" in t.upper()]
    return {
        "operations": len(ended),
        "jobs_per_s": len(in_window) / span,
        "deletes_per_s": sum(1 for t, _, _ in in_window if "DELETE" in t.upper()) / span,
        "create_to_running_p50_s": _p50(creates),
        "request_to_deleted_p50_s": _p50(deletes),
        "window_s": span,
    }


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope, per minute."""
    if len(points) < 3:
        return float("nan")
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    if den == 0:
        return float("nan")
    return 60.0 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den


def _memory(server: Server, idle: tuple[float, float], load: tuple[float, float]) -> dict[str, Any]:
    def between(a: float, b: float, i: int) -> list[tuple[float, float]]:
        return [(s[0], s[i]) for s in server.samples if a <= s[0] <= b]

    # At rest: the samples between the idle jobs and the load, else the last one before it.
    before = [s for s in server.samples if s[0] <= idle[1]] or server.samples[:1]
    idle_server = [v for _, v in between(*idle, 1)] or [before[-1][1]]
    idle_workers = [v for _, v in between(*idle, 2)] or [before[-1][2]]
    half = (load[0] + load[1]) / 2
    load_server = between(*load, 1)
    load_workers = between(*load, 2)
    seconds = load[1] - load[0]
    slope = _slope(between(half, load[1], 1))
    return {
        "server_idle_mib": statistics.median(idle_server),
        "server_peak_mib": max((v for _, v in load_server), default=float("nan")),
        "server_slope_mib_per_min": slope,
        "workers_idle_mib": statistics.median(idle_workers),
        "workers_peak_mib": max((v for _, v in load_workers), default=float("nan")),
        "workers_slope_mib_per_min": _slope(between(half, load[1], 2)),
        "load_seconds": seconds,
        "flat_rule": f"slope over the last half of the load < {FLAT_SLOPE_MIB_PER_MIN} MiB/min,"
        f" judged when the load lasts >= {FLAT_JUDGED_FROM_SECONDS:.0f} s",
        "flat": (slope < FLAT_SLOPE_MIB_PER_MIN) if seconds >= FLAT_JUDGED_FROM_SECONDS else None,
        "samples": [
            (round(t - server.samples[0][0], 1), round(s, 1), round(w, 1))
            for t, s, w in server.samples
        ],
    }


def _phase(
    client: Client, url: str, account: str, **command: Any
) -> tuple[dict[str, Any], tuple[float, float], tuple[float, float]]:
    """One command to the load generator (a create, delete or load phase), then every
    operation started since waited for in the database: the generator's result, and the
    span of its calls in wall-clock seconds (the operations table's clock) and in
    monotonic seconds (the memory samples')."""
    wall, mono = time.time(), time.monotonic()
    result = client.run(**command)
    spans = (wall, time.time()), (mono, time.monotonic())
    _wait_settled(url, account, wall)
    return result, *spans


def _measure_mode(
    url: str,
    env: dict[str, str],
    tmp: Path,
    mode: str,
    token: str,
    account: str,
    callers: int,
    load_seconds: float,
    rest: float,
) -> dict[str, Any]:
    server = Server(env, tmp / f"server-{mode}.log", mode)
    client = None
    try:
        server.wait_for_workers(mode)
        client = Client(__file__, f"127.0.0.1:{server.port}")
        # The idle reference: the same C jobs queued at once (C creates, then C deletes),
        # waited for in the database, with no call to the server meanwhile.
        made, (idle_started, _), _ = _phase(
            client,
            url,
            account,
            phase="create",
            callers=callers,
            token=token,
            prefix=f"idle-{mode}",
        )
        idle_result, _, _ = _phase(
            client, url, account, phase="delete", arns=made["arns"], token=token
        )
        idle_ops = _operations(url, account, idle_started)
        # The server at rest after serving the idle jobs: its idle memory.
        at_rest = time.monotonic()
        time.sleep(rest)
        idle_window = (at_rest, time.monotonic())
        load_result, load_window, load_mono = _phase(
            client,
            url,
            account,
            phase="load",
            callers=callers,
            token=token,
            prefix=f"load-{mode}",
            seconds=load_seconds,
        )
        load_ops = _operations(url, account, load_window[0])
        return {
            "idle": {**_summarise_ops(idle_ops, None), "client": idle_result},
            "load": {
                **_summarise_ops(load_ops, load_window),
                "client": load_result,
                "calls_per_s": sum(load_result["calls"].values()) / load_result["elapsed"],
            },
            "memory": _memory(server, idle_window, load_mono),
        }
    finally:
        if client is not None:
            client.close()
        server.stop()


def run(quick: bool, load_seconds: float | None = None) -> dict[str, Any]:
    from common import Row, postgres_server, scratch_database

    # The quick pass (the suite's smoke, ~20 s of wall time): 4 callers, a 1.5 s load,
    # the default layout only; the in-process reference is the full run's.
    callers = 4 if quick else CALLERS
    process_load = load_seconds or (1.5 if quick else 300.0)
    reference_load = min(process_load, 60.0)
    modes = ("process",) if quick else MODES
    tmp = Path(tempfile.mkdtemp(prefix="sc-bench-load-"))
    suffix = uuid.uuid4().int % 10**6
    accounts = {mode: f"{920000 + i}{suffix:06d}" for i, mode in enumerate(MODES)}
    report: dict[str, Any] = {
        "callers": callers,
        "load_seconds": {"process": process_load, "in-process": reference_load},
        "quick": quick,
        "modes": {},
    }
    with postgres_server() as pg, scratch_database(pg) as url:
        data_dir = tmp / "data"
        data_dir.mkdir()
        tokens = asyncio.run(_prepare(url, data_dir, list(accounts.values())))
        env = _env(url, data_dir)
        for mode in modes:
            seconds = process_load if mode == "process" else reference_load
            report["modes"][mode] = _measure_mode(
                url,
                env,
                tmp,
                mode,
                tokens[accounts[mode]],
                accounts[mode],
                callers,
                seconds,
                rest=0.5 if quick else 2.0,
            )
            print(f"load: {mode} done", file=sys.stderr, flush=True)
    report["load_average_at_end"] = list(os.getloadavg())
    report["rows"] = _rows(report, Row)
    report["notes"] = _notes(report)
    return report


def _rows(report: dict[str, Any], Row: Any) -> list[dict[str, Any]]:
    """Each measure under load beside the same measure idle (the idle memory beside its
    bound): jobs/s and create->RUNNING p50 for each mode (judged for workers in
    processes), then the default layout's deletes and memory."""
    callers = report["callers"]

    def under_load(
        m: dict[str, Any], measure: str, key: str, unit: str, target: float | None, lower: bool
    ) -> dict[str, Any]:
        name = "the same jobs, idle" if key == "jobs_per_s" else "idle"
        load, idle = m["load"][key], m["idle"][key]
        row = Row("load", measure, load, unit, name, idle, target, lower_is_better=lower)
        return dict(row.as_dict())

    rows = []
    for mode, m in report["modes"].items():
        label = "workers in processes" if mode == "process" else "in-process workers (before)"
        judged = mode == "process"
        rows += [
            under_load(
                m,
                f"jobs/s under {callers} callers, {label}",
                "jobs_per_s",
                "jobs/s",
                TARGET_JOBS_RATIO if judged else None,
                lower=False,
            ),
            under_load(
                m,
                f"create to RUNNING p50 under load, {label} (s)",
                "create_to_running_p50_s",
                "s",
                TARGET_CREATE_P50_RATIO if judged else None,
                lower=True,
            ),
        ]
    p = report["modes"]["process"]
    mem = p["memory"]
    rows += [
        under_load(
            p,
            f"sustained deletes/s (request to DELETED) under {callers} callers",
            "deletes_per_s",
            "deletes/s",
            None,
            lower=False,
        ),
        under_load(
            p,
            "request to DELETED p50 under load (s)",
            "request_to_deleted_p50_s",
            "s",
            None,
            lower=True,
        ),
    ]
    peak = f"server RSS peak under load over {mem['load_seconds']:.0f} s (MiB)"
    memory: list[tuple[str, float, str, float, float | None]] = [
        (
            "server RSS idle (MiB), workers in processes",
            mem["server_idle_mib"],
            "the target's bound",
            TARGET_IDLE_RSS_MIB,
            1.0,
        ),
        (peak, mem["server_peak_mib"], "idle", mem["server_idle_mib"], None),
    ]
    for measure, value, name, reference, target in memory:
        row = Row("load", measure, value, "MiB", name, reference, target, lower_is_better=True)
        rows.append(row.as_dict())
    return rows


def _notes(report: dict[str, Any]) -> list[str]:
    mem = report["modes"]["process"]["memory"]
    flat = {True: "flat", False: "NOT flat", None: "not judged (load shorter than 5 min)"}
    return [
        f"server RSS slope over the last half of the load: {mem['server_slope_mib_per_min']:.2f}"
        f" MiB/min ({flat[mem['flat']]}; rule: {mem['flat_rule']})",
        f"worker process RSS: idle {mem['workers_idle_mib']:.0f} MiB, peak"
        f" {mem['workers_peak_mib']:.0f} MiB, slope {mem['workers_slope_mib_per_min']:.2f}"
        " MiB/min",
        "request calls/s under load: "
        + ", ".join(
            f"{mode} {m['load']['calls_per_s']:.0f}" for mode, m in report["modes"].items()
        ),
    ]


def table(report: dict[str, Any]) -> str:
    lines = [f"{'measure':<70}{'value':>10}{'reference':>11}{'ratio':>8}{'target':>9}"]
    for row in report["rows"]:
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}"
        sign = "<=" if row["lower_is_better"] else ">="
        target = "" if row["target"] is None else f"{sign}{row['target']:g}"
        miss = "!" if row["meets_target"] is False else ""
        ref = "" if row["reference"] is None else f"{row['reference']:.2f}"
        lines.append(
            f"{row['measure'][:70]:<70}{row['value']:>10.2f}{ref:>11}{ratio:>8}{target:>9}{miss}"
        )
    lines += [f"note: {n}" for n in report["notes"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="4 callers, a 1.5 s load, workers in processes only (smoke)",
    )
    parser.add_argument("--load-seconds", type=float, help="the load's length (default 300)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--client", metavar="TARGET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(client_main(args.client, _client_phase))
        return
    report = run(args.quick, args.load_seconds)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
