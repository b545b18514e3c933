"""Two versions of the server side by side: this tree's and another checkout's, on one
database at the same time, their load phases interleaved.

    .venv/bin/python bench/ab.py --base OTHER/.venv/bin/python [--rounds 6] [--seconds 2.5]
        [--phases health:16,describe:16,list:16,delete:16] [--json out.json] [--quick]

On these machines the speed of the same code drifts by ±20 % between phases a minute
apart, more than most changes worth making; consecutive runs of bench_requests.py cannot
tell such a change from the drift. Here both versions are measured within seconds of each
other, in every round, and the side that goes first alternates from round to round, so
the drift hits both alike. `--base` is the Python of the other checkout's environment (its
`servicecontrol_server` is the version compared against), typically the commit before a
change: `git worktree add ../base HEAD~1` and an environment installed there.

The preparation is bench_requests.py's (a migrated database, a read account's services,
a delete account's services, both RUNNING); both servers then run with no workers, each
loaded by a generator process of its own. Per phase and side: calls/s, p99 latency, and
CPU per call of the server's event-loop thread (the thread a Python gRPC server
saturates first) and of its whole process. Reported per phase: the medians over the
rounds of each side, and the median over the rounds of this tree's figure divided by the
base's in the same round. CPU times are counted in the kernel's 10 ms ticks: a phase
needs a few hundred milliseconds of CPU for a per-call figure good to a few per cent.
The base version must run on this tree's schema (migrations only ever add)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import bench_requests  # noqa: E402
from loadgen import Client  # noqa: E402

SIDES = ("this", "base")
DEFAULT_PHASES = "health:16,describe:16,list:16,delete:16"
# The other checkout's server, started by its own Python: its cli's main with the
# arguments bench_requests.Server gives (the first is the console script's path).
_SERVE_BASE = (
    "import sys; sys.argv = sys.argv[1:]; "
    "from servicecontrol_server.cli import main; sys.exit(main())"
)


@dataclass(frozen=True)
class Phase:
    rpc: str
    callers: int

    @property
    def name(self) -> str:
        return f"{self.rpc}:{self.callers}"


def parse_phases(text: str) -> list[Phase]:
    """`rpc:callers,...`, each rpc one of bench_requests.RPCS."""
    phases: list[Phase] = []
    for part in text.split(","):
        rpc, sep, callers = part.strip().partition(":")
        if rpc not in bench_requests.RPCS or not sep or not callers.isdigit():
            raise argparse.ArgumentTypeError(
                f"{part!r}: a phase is RPC:CALLERS, RPC one of {', '.join(bench_requests.RPCS)}"
            )
        if int(callers) < 1:
            raise argparse.ArgumentTypeError(f"{part!r}: at least one caller")
        phases.append(Phase(rpc, int(callers)))
    if len(set(phases)) != len(phases):
        raise argparse.ArgumentTypeError("a phase is named twice")
    return phases


def order(round_number: int) -> tuple[str, str]:
    """Which side goes first in a round: alternately this tree and the base."""
    return SIDES if round_number % 2 == 0 else (SIDES[1], SIDES[0])


def summarise(samples: dict[str, dict[str, list[dict[str, float]]]]) -> dict[str, Any]:
    """`samples[phase][side]`: one measurement per round, in round order (keys calls_per_s,
    p99_ms, main_cpu_ms, process_cpu_ms). Per phase: each side's medians, and the median of the
    per-round ratios this / base."""
    keys = ("calls_per_s", "p99_ms", "main_cpu_ms", "process_cpu_ms")
    out: dict[str, Any] = {}
    for phase, sides in samples.items():
        rounds = min(len(sides["this"]), len(sides["base"]))
        row: dict[str, Any] = {"rounds": rounds}
        for side in SIDES:
            row[side] = {k: statistics.median(m[k] for m in sides[side]) for k in keys}
        row["this_over_base"] = {
            k: statistics.median(
                sides["this"][r][k] / sides["base"][r][k]
                for r in range(rounds)
                if sides["base"][r][k] > 0
            )
            for k in keys
        }
        out[phase] = row
    return out


def table(summary: dict[str, Any]) -> str:
    lines = [
        "phase          side   calls/s  p99 ms  loop CPU ms/call  process CPU ms/call",
    ]
    for phase, row in summary.items():
        for side in SIDES:
            m = row[side]
            lines.append(
                f"{phase:14s} {side:5s} {m['calls_per_s']:8.0f}  {m['p99_ms']:6.1f}"
                f"  {m['main_cpu_ms']:16.3f}"
                f"  {m['process_cpu_ms']:19.3f}"
            )
        r = row["this_over_base"]
        lines.append(
            f"{'':14s} ratio {r['calls_per_s']:8.3f}  {r['p99_ms']:6.3f}"
            f"  {r['main_cpu_ms']:16.3f}"
            f"  {r['process_cpu_ms']:19.3f}   (median of {row['rounds']} rounds, this / base)"
        )
    return "\n".join(lines)


def _cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of the process's main thread (its event loop) and of the process."""
    import psutil

    threads = psutil.Process(pid).threads()
    main = next(t for t in threads if t.id == pid)
    return main.user_time + main.system_time, sum(t.user_time + t.system_time for t in threads)


def compare(
    prepared: bench_requests.Prepared,
    base_python: str,
    phases: list[Phase],
    rounds: int,
    seconds: float,
    deletes_per_phase: int,
) -> dict[str, Any]:
    env, tmp, tokens = prepared.env, prepared.tmp, prepared.tokens
    launchers = {"this": (), "base": (base_python, "-c", _SERVE_BASE)}
    servers: dict[str, bench_requests.Server] = {}
    clients: dict[str, Client] = {}
    samples: dict[str, dict[str, list[dict[str, float]]]] = {
        p.name: {side: [] for side in SIDES} for p in phases
    }
    try:
        for side in SIDES:
            servers[side] = bench_requests.Server(
                env, tmp / f"ab-{side}.log", "--workers", "0", launcher=launchers[side]
            )
            clients[side] = Client(bench_requests.__file__, f"127.0.0.1:{servers[side].port}")
        read = {"token": tokens["read"], "arns": prepared.read_arns}
        for side in SIDES:  # warm both: connections opened, statements prepared
            clients[side].run(rpc="describe", callers=16, seconds=min(1.0, seconds), **read)
        for r in range(rounds):
            for phase in phases:
                for side in order(r):
                    pid = servers[side].proc.pid
                    main0, all0 = _cpu(pid)
                    if phase.rpc == "delete":
                        batch = prepared.delete_arns[:deletes_per_phase]
                        del prepared.delete_arns[:deletes_per_phase]
                        result = clients[side].run(
                            rpc="delete",
                            callers=phase.callers,
                            token=tokens["delete"],
                            arns=batch,
                            count=len(batch),
                        )
                    else:
                        token = "" if phase.rpc == "health" else tokens["read"]
                        result = clients[side].run(
                            rpc=phase.rpc,
                            callers=phase.callers,
                            seconds=seconds,
                            token=token,
                            arns=prepared.read_arns,
                        )
                    main1, all1 = _cpu(pid)
                    calls = len(result["latencies"])
                    if calls == 0 or sum(result["errors"].values()):
                        raise RuntimeError(
                            f"{side} {phase.name}: {calls} calls, errors {result['errors']}; "
                            f"see {tmp / f'ab-{side}.log'}"
                        )
                    latencies = sorted(result["latencies"])
                    samples[phase.name][side].append(
                        {
                            "calls_per_s": calls / result["elapsed"],
                            "p99_ms": 1000 * latencies[min(calls - 1, int(calls * 0.99))],
                            "main_cpu_ms": 1000 * (main1 - main0) / calls,
                            "process_cpu_ms": 1000 * (all1 - all0) / calls,
                        }
                    )
            print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        for client in clients.values():
            client.close()
        for server in servers.values():
            server.stop()
    return {
        "phases": summarise(samples),
        "setup": {
            "base_python": base_python,
            "rounds": rounds,
            "seconds_per_phase": seconds,
            "deletes_per_phase": deletes_per_phase,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", required=True, help="the other checkout's Python")
    parser.add_argument("--phases", type=parse_phases, default=parse_phases(DEFAULT_PHASES))
    parser.add_argument("--rounds", type=int, help="rounds (default 6; 1 with --quick)")
    parser.add_argument("--seconds", type=float, help="seconds per read phase (default 2.5)")
    parser.add_argument("--deletes", type=int, help="deletes per delete phase (default 60)")
    parser.add_argument("--quick", action="store_true", help="a short smoke pass")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    rounds = args.rounds or (1 if args.quick else 6)
    seconds = args.seconds or (0.3 if args.quick else 2.5)
    deletes = args.deletes or (3 if args.quick else 60)
    if rounds < 1 or seconds <= 0 or deletes < 1:
        parser.error("--rounds, --seconds and --deletes must be positive")
    delete_phases = sum(1 for p in args.phases if p.rpc == "delete")
    preparation = argparse.Namespace(quick=args.quick, runs=None, profile=None)
    report = bench_requests.run(
        preparation,
        then=lambda prepared: compare(prepared, args.base, args.phases, rounds, seconds, deletes),
        deletes_needed=rounds * delete_phases * len(SIDES) * deletes,
    )
    print(table(report["phases"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
