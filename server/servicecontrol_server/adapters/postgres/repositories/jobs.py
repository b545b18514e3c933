"""The jobs of a unit of work's transaction (SQL in jobqueue.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from .. import jobqueue
from .operations import Hold


class JobRepository:
    def __init__(self, conn: AsyncConnection, hold: Hold | None = None) -> None:
        self.conn = conn
        # Given by a unit of work: the fenced completion is held and sent with the
        # COMMIT, which then fails (LeaseLost, nothing committed) if the lease is gone.
        self._hold = hold

    async def enqueue(
        self,
        *,
        kind: str,
        payload: dict[str, Any],
        max_attempts: int,
        operation_id: str | None = None,
        service_id: str | None = None,
        account_id: str | None = None,
        progress: dict[str, Any] | None = None,
    ) -> int:
        return await jobqueue.enqueue(
            self.conn,
            kind=kind,
            payload=payload,
            max_attempts=max_attempts,
            operation_id=operation_id,
            service_id=service_id,
            account_id=account_id,
            progress=progress,
        )

    async def take_failed_progress(self, kind: str, service_id: str) -> dict[str, Any] | None:
        return await jobqueue.take_failed_progress(self.conn, kind, service_id)

    async def complete(self, job_id: int, lease_token: str) -> None:
        if self._hold is not None:
            self._hold(jobqueue.COMPLETE_OR_FAIL, {"job_id": job_id, "token": lease_token})
            return
        await jobqueue.complete(self.conn, job_id, lease_token)

    async def mark_failed(self, job_id: int, lease_token: str, error: str) -> None:
        await jobqueue.mark_failed(self.conn, job_id, lease_token, error)
