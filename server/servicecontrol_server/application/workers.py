"""Whether any job worker is alive, so that an operation waiting for one says why."""

from __future__ import annotations

from typing import Protocol

from ..domain.model import Operation, OperationStatus

NO_WORKER = (
    "waiting for a job worker: none is running against this database "
    "(start `servicecontrol worker`, or `serve` with --workers 1 or more)"
)


class WorkerPresence(Protocol):
    async def live_workers(self) -> int:
        """How many worker processes are alive on the database."""
        ...


# What a transient failure's reason waits on.
_WAITING_ON = {
    "OBJECT_STORE_UNAVAILABLE": "the object store",
    "COMPUTE_UNAVAILABLE": "the compute platform",
    "BACKEND_UNAVAILABLE": "the database",
}


def retry_reason(op: Operation) -> str:
    """What a retrying operation waits on, and until when; empty when not retrying."""
    if not op.status.is_active or op.next_attempt_at is None or not op.last_error:
        return ""
    reason = op.last_error.partition(":")[0]
    what = _WAITING_ON.get(reason, "its next attempt")
    text = (
        f"waiting for {what}: attempt {op.attempt} failed ({op.last_error}); "
        f"next attempt at {op.next_attempt_at.isoformat(timespec='seconds')}"
    )
    if op.retry_until is not None:
        text += f", retrying until {op.retry_until.isoformat(timespec='seconds')}"
    return text


async def waiting_reason(op: Operation, presence: WorkerPresence | None) -> str:
    """Why `op` is not moving, when that needs saying; empty otherwise."""
    retrying = retry_reason(op)
    if retrying:
        return retrying
    if presence is None or op.status is not OperationStatus.PENDING:
        return ""
    if await presence.live_workers() > 0:
        return ""
    return NO_WORKER
