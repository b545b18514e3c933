"""Backpressure: past a backlog of ready jobs, new mutations are refused with a retry
delay instead of lengthening the queue without bound. Reads are never refused.

The backlog is read from the database at most once per `check_seconds` in this process
(every replica reads the same queue, so they agree within that interval); while the
count cannot be read, mutations are admitted (they meet the outage themselves)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from ..domain.errors import BacklogFull
from .ports import JobBacklog
from .rate_limit import MUTATIONS

log = logging.getLogger(__name__)

# The calls refused while the backlog is full: every mutation, StartDeployment included.
ADMITTED_ON_BACKLOG = frozenset(MUTATIONS | {"StartDeployment"})


class BacklogGate:
    def __init__(
        self,
        backlog: JobBacklog,
        *,
        max_ready: int,
        check_seconds: float = 1.0,
        retry_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backlog = backlog
        self.max_ready = max_ready
        self.check_seconds = check_seconds
        self.retry_seconds = retry_seconds
        self.clock = clock
        self._ready = 0
        self._read_at: float | None = None
        self._lock = asyncio.Lock()

    async def check(self, call: str) -> None:
        """Raises BacklogFull for a mutation while more than max_ready jobs wait."""
        if self.max_ready <= 0 or call not in ADMITTED_ON_BACKLOG:
            return
        if await self._current() > self.max_ready:
            raise BacklogFull(self.retry_seconds)

    async def _current(self) -> int:
        if self._fresh():
            return self._ready
        async with self._lock:
            # Another caller may have read it while this one waited for the lock.
            if not self._fresh():
                try:
                    self._ready = await self.backlog.ready_jobs(self.max_ready + 1)
                except Exception:  # noqa: BLE001 - fail open: the mutation meets the outage
                    log.warning("reading the job backlog failed; admitting mutations")
                    self._ready = 0
                self._read_at = self.clock()
        return self._ready

    def _fresh(self) -> bool:
        return self._read_at is not None and self.clock() - self._read_at < self.check_seconds
