"""The benchmarks keep running: a quick pass of each in the suite, so a change that
breaks one fails here rather than on the day someone measures. Figures from a quick
pass on a shared machine mean nothing and are not checked against targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.timeout(420)
def test_the_delete_benchmark_runs_and_reports(tmp_path: Path) -> None:
    report_file = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "bench/bench_delete.py", "--quick", "--json", str(report_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads(report_file.read_text())
    for measure in ("reference_commit_ms", "delete_request_ms", "delete_to_deleted_ms"):
        assert report[measure]["median"] > 0, measure
    assert report["delete_to_deleted_ms"]["objects"] >= 20
    assert report["engine_noop_jobs_per_s"] > 0
    assert report["raw_skip_locked_jobs_per_s"] > 0


@pytest.mark.timeout(420)
def test_the_request_path_benchmark_runs_and_reports(tmp_path: Path) -> None:
    report_file = tmp_path / "requests.json"
    result = subprocess.run(
        [sys.executable, "bench/bench_requests.py", "--quick", "--json", str(report_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "x ceiling" in result.stdout
    report = json.loads(report_file.read_text())
    for rpc in ("health", "describe", "list", "delete"):
        for callers in ("1", "16", "64"):
            row = report["results"][rpc][callers]
            assert row["calls_per_s"] > 0, (rpc, callers)
            assert row["errors"] == 0, (rpc, callers)
            assert row["server_cpu_ms_per_call"] > 0, (rpc, callers)
            if rpc != "health":
                assert row["throughput_ratio"] > 0, (rpc, callers)
    assert report["memory"]["rss_idle_mib"] > 0
