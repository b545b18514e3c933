"""The engine's JobContext: one attempt at one job, its saved progress, fenced writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..application.ports import ClaimedJob, LeaseLost, UnitOfWork, UnitOfWorkFactory
from .ports import JobQueue


class AttemptContext:
    """Implements application.ports.JobContext. Every write through it is fenced by the
    attempt's lease: once the lease is lost, they raise LeaseLost and nothing more is
    committed."""

    def __init__(self, queue: JobQueue, uow: UnitOfWorkFactory, job: ClaimedJob) -> None:
        self.job = job
        self.progress: dict[str, Any] = dict(job.progress)
        # Set when the engine learns that another worker may own the job now; the engine
        # then cancels the handler.
        self.lease_lost = asyncio.Event()
        self.completed = False
        self._queue = queue
        self._uow = uow
        self._open: dict[int, bool] = {}

    async def save_progress(self, *, at_step: str | None = None, **changes: Any) -> None:
        self._check_lease()
        step = None if at_step is None else (at_step, self.job.attempts)
        try:
            await self._queue.save_progress(self.job.job_id, self.job.lease_token, changes, step)
        except LeaseLost:
            self.lease_lost.set()
            raise
        self.progress.update(changes)

    async def mark_step(self, step: str) -> None:
        self._check_lease()
        try:
            await self._queue.mark_step(
                self.job.job_id, self.job.lease_token, step, self.job.attempts
            )
        except LeaseLost:
            self.lease_lost.set()
            raise

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        """A unit of work that commits when the block exits normally. Call complete(uow)
        in it to make the job's completion part of the same commit."""
        self._check_lease()
        async with self._uow() as uow:
            key = id(uow)
            self._open[key] = False
            try:
                yield uow
                try:
                    await uow.commit()
                except LeaseLost:
                    # A completion held until the commit found the lease gone.
                    self.lease_lost.set()
                    raise
                completing = self._open[key]
            finally:
                del self._open[key]
        # Only now, after the commit, is the job really finished.
        if completing:
            self.completed = True

    async def complete(self, uow: UnitOfWork) -> None:
        """Deletes the job in `uow`'s transaction if this attempt still holds the lease;
        otherwise raises LeaseLost, and the caller must let the transaction roll back."""
        self._check_lease()
        try:
            await uow.jobs.complete(self.job.job_id, self.job.lease_token)
        except LeaseLost:
            self.lease_lost.set()
            raise
        if id(uow) in self._open:
            self._open[id(uow)] = True
        else:
            # A unit of work the engine opened itself: it commits it right after.
            self.completed = True

    def _check_lease(self) -> None:
        if self.lease_lost.is_set():
            raise LeaseLost(self.job.job_id)
