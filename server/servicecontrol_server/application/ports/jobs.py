"""The job port: what a job handler sees of the engine that runs it, and how it reports
failure. The engine (engine/) implements JobContext; handlers live in application/jobs.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .unit_of_work import UnitOfWork


@dataclass(frozen=True)
class ClaimedJob:
    """One attempt's view of a job: claimed under `lease_token` until it ends or the
    lease is lost."""

    job_id: int
    kind: str
    operation_id: str | None
    service_id: str | None
    account_id: str | None
    payload: dict[str, Any]
    progress: dict[str, Any]
    attempts: int
    max_attempts: int
    lease_token: str
    # The ARN of the service the job's operation changes (for logs), when it has one.
    service_arn: str | None = None
    # The trace context of the call that enqueued the job (W3C headers), when traced.
    trace_context: Mapping[str, str] = field(default_factory=dict)
    # Seconds since the job's first transient failure, on the database clock; None when
    # it has had none (its retry window has not started).
    retrying_seconds: float | None = None
    # Attempts that ended in a transient failure: numbered in `attempts` but not counted
    # against `max_attempts`.
    spared_attempts: int = 0

    @property
    def charged_attempts(self) -> int:
        """The attempts made that count against max_attempts (this one included)."""
        return self.attempts - self.spared_attempts


class LeaseLost(Exception):
    """A fenced write found that the job's lease is no longer this worker's: it expired
    and was rescued, or the job was released or finished by someone else."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"lease on job {job_id} was lost")
        self.job_id = job_id


class JobError(Exception):
    """A failure with an ErrorInfo reason (e.g. "OBJECT_STORE_UNAVAILABLE"), a message for
    the operation's error, and string metadata."""

    def __init__(
        self, reason: str, message: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})


class RetryableJobError(JobError):
    """Transient: the job is retried with backoff until its retry window ends."""


class PermanentJobError(JobError):
    """Retrying cannot help: the job fails at once."""


@dataclass(frozen=True)
class JobFailure:
    """Why a job failed, as passed to on_retry and on_exhausted."""

    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    # Attempts made so far, the failed one included.
    attempts: int = 0
    # For a transient failure that will be retried: how long the job may still retry
    # (the retry window's end, counted from now).
    window_left_seconds: float | None = None


class JobContext(Protocol):
    """One attempt at one job. Every write through it is fenced by the attempt's lease:
    once the lease is lost, they raise LeaseLost and nothing more is committed."""

    job: ClaimedJob
    progress: dict[str, Any]

    async def save_progress(self, *, at_step: str | None = None, **changes: Any) -> None:
        """Merges `changes` into the job's saved progress (read back on a retry), durably.
        With `at_step`, the same statement also shows that step on the job's operation
        (as mark_step does)."""
        ...

    async def mark_step(self, step: str) -> None:
        """Shows `step` and this attempt on the job's operation, in one statement whose
        commit does not wait for the disk: a marker is progress that every attempt writes
        again, and the job's durable outcome commit, which comes later, makes it durable."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A unit of work that commits when the block exits normally. Call
        complete(uow) in it to make the job's completion part of the same commit."""
        ...

    async def complete(self, uow: UnitOfWork) -> None:
        """Ends the job in `uow`'s transaction if this attempt still holds the lease;
        otherwise raises LeaseLost, and the transaction must roll back."""
        ...


class JobHandler(Protocol):
    """Runs one kind of job. Handlers must be idempotent: a job may run again after a
    crash or a lost lease, but its completion commits once."""

    async def run(self, ctx: JobContext) -> None:
        """Does the work. Should finish with ctx.complete(uow) inside ctx.transaction()
        together with the outcome's writes; if it returns without doing so, the engine
        completes the job on its own."""
        ...

    async def on_retry(self, ctx: JobContext, failure: JobFailure, delay_seconds: float) -> None:
        """Best effort, before the job is requeued: record the error and next attempt."""
        ...

    async def on_exhausted(self, ctx: JobContext, uow: UnitOfWork, failure: JobFailure) -> None:
        """Writes the failure outcome in `uow`, the transaction that marks the job
        failed; both commit together."""
        ...
