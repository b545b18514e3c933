"""The request path beside the gRPC stack's own ceiling, measured in the same run.

    .venv/bin/python bench/bench_requests.py [--quick] [--runs N] [--json report.json]
        [--profile describe|list|delete --profile-out DIR]

A real `servicecontrol serve` (against an embedded PostgreSQL started here, or the server
named by SERVICECONTROL_DATABASE_URL) answers a grpc.aio load generator running in its own
process. At 1, 16 and 64 concurrent callers, in the same run, it measures throughput,
p50 and p99 of:

  - the gRPC health check: no database, no authentication, the stack's ceiling;
  - DescribeService and ListServices (reads; target: >= 60 % of the ceiling's calls/s);
  - DeleteService (a mutation and its job; target: >= 40 % of the ceiling's calls/s);

and each RPC's p99 beside the health check's p99 at the same concurrency (target: within
3x). Server CPU per call is read from the server's process (user + system time over the
phase, divided by its calls); the server's RSS idle and after the load (target: idle under
150 MiB, flat under load). Figures are medians over the runs; each ratio is computed
within one run and the median of those ratios is reported.

The server runs with no in-process workers while it is measured: the services are
prepared by a separate `servicecontrol worker` process that is stopped before the load
starts, so jobs do not compete with requests here (their competition is measured by the
engine's benchmarks). --profile records a cProfile profile of the server under the
64-caller load of one RPC instead of the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from loadgen import Client, client_main  # noqa: E402

SERVICECONTROL = str(Path(sys.executable).parent / "servicecontrol")
CONCURRENCY = (1, 16, 64)
RPCS = ("health", "describe", "list", "delete")
READS = ("describe", "list")
TARGET_READ = 0.60
TARGET_MUTATION = 0.40
TARGET_P99 = 3.0
TARGET_IDLE_RSS_MIB = 150.0
MIB = 1024 * 1024


# ----------------------------------------------------------------------------- the client
# The load generator: a separate process (`--client`), one grpc.aio channel, N callers
# each sending its next call as soon as the previous one is answered. One JSON command in
# on stdin per phase, one JSON result out on stdout.


def _caller_of(channel: Any, cmd: dict[str, Any]) -> Any:
    """The one call a phase repeats: call(i) for its i-th call."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from servicecontrol.v1 import service_control_pb2 as api
    from servicecontrol.v1 import service_control_pb2_grpc as api_grpc

    stub = api_grpc.ServiceControlStub(channel)
    meta = (("authorization", f"Bearer {cmd.get('token', '')}"),)
    arns: list[str] = list(cmd.get("arns", []))
    rpc = cmd["rpc"]
    if rpc == "health":
        health = health_pb2_grpc.HealthStub(channel)
        return lambda i: health.Check(health_pb2.HealthCheckRequest())
    if rpc == "describe":
        return lambda i: stub.DescribeService(
            api.DescribeServiceRequest(service_arn=arns[i % len(arns)]), metadata=meta
        )
    if rpc == "list":
        return lambda i: stub.ListServices(api.ListServicesRequest(page_size=20), metadata=meta)
    if rpc == "delete":
        return lambda i: stub.DeleteService(
            api.DeleteServiceRequest(service_arn=arns[i]), metadata=meta
        )
    raise ValueError(rpc)


async def _client_phase(channel: Any, cmd: dict[str, Any]) -> dict[str, Any]:
    import grpc

    call = _caller_of(channel, cmd)
    count: int | None = cmd.get("count")
    deadline = time.perf_counter() + cmd.get("seconds", 0.0)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = iter(range(10**9))

    async def caller() -> None:
        while True:
            i = next(counter)
            if (count is not None and i >= count) or (
                count is None and time.perf_counter() >= deadline
            ):
                return
            t = time.perf_counter()
            try:
                await call(i)
            except grpc.aio.AioRpcError as exc:
                errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                continue
            latencies.append(time.perf_counter() - t)

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(cmd["callers"])))
    return {"elapsed": time.perf_counter() - started, "latencies": latencies, "errors": errors}


# ----------------------------------------------------------------------------- the server


def _env(url: str, data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    env.update(
        SERVICECONTROL_DATABASE_URL=url,
        SERVICECONTROL_DATA_DIR=str(data_dir),
        SERVICECONTROL_LOG_FORMAT="json",
        # Hundreds of mutations a second from one account: no rate limit, no quota.
        SERVICECONTROL_MUTATION_RATE_PER_SECOND="0",
        SERVICECONTROL_SERVICE_QUOTA="100000",
    )
    return env


def _cli(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [SERVICECONTROL, *args], env=env, capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"servicecontrol {' '.join(args)}: {result.stderr[-2000:]}")
    return result.stdout


def _new_key(env: dict[str, str], account: str) -> str:
    _cli(env, "accounts", "create", account)
    out = _cli(env, "keys", "create", "--account", account, "--role", "writer")
    for line in out.splitlines():
        if line.startswith("gRPC"):
            return line.split("Bearer", 1)[1].strip()
    raise RuntimeError(f"no token in: {out}")


class Server:
    def __init__(
        self, env: dict[str, str], log: Path, *extra: str, launcher: tuple[str, ...] = ()
    ) -> None:
        self.log = log.open("ab")
        self.proc = subprocess.Popen(
            [
                *launcher,
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
                *extra,
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

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


async def _prepare_services(
    target: str, token: str, prefix: str, count: int, image: str
) -> list[str]:
    """`count` services, created through the API and waited on until RUNNING."""
    import grpc

    from servicecontrol.v1 import resources_pb2 as pb
    from servicecontrol.v1 import service_control_pb2 as api
    from servicecontrol.v1 import service_control_pb2_grpc as api_grpc

    meta = (("authorization", f"Bearer {token}"),)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = api_grpc.ServiceControlStub(channel)
        semaphore = asyncio.Semaphore(16)

        async def one(i: int) -> str:
            async with semaphore:
                created = await stub.CreateService(
                    api.CreateServiceRequest(
                        service_name=f"{prefix}-{i:05d}",
                        source_configuration=pb.SourceConfiguration(
                            image_repository=pb.ImageRepository(image_identifier=image)
                        ),
                    ),
                    metadata=meta,
                )
                done = (pb.Operation.SUCCEEDED, pb.Operation.FAILED)
                op = None
                while op is None or op.status not in done:
                    waited = await stub.WaitOperation(
                        api.WaitOperationRequest(operation_id=created.operation_id),
                        metadata=meta,
                    )
                    op = waited.operation
                if op.status != pb.Operation.SUCCEEDED:
                    raise RuntimeError(f"create of {prefix}-{i} failed: {op}")
                return str(created.service.service_arn)

        return list(await asyncio.gather(*(one(i) for i in range(count))))


# ----------------------------------------------------------------------------- measuring


def _percentile(samples: list[float], q: float) -> float:
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _phase(
    client: Client, server: Any, rpc: str, callers: int, token: str, **cmd: Any
) -> dict[str, Any]:
    before = server.cpu_times()
    result = client.run(rpc=rpc, callers=callers, token=token, **cmd)
    after = server.cpu_times()
    lat = result["latencies"]
    calls = len(lat)
    cpu = (after.user - before.user) + (after.system - before.system)
    return {
        "calls": calls,
        "errors": result["errors"],
        "calls_per_s": calls / result["elapsed"],
        "p50_ms": _percentile(lat, 0.50) * 1000,
        "p99_ms": _percentile(lat, 0.99) * 1000,
        "server_cpu_ms_per_call": cpu * 1000 / calls if calls else float("nan"),
        "rss_mib": server.memory_info().rss / MIB,
    }


@dataclass
class Prepared:
    """What a pass over the request path starts from: the database (in `env`) migrated,
    a read account with `read_arns` RUNNING and a delete account with `delete_arns`
    RUNNING (shuffled), each account's key in `tokens`; no server running."""

    env: dict[str, str]
    tmp: Path
    tokens: dict[str, str]
    read_arns: list[str]
    delete_arns: list[str]


def _profile(args: argparse.Namespace, prepared: Prepared) -> dict[str, Any]:
    """The server restarted under cProfile, loaded by 64 callers of one RPC, stopped: its
    profile is written to --profile-out (read it with `python -m pstats`). cProfile counts
    CPU spent per function, which is what a loaded server is short of; its overhead slows
    the server several times, so the profile's calls/s are not the benchmark's."""
    env, tmp, tokens = prepared.env, prepared.tmp, prepared.tokens
    read_arns, delete_arns = prepared.read_arns, prepared.delete_arns
    out_dir: Path = args.profile_out
    out_dir.mkdir(parents=True, exist_ok=True)
    profile_file = out_dir / f"{args.profile}.prof"
    server = Server(
        env,
        tmp / "profiled.log",
        "--workers",
        "0",
        launcher=(sys.executable, "-m", "cProfile", "-o", str(profile_file)),
    )
    client = Client(__file__, f"127.0.0.1:{server.port}")
    try:
        if args.profile in READS:
            client.run(
                rpc=args.profile, callers=64, seconds=0.5, token=tokens["read"], arns=read_arns
            )
            result = client.run(
                rpc=args.profile, callers=64, seconds=8.0, token=tokens["read"], arns=read_arns
            )
        else:
            result = client.run(
                rpc="delete",
                callers=64,
                token=tokens["delete"],
                arns=delete_arns,
                count=len(delete_arns),
            )
    finally:
        client.close()
        server.stop()
    calls = len(result["latencies"])
    return {"profile": str(profile_file), "calls": calls, "calls_per_s": calls / result["elapsed"]}


def _one_run(
    client: Client,
    proc: Any,
    tokens: dict[str, str],
    read_arns: list[str],
    delete_arns: list[str],
    deletes: dict[int, int],
    seconds: float,
    warmup: float,
) -> dict[str, dict[str, Any]]:
    """One run: every RPC at every concurrency, interleaved so drift hits all alike.
    Consumes its deletes' services from the front of `delete_arns`."""
    one: dict[str, dict[str, Any]] = {rpc: {} for rpc in RPCS}
    read: dict[str, Any] = {"token": tokens["read"], "arns": read_arns}
    for c in CONCURRENCY:
        common = {"client": client, "server": proc, "callers": c}
        client.run(rpc="health", callers=c, seconds=warmup)
        client.run(rpc="describe", callers=c, seconds=warmup, **read)
        one["health"][str(c)] = _phase(**common, rpc="health", token="", seconds=seconds)
        one["describe"][str(c)] = _phase(**common, rpc="describe", seconds=seconds, **read)
        one["list"][str(c)] = _phase(**common, rpc="list", token=tokens["read"], seconds=seconds)
        batch = delete_arns[: deletes[c]]
        del delete_arns[: deletes[c]]
        one["delete"][str(c)] = _phase(
            **common, rpc="delete", token=tokens["delete"], arns=batch, count=len(batch)
        )
    return one


def run(
    args: argparse.Namespace,
    then: Callable[[Prepared], dict[str, Any]] | None = None,
    deletes_needed: int = 0,
) -> dict[str, Any]:
    """The benchmark; or, with `then`, only its preparation (with `deletes_needed`
    services to delete), handed to `then` once the preparing server has stopped."""
    import psutil

    quick: bool = args.quick
    runs: int = args.runs or (1 if quick else 3)
    seconds = 0.4 if quick else 3.0
    deletes = {1: 4, 16: 16, 64: 32} if quick else {1: 20, 16: 80, 64: 160}
    readers = 5 if quick else 20
    warmup = 0.2 if quick else 0.5

    tmp = Path(tempfile.mkdtemp(prefix="sc-bench-req-"))
    embedded = None
    url = os.environ.get("SERVICECONTROL_DATABASE_URL", "")
    if not url:
        from servicecontrol_server.adapters.postgres.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(tmp / "pg")
        embedded.start()
        url = embedded.application_url(f"bench_{uuid.uuid4().hex[:8]}")
    env = _env(url, tmp / "data")
    server = worker = client = None
    try:
        _cli(env, "migrate")
        # Two accounts: one whose few services are read, one whose services are deleted.
        suffix = random.randrange(10**6)
        read_token = _new_key(env, f"900000{suffix:06d}")
        delete_token = _new_key(env, f"910000{suffix:06d}")
        server = Server(env, tmp / "server.log", "--workers", "0")
        target = f"127.0.0.1:{server.port}"
        proc = psutil.Process(server.proc.pid)
        rss_idle = proc.memory_info().rss / MIB

        image = "bench-app:1"
        for token in (read_token, delete_token):
            _cli(env, "images", "push", "--sample", image, "--endpoint", target, "--api-key", token)
        total_deletes = runs * sum(deletes[c] for c in CONCURRENCY)
        if then is not None:
            total_deletes = deletes_needed
        worker = subprocess.Popen(
            [SERVICECONTROL, "worker", "--concurrency", "8"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(tmp / "worker.log").open("ab"),
        )
        t = time.perf_counter()
        read_arns = asyncio.run(_prepare_services(target, read_token, "read", readers, image))
        delete_arns = asyncio.run(
            _prepare_services(target, delete_token, "del", total_deletes, image)
        )
        prepare_s = time.perf_counter() - t
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        random.shuffle(delete_arns)
        rss_prepared = proc.memory_info().rss / MIB

        if then is not None:
            server.stop()
            tokens = {"read": read_token, "delete": delete_token}
            return then(Prepared(env, tmp, tokens, read_arns, delete_arns))
        tokens = {"read": read_token, "delete": delete_token}
        client = Client(__file__, target)
        per_run: list[dict[str, dict[str, dict[str, Any]]]] = []
        for r in range(runs):
            one = _one_run(client, proc, tokens, read_arns, delete_arns, deletes, seconds, warmup)
            per_run.append(one)
            print(f"run {r + 1}/{runs} done", file=sys.stderr, flush=True)
        rss_after = proc.memory_info().rss / MIB
        return _summarise(
            per_run,
            {
                "rss_idle_mib": rss_idle,
                "rss_prepared_mib": rss_prepared,
                "rss_after_load_mib": rss_after,
                "rss_peak_during_load_mib": max(
                    p["rss_mib"] for one in per_run for rpc in one.values() for p in rpc.values()
                ),
            },
            {
                "runs": runs,
                "seconds_per_phase": seconds,
                "deletes_per_phase": deletes,
                "services_prepared": readers + total_deletes,
                "prepare_seconds": prepare_s,
                "database": "embedded" if embedded is not None else "SERVICECONTROL_DATABASE_URL",
                "cpus": os.cpu_count(),
                "load_average_at_end": os.getloadavg(),
            },
        )
    finally:
        if client is not None:
            client.close()
        if worker is not None and worker.poll() is None:
            worker.kill()
            worker.wait()
        if server is not None:
            server.stop()
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _summarise(
    per_run: list[dict[str, dict[str, dict[str, Any]]]],
    memory: dict[str, float],
    setup: dict[str, Any],
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for rpc in RPCS:
        results[rpc] = {}
        for c in map(str, CONCURRENCY):
            phases = [one[rpc][c] for one in per_run]
            ceiling = [one["health"][c] for one in per_run]
            row = {
                k: _median([p[k] for p in phases])
                for k in ("calls_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_call")
            }
            row["errors"] = sum(sum(p["errors"].values()) for p in phases)
            if rpc != "health":
                target = TARGET_READ if rpc in READS else TARGET_MUTATION
                ratio = _median(
                    [
                        p["calls_per_s"] / h["calls_per_s"]
                        for p, h in zip(phases, ceiling, strict=True)
                    ]
                )
                p99_ratio = _median(
                    [p["p99_ms"] / h["p99_ms"] for p, h in zip(phases, ceiling, strict=True)]
                )
                row.update(
                    throughput_ratio=ratio,
                    throughput_target=target,
                    p99_ratio=p99_ratio,
                    p99_target=TARGET_P99,
                    meets_throughput=ratio >= target,
                    meets_p99=p99_ratio <= TARGET_P99,
                )
            results[rpc][c] = row
    memory["meets_idle_rss"] = memory["rss_idle_mib"] < TARGET_IDLE_RSS_MIB
    return {"setup": setup, "results": results, "memory": memory, "per_run": per_run}


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The report's lines for bench/run.py's table: each RPC's calls/s and p99 beside the
    health check's at the same concurrency (medians over the runs), and the idle RSS."""
    from common import Row

    names = {"describe": "DescribeService", "list": "ListServices", "delete": "DeleteService"}
    lines = []
    for rpc in ("describe", "list", "delete"):
        for c in map(str, CONCURRENCY):
            row, ceiling = report["results"][rpc][c], report["results"]["health"][c]
            target = TARGET_READ if rpc in READS else TARGET_MUTATION
            lines.append(
                Row(
                    "requests",
                    f"{names[rpc]} calls/s at {c} callers",
                    row["calls_per_s"],
                    "calls/s",
                    "gRPC health check",
                    ceiling["calls_per_s"],
                    target,
                ).as_dict()
            )
            lines.append(
                Row(
                    "requests",
                    f"{names[rpc]} p99 at {c} callers (ms)",
                    row["p99_ms"],
                    "ms",
                    "gRPC health check p99",
                    ceiling["p99_ms"],
                    TARGET_P99,
                    lower_is_better=True,
                ).as_dict()
            )
    lines.append(
        Row(
            "requests",
            "server RSS idle (MiB)",
            report["memory"]["rss_idle_mib"],
            "MiB",
            "the target's bound",
            TARGET_IDLE_RSS_MIB,
            1.0,
            lower_is_better=True,
        ).as_dict()
    )
    return lines


def table(report: dict[str, Any]) -> str:
    lines = [
        f"{'rpc':<9}{'callers':>8}{'calls/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'cpu ms/call':>12}{'x ceiling':>11}{'target':>8}{'p99 x':>8}{'target':>8}{'errors':>8}"
    ]
    for rpc, by_c in report["results"].items():
        for c, row in by_c.items():
            line = (
                f"{rpc:<9}{c:>8}{row['calls_per_s']:>10.0f}{row['p50_ms']:>9.2f}"
                f"{row['p99_ms']:>9.2f}{row['server_cpu_ms_per_call']:>12.2f}"
            )
            if "throughput_ratio" in row:
                ok = "" if row["meets_throughput"] else "!"
                ok99 = "" if row["meets_p99"] else "!"
                line += (
                    f"{row['throughput_ratio']:>10.2f}{ok:1}"
                    f"{'>=' + str(row['throughput_target']):>8}"
                    f"{row['p99_ratio']:>7.2f}{ok99:1}{'<=3.0':>8}"
                )
            else:
                line += f"{'(ceiling)':>11}{'':>8}{'':>8}{'':>8}"
            lines.append(line + f"{row['errors']:>8}")
    m = report["memory"]
    lines.append(
        f"server RSS: idle {m['rss_idle_mib']:.0f} MiB (target < {TARGET_IDLE_RSS_MIB:.0f}), "
        f"prepared {m['rss_prepared_mib']:.0f}, peak under load "
        f"{m['rss_peak_during_load_mib']:.0f}, after load {m['rss_after_load_mib']:.0f}"
    )
    lines.append("! marks a ratio that misses its target")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short phases, one run (smoke)")
    parser.add_argument("--runs", type=int, help="runs to take the median of (default 3)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument(
        "--profile",
        choices=("describe", "list", "delete"),
        help="profile the server under 64 callers",
    )
    parser.add_argument("--profile-out", type=Path, default=Path("."), help="profile directory")
    parser.add_argument("--client", metavar="TARGET", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(client_main(args.client, _client_phase))
        return
    if args.profile:
        profiled = run(
            args,
            then=lambda prepared: _profile(args, prepared),
            deletes_needed=400 if args.profile == "delete" else 0,
        )
        print(json.dumps(profiled))
        return
    report = run(args)
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
