"""Whether any job worker is alive, so that an operation waiting for one says why."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from ..domain.model import Operation, OperationStatus

NO_WORKER_STEP = (
    "waiting for a job worker: none is running against this database "
    "(start `servicecontrol worker`, or `serve` with --workers 1 or more)"
)


class WorkerPresence(Protocol):
    async def live_workers(self) -> int:
        """How many worker processes are alive on the database."""
        ...


async def explain_waiting(op: Operation, presence: WorkerPresence | None) -> Operation:
    """A PENDING operation, with no worker alive to claim it, says so in its step."""
    if presence is None or op.status is not OperationStatus.PENDING:
        return op
    if await presence.live_workers() > 0:
        return op
    return dataclasses.replace(op, current_step=NO_WORKER_STEP)
