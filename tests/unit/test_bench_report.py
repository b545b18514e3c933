"""bench/run.py --only: a run of some benchmarks keeps the others' recorded figures, each
still named with the run that measured it."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))
import run  # noqa: E402


def _report(started: str, load: list[float], *names: str, quick: bool = False) -> dict[str, Any]:
    machine = {
        "cpus": 2,
        "cpu_model": "EPYC",
        "memory_gib": 23.5,
        "python": "3.11.7",
        "platform": "Linux",
        "load_average_1_5_15": load,
    }
    return {
        "quick": quick,
        "started": started,
        "machine": machine,
        "machine_after": [9.0, 9.0, 9.0],
        "benchmarks": {name: {"rows": [], "notes": [f"{name} of {started}"]} for name in names},
    }


def test_a_partial_run_keeps_the_other_benchmarks_with_their_own_run() -> None:
    first = _report("day 1", [0.1, 0.1, 0.1], "engine", "scale", "requests")
    second = run.merged(_report("day 2", [0.2, 0.2, 0.2], "engine"), copy.deepcopy(first))
    assert set(second["benchmarks"]) == {"engine", "scale", "requests"}
    assert second["benchmarks"]["engine"]["notes"] == ["engine of day 2"]
    assert second["benchmarks"]["scale"]["notes"] == ["scale of day 1"]
    assert set(second["other_runs"]) == {"scale", "requests"}
    assert second["other_runs"]["scale"]["started"] == "day 1"
    header = run.figures_block(second, []).splitlines()[2]
    assert header.startswith("Run of day 2")
    assert "(engine)" in header
    assert "; scale from the run of day 1, load average [0.1, 0.1, 0.1] before" in header

    # A third run keeps what the second kept under the run that measured it, not the second.
    third = run.merged(_report("day 3", [0.3, 0.3, 0.3], "requests"), copy.deepcopy(second))
    assert third["other_runs"]["scale"]["started"] == "day 1"
    assert third["other_runs"]["engine"]["started"] == "day 2"
    assert "requests" not in third["other_runs"]
    assert third["benchmarks"]["requests"]["notes"] == ["requests of day 3"]


def test_a_full_run_or_a_quick_one_names_one_run() -> None:
    full = run.merged(
        _report("day 2", [0.2] * 3, "engine", "scale"), _report("day 1", [0.1] * 3, "scale")
    )
    assert "other_runs" not in full
    assert "from the run of" not in run.figures_block(full, [])
    quick = run.merged(
        _report("day 2", [0.2] * 3, "engine", quick=True), _report("day 1", [0.1] * 3, "scale")
    )
    assert set(quick["benchmarks"]) == {"engine"}
