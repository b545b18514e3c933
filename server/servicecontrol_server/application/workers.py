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


async def waiting_reason(op: Operation, presence: WorkerPresence | None) -> str:
    """Why `op` is not moving, when that needs saying; empty otherwise."""
    if presence is None or op.status is not OperationStatus.PENDING:
        return ""
    if await presence.live_workers() > 0:
        return ""
    return NO_WORKER
