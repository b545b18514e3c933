"""The job engine: workers that claim jobs from Postgres and run them through handlers."""

from __future__ import annotations

from .backoff import backoff_delay
from .context import JobContext, JobHandler
from .errors import JobFailure, PermanentJobError, RetryableJobError
from .worker import Worker

__all__ = [
    "JobContext",
    "JobFailure",
    "JobHandler",
    "PermanentJobError",
    "RetryableJobError",
    "Worker",
    "backoff_delay",
]
