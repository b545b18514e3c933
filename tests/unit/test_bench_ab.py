"""bench/ab.py, the side-by-side comparison: its phases, the alternation of which side
goes first, the per-round ratios it reports, and the launcher of the other checkout's
server (run here with this tree's Python)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import ab  # noqa: E402


def test_phases_are_rpc_and_callers() -> None:
    assert ab.parse_phases("health:16, describe:1,delete:64") == [
        ab.Phase("health", 16),
        ab.Phase("describe", 1),
        ab.Phase("delete", 64),
    ]
    for bad in ("describe", "describe:", "describe:x", "get:16", "list:0", "list:1,list:1"):
        with pytest.raises(argparse.ArgumentTypeError):
            ab.parse_phases(bad)


def test_the_side_that_goes_first_alternates() -> None:
    firsts = [ab.order(r)[0] for r in range(4)]
    assert firsts == ["this", "base", "this", "base"]
    assert all(sorted(ab.order(r)) == sorted(ab.SIDES) for r in range(4))


def _m(calls: float, main: float) -> dict[str, float]:
    return {"calls_per_s": calls, "p99_ms": 50.0, "main_cpu_ms": main, "process_cpu_ms": main * 1.2}


def test_ratios_are_taken_within_each_round() -> None:
    # The machine drifts by 2x between rounds; this tree is 10 % cheaper in every round.
    samples = {
        "describe:16": {
            "this": [_m(110, 0.9), _m(55, 1.8), _m(220, 0.45)],
            "base": [_m(100, 1.0), _m(50, 2.0), _m(200, 0.5)],
        }
    }
    row = ab.summarise(samples)["describe:16"]
    assert row["rounds"] == 3
    assert row["this_over_base"]["main_cpu_ms"] == pytest.approx(0.9)
    assert row["this_over_base"]["calls_per_s"] == pytest.approx(1.1)
    assert row["this"]["calls_per_s"] == 110 and row["base"]["main_cpu_ms"] == 1.0
    printed = ab.table({"describe:16": row})
    assert "describe:16" in printed and "0.900" in printed and "1.100" in printed


def test_the_base_launcher_runs_the_checkout_s_own_cli() -> None:
    # As bench_requests.Server starts it: the Python, the launcher, the console script's
    # path (dropped), then the command's arguments.
    result = subprocess.run(
        [sys.executable, "-c", ab._SERVE_BASE, "servicecontrol", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "--listen" in result.stdout
