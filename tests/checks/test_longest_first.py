"""The suite's longest tests start first (tests/conftest.py): every entry of LONGEST_FIRST
still names collected tests, and collection puts them first, in the listed order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import LONGEST_FIRST

ROOT = Path(__file__).resolve().parents[2]


def test_the_longest_tests_are_collected_first_in_the_listed_order() -> None:
    files = sorted({prefix.partition("::")[0] for prefix in LONGEST_FIRST})
    # A short file too, which must come after every listed test.
    files.append("tests/checks/test_longest_first.py")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", *files],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    ids = [line for line in result.stdout.splitlines() if "::" in line]

    def rank(nodeid: str) -> int:
        return next(
            (i for i, prefix in enumerate(LONGEST_FIRST) if nodeid.startswith(prefix)),
            len(LONGEST_FIRST),
        )

    ranks = [rank(nodeid) for nodeid in ids]
    assert set(range(len(LONGEST_FIRST))) <= set(ranks), "an entry names no collected test"
    assert ranks == sorted(ranks), ids
    assert ranks[-1] == len(LONGEST_FIRST)
