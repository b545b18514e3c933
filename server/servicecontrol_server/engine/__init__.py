"""The job engine: workers that claim jobs and run them through their handlers under
heartbeated leases. It implements the application's JobContext port and depends on the
queue and wake-up ports in engine/ports.py, which the Postgres adapter implements."""

from __future__ import annotations

from .backoff import backoff_delay
from .context import AttemptContext
from .ports import JobQueue, WakeUps
from .worker import Worker

__all__ = ["AttemptContext", "JobQueue", "WakeUps", "Worker", "backoff_delay"]
