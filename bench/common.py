"""What every benchmark shares: a PostgreSQL to measure on, medians, the machine's
description and the report rows (a figure, its reference and the ratio's target)."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from servicecontrol_server.adapters.postgres.database import libpq_url, with_database  # noqa: E402

# Where the benchmarks run when set: a PostgreSQL server on which the user may create
# databases. Each benchmark creates its own scratch database there and drops it after.
# Unset, an embedded server of the benchmark's own is started in a temporary directory.
DATABASE_URL_ENV = "SERVICECONTROL_DATABASE_URL"


@dataclass
class Row:
    """One line of the report: `value` beside `reference`; `target` is the least ratio
    value/reference that passes (or, with `lower_is_better`, the most)."""

    bench: str
    measure: str
    value: float
    unit: str
    reference_name: str = ""
    reference: float | None = None
    target: float | None = None
    goal: float | None = None
    lower_is_better: bool = False

    @property
    def ratio(self) -> float | None:
        if self.reference in (None, 0) or self.value is None:
            return None
        return self.value / float(self.reference or 1)

    @property
    def meets(self) -> bool | None:
        ratio = self.ratio
        if ratio is None or self.target is None:
            return None
        return ratio <= self.target if self.lower_is_better else ratio >= self.target

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio, "meets_target": self.meets}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def machine() -> dict[str, Any]:
    import psutil

    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_average_1_5_15": [round(x, 2) for x in load],
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """An admin URL of the server to measure on: $SERVICECONTROL_DATABASE_URL when set,
    else an embedded server started here (and stopped on exit)."""
    url = os.environ.get(DATABASE_URL_ENV)
    if url:
        yield url
        return
    from servicecontrol_server.adapters.postgres.embedded import EmbeddedPostgres

    with tempfile.TemporaryDirectory(prefix="sc-bench-pg-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pg")
        pg.start()
        try:
            yield pg.url("postgres")
        finally:
            pg.stop()


@contextlib.contextmanager
def scratch_database(server_url: str, *, migrate: bool = True) -> Iterator[str]:
    """A fresh database on the server (migrated to head), dropped on exit."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server_url, name)
    try:
        if migrate:
            from servicecontrol_server.adapters.postgres.migrate import upgrade_to_head

            upgrade_to_head(url)
        yield url
    finally:
        with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
