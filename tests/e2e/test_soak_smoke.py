"""A short soak in the suite: two servers and three workers under 32 callers and 50
event consumers, with every kind of fault injected at least once, and every invariant
checked at the end with no violation. `bench/soak.py --minutes 20` is the long run
(docs/reliability.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

FAULT_KINDS = (
    "SIGKILL",
    "object store refuse",
    "object store blackhole",
    "object store latency",
    "postgres restart (immediate)",
)


@pytest.mark.timeout(600)
def test_a_short_soak_under_faults_breaks_no_invariant(tmp_path: Path) -> None:
    report_file = tmp_path / "soak.json"
    # 45 s of load: every kind of fault starts within 27 s (the object store's three after
    # 3.6 s of quiet each, 5-8 s each; the PostgreSQL restart at 45 % of the run; a SIGKILL
    # every 3-7 s), and the rest leaves time for retained certificates to expire and be
    # purged (half a minute purged as few as 2 on a loaded machine).
    result = subprocess.run(
        [sys.executable, "bench/soak.py", "--minutes", "0.75", "--seed", "7"]
        + ["--json", str(report_file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=580,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(report_file.read_text())
    assert report["violations"] == 0, report["violation_details"]
    faults = report["faults"]
    for kind in FAULT_KINDS:
        assert any(name.startswith(kind) for name in faults), (kind, faults)
    assert len(report["invariants"]) >= 9
    assert all(row["checked"] > 0 for row in report["invariants"]), report["invariants"]
    assert report["mutations_acknowledged"] > 0 and report["events_checked"] > 0
