"""The job backlog, as admission control reads it."""

from __future__ import annotations

from typing import Protocol


class JobBacklog(Protocol):
    async def ready_jobs(self, at_most: int) -> int:
        """How many jobs are due and waiting for a worker, counted up to `at_most`
        (a bound on the cost of counting a long queue)."""
        ...
