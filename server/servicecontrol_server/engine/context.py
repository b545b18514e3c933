"""What a job handler sees of the engine: its job, its saved progress, fenced writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from ..adapters.postgres.jobqueue import ClaimedJob, JobQueue, LeaseLost
from .errors import JobFailure


class JobContext:
    """One attempt at one job. Every write through it is fenced by the attempt's lease:
    once the lease is lost, they raise LeaseLost and nothing more is committed."""

    def __init__(self, queue: JobQueue, job: ClaimedJob) -> None:
        self.job = job
        self.progress: dict[str, Any] = dict(job.progress)
        # Set when the engine learns that another worker may own the job now; the engine
        # then cancels the handler.
        self.lease_lost = asyncio.Event()
        self.completed = False
        self._queue = queue
        self._open: dict[int, bool] = {}

    async def save_progress(self, **changes: Any) -> None:
        """Merges `changes` into the job's saved progress (read back on a retry)."""
        self._check_lease()
        try:
            await self._queue.save_progress(self.job.job_id, self.job.lease_token, changes)
        except LeaseLost:
            self.lease_lost.set()
            raise
        self.progress.update(changes)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits when the block exits normally. Call complete(conn)
        in it to make the job's completion part of the same commit."""
        self._check_lease()
        async with self._queue.engine.begin() as conn:
            key = id(conn)
            self._open[key] = False
            try:
                yield conn
                completing = self._open[key]
            finally:
                del self._open[key]
        # Only now, after the commit, is the job really finished.
        if completing:
            self.completed = True

    async def complete(self, conn: AsyncConnection) -> None:
        """Deletes the job in `conn`'s transaction if this attempt still holds the lease;
        otherwise raises LeaseLost, and the caller must let the transaction roll back."""
        self._check_lease()
        try:
            await self._queue.complete(conn, self.job.job_id, self.job.lease_token)
        except LeaseLost:
            self.lease_lost.set()
            raise
        if id(conn) in self._open:
            self._open[id(conn)] = True
        else:
            # A transaction the handler manages itself: it commits it right after.
            self.completed = True

    def _check_lease(self) -> None:
        if self.lease_lost.is_set():
            raise LeaseLost(self.job.job_id)


class JobHandler(Protocol):
    """Runs one kind of job. Handlers must be idempotent: a job may run again after a
    crash or a lost lease, but its completion commits once."""

    async def run(self, ctx: JobContext) -> None:
        """Does the work. Should finish with ctx.complete(conn) inside ctx.transaction()
        together with the outcome's writes; if it returns without doing so, the engine
        completes the job on its own."""

    async def on_retry(self, ctx: JobContext, failure: JobFailure, delay_seconds: float) -> None:
        """Best effort, before the job is requeued: record the error and next attempt."""

    async def on_exhausted(
        self, ctx: JobContext, conn: AsyncConnection, failure: JobFailure
    ) -> None:
        """Writes the failure outcome in `conn`, the transaction that marks the job
        failed; both commit together."""
