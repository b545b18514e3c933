"""What the engine needs from the queue's storage, and from whatever wakes it. The
Postgres adapter (adapters/postgres/jobqueue.py, listen.py) implements both; bootstrap.py
hands them in."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Protocol

from ..application.ports import ClaimedJob


class JobQueue(Protocol):
    """The worker side of the queue; each call is its own short transaction. Fenced
    writes (those taking a lease token) answer False or raise LeaseLost when the lease is
    no longer the caller's."""

    def connected(self) -> AbstractAsyncContextManager[None]:
        """Held for a worker's lifetime: the queue may keep its own connections (and
        prepared statements) open meanwhile, instead of borrowing one per call."""
        ...

    async def claim(self, owner: str, limit: int, lease_seconds: float) -> list[ClaimedJob]:
        """Up to `limit` due jobs, each leased to `owner` for `lease_seconds`."""
        ...

    async def complete_and_claim(
        self,
        leases: Sequence[tuple[int, str]],
        owner: str,
        limit: int,
        lease_seconds: float,
    ) -> tuple[set[int], list[ClaimedJob]]:
        """complete_many(leases), then claim(owner, limit, lease_seconds), in one
        transaction: (the jobs completed, the jobs claimed)."""
        ...

    async def heartbeat(self, job_id: int, token: str, lease_seconds: float) -> bool:
        """Extends the lease; False means the lease is gone and the job is not ours."""
        ...

    async def heartbeat_many(
        self, leases: Sequence[tuple[int, str]], lease_seconds: float
    ) -> set[int]:
        """Extends each (job_id, token) lease in one go; answers the jobs still held."""
        ...

    async def complete_many(self, leases: Sequence[tuple[int, str]]) -> set[int]:
        """Deletes each (job_id, token) job whose lease is still the caller's, in one
        transaction; answers the jobs completed (the others had lost their lease)."""
        ...

    async def save_progress(
        self,
        job_id: int,
        token: str,
        progress: dict[str, Any],
        step: tuple[str, int] | None = None,
    ) -> None:
        """Merges `progress` into the job's saved progress; with `step` (the step and the
        attempt), marks it on the job's operation in the same statement. Raises
        LeaseLost."""
        ...

    async def mark_step(self, job_id: int, token: str, step: str, attempt: int) -> None:
        """Marks the step and attempt on the job's operation, without waiting for the
        disk; raises LeaseLost."""
        ...

    async def retry_later(
        self,
        job_id: int,
        token: str,
        delay_seconds: float,
        error: str,
        *,
        transient: bool = False,
    ) -> bool:
        """Requeues the job `delay_seconds` from now, recording `error`. A transient
        failure starts the job's retry window if it has none, and does not count against
        its attempts."""
        ...

    async def release(self, job_id: int, token: str) -> bool:
        """Gives the job back at once, without counting the attempt as failed."""
        ...

    async def rescue_expired(self, limit: int = 100) -> int:
        """Requeues jobs whose lease has expired; returns how many."""
        ...

    async def seconds_until_next(self) -> float | None:
        """Seconds until the earliest queued job is due (0 if one is due), or None."""
        ...


class WakeUps(AbstractAsyncContextManager["WakeUps"], Protocol):
    """Notifications that new jobs may be due (LISTEN/NOTIFY in Postgres). Entered for the
    worker's lifetime; sets each subscribed latch on every notification and reconnect."""

    connected: asyncio.Event

    def subscribe(self, latch: asyncio.Event | None = None) -> asyncio.Event: ...

    def unsubscribe(self, latch: asyncio.Event) -> None: ...


class Attempt(Protocol):
    """One job attempt as a tracer sees it."""

    def ended(self, outcome: str) -> None:
        """How the attempt ended: succeeded, retried, failed, lease_lost or interrupted."""
        ...


class AttemptTracer(Protocol):
    """Wraps each job attempt (tracing, in bootstrap: the engine imports no tracing
    library). Entered around the whole attempt, so that what the handler does runs
    inside it."""

    def attempt(self, job: ClaimedJob) -> AbstractContextManager[Attempt]: ...
