"""Real `servicecontrol` processes for tests: started with the same settings as the
in-process harness, waited on with deadlines, killed like a crash would kill them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from servicecontrol_server.settings import Settings

SERVICECONTROL = str(Path(sys.executable).parent / "servicecontrol")
FORWARDED = (
    "database_url",
    "s3_endpoint",
    "s3_access_key",
    "s3_secret_key",
    "source_bucket",
    "image_bucket",
    "job_lease_seconds",
    "job_heartbeat_seconds",
    "job_poll_seconds",
    "job_backoff_base_seconds",
    "job_backoff_max_seconds",
    "job_max_attempts",
    "default_account",
    "data_dir",
)


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICECONTROL_")}
    for name in FORWARDED:
        env[f"SERVICECONTROL_{name.upper()}"] = str(getattr(settings, name))
    env["SERVICECONTROL_MIGRATE_ON_START"] = "false"
    env["SERVICECONTROL_LOG_FORMAT"] = "json"
    env["SERVICECONTROL_METRICS_LISTEN"] = "127.0.0.1:0"
    env.update(extra)
    return env


@contextlib.asynccontextmanager
async def worker_process(
    settings: Settings, log: Path, *, concurrency: int = 2, **env: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """A `servicecontrol worker` process; yielded once it is ready to claim jobs."""
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            SERVICECONTROL,
            "worker",
            "--concurrency",
            str(concurrency),
            env=environment(settings, **env),
            stdout=asyncio.subprocess.PIPE,
            stderr=sink,
        )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        assert line.startswith(b"SERVICECONTROL_READY"), line
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
