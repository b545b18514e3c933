"""Where the job engine's time goes: drains no-op jobs with 4 workers under pyinstrument
(installed by the `bench` extra) and prints the heaviest frames. With `--calls`, counts
instead: Python function calls per job under cProfile (the same on any machine, however
loaded) and the process's CPU time per job in a run without the profiler.

    .venv/bin/python bench/profile_engine.py [--jobs 3000] [--html profile.html]
    .venv/bin/python bench/profile_engine.py --calls [--jobs 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import logging
import os
import pstats
import time
from pathlib import Path

from bench_engine import engine_rate
from common import postgres_server, scratch_database

from servicecontrol_server.adapters.postgres.database import create_engine


async def profile(jobs: int, workers: int, html: Path | None) -> None:
    from pyinstrument import Profiler

    with postgres_server() as server, scratch_database(server) as url:
        engine = create_engine(url)
        try:
            await engine_rate(engine, url, 200, workers)  # warm-up
            profiler = Profiler(async_mode="disabled", interval=0.0005)
            profiler.start()
            rate = await engine_rate(engine, url, jobs, workers)
            profiler.stop()
        finally:
            await engine.dispose()
    print(f"{rate:.0f} no-op jobs/s with {workers} workers")
    print(profiler.output_text(unicode=False, color=False, show_all=False))
    if html is not None:
        html.write_text(profiler.output_html())


async def count(jobs: int, workers: int) -> None:
    """Calls per job (cProfile) and CPU per job (no profiler), with the load average."""
    with postgres_server() as server, scratch_database(server) as url:
        engine = create_engine(url)
        try:
            await engine_rate(engine, url, 200, workers)  # warm-up
            load = os.getloadavg()
            cpu = time.process_time()
            rate = await engine_rate(engine, url, jobs, workers)
            cpu = time.process_time() - cpu
            profiler = cProfile.Profile()
            profiler.enable()
            await engine_rate(engine, url, jobs, workers)
            profiler.disable()
        finally:
            await engine.dispose()
    calls = pstats.Stats(profiler).total_calls  # type: ignore[attr-defined]
    print(f"{rate:.0f} no-op jobs/s with {workers} workers (load average {load[0]:.1f})")
    print(f"CPU per job: {cpu / jobs * 1000:.3f} ms (the process, poller included)")
    print(f"Python calls per job: {calls / jobs:.1f} (cProfile)")


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--html", type=Path)
    parser.add_argument("--calls", action="store_true", help="count calls and CPU per job")
    args = parser.parse_args()
    if args.calls:
        asyncio.run(count(args.jobs, args.workers))
    else:
        asyncio.run(profile(args.jobs, args.workers, args.html))


if __name__ == "__main__":
    main()
