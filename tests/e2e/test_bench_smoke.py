"""The benchmarks keep running: a quick pass of the whole suite (bench/run.py --quick), so
a change that breaks one fails here rather than on the day someone measures. Figures from
a quick pass on a shared machine mean nothing and are not checked against targets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1500)
def test_every_benchmark_runs_and_reports(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "benchmarks.json").read_text())
    engine = report["benchmarks"]["engine"]
    assert set(engine["series"]) >= {"engine", "raw batch 1", f"raw batch {engine['batch']}"}
    for series in engine["series"].values():
        assert set(series) == {"1", "2", "4"}
        assert all(rate > 0 for rate in series.values())
    # pgqueuer is the bench extra's: present, or said to be missing.
    assert "pgqueuer" in engine["series"] or any("pgqueuer" in n for n in engine["notes"])
    scale = report["benchmarks"]["scale"]
    for kind in ("local", "s3"):
        for mode in ("engine", "floor"):
            runs = scale["series"][f"{kind} {mode}"]
            assert all(r["seconds"] > 0 and r["objects"] == int(n) for n, r in runs.items())
    delete = report["benchmarks"]["delete"]
    assert delete["delete_to_deleted_ms"]["objects"] >= 20
    load = report["benchmarks"]["load"]
    assert load["modes"]["process"]["load"]["jobs_per_s"] > 0
    assert load["modes"]["process"]["memory"]["server_idle_mib"] > 0
    # Every delete job of the request-to-DELETED pass was timed, its store time taken off.
    overhead = delete["delete_job_overhead_ms"]
    assert overhead["samples"] >= 5 and overhead["median"] > 0
    growth = report["benchmarks"]["growth"]
    for phase in ("empty", "grown"):
        assert growth["figures"][phase]["engine_jobs_per_s"] > 0
        assert growth["figures"][phase]["delete_to_deleted_p50_ms"] > 0
    assert growth["churn"]["cycles"] > 0
    assert set(growth["churn"]["tables"]) >= {"jobs", "outbox", "operations", "services"}
    requests = report["benchmarks"]["requests"]
    for rpc in ("health", "describe", "list", "delete"):
        for callers in ("1", "16", "64"):
            row = requests["results"][rpc][callers]
            assert row["calls_per_s"] > 0, (rpc, callers)
            assert row["errors"] == 0, (rpc, callers)
            assert row["server_cpu_ms_per_call"] > 0, (rpc, callers)
            if rpc != "health":
                assert row["throughput_ratio"] > 0, (rpc, callers)
    assert requests["memory"]["rss_idle_mib"] > 0
    # Each RPC's throughput and p99 beside the ceiling's, at each concurrency, and the RSS.
    assert len(requests["rows"]) == 3 * 3 * 2 + 1
    rows = [row for bench in report["benchmarks"].values() for row in bench["rows"]]
    assert all(row["value"] > 0 for row in rows)
    # The table printed, and the document written beside the plots it links.
    assert "| engine |" in result.stdout
    assert "x ceiling" in result.stdout  # the request path's own table, CPU per call
    doc = (tmp_path / "benchmarks.md").read_text()
    assert "figures:start" in doc and "| scale |" in doc
    assert "| requests |" in doc
    images = ("bench-jobs-by-workers.png", "bench-delete-by-objects.png")
    for image in (*images, "bench-latency-by-callers.png"):
        assert (tmp_path / image).stat().st_size > 0
        assert image in doc
