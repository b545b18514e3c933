"""Operations: the record of each service mutation, from accepted to final."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg.types.json import Jsonb
from sqlalchemy import TextClause, func, select, text, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ....application.ports import Cursor
from ....domain.model import Operation, OperationStatus, OperationType
from ..schema import operations
from ._keyset import newest_first

# Notified (payload: the operation id) when an operation ends, for WaitOperation.
OPERATIONS_CHANNEL = "servicecontrol_operations"

# A step marker whose transaction's commit does not wait for the disk: set_config(...,
# is_local => true) holds for the rest of the transaction only, and rides in the marker's
# own statement (the one-row subquery runs once, when the operation's row is updated).
MARK_STEP_LAZILY = text(
    """
    UPDATE operations
    SET status = :status, current_step = :step, attempt = :attempt,
        next_attempt_at = NULL, updated_at = now()
    FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed
    WHERE operation_id = CAST(:operation_id AS uuid)
    """
)

ADD_OPERATION = text(
    """
    INSERT INTO operations
        (operation_id, account_id, service_id, target_arn, type, status, current_step)
    VALUES (CAST(:operation_id AS uuid), :account_id, :service_id, :target_arn, :type,
            :status, :current_step)
    RETURNING started_at, updated_at
    """
)


def add_parameters(op: Operation) -> dict[str, Any]:
    """ADD_OPERATION's parameters."""
    return {
        "operation_id": op.operation_id,
        "account_id": op.account_id,
        "service_id": op.service_id,
        "target_arn": op.target_arn,
        "type": op.type.value,
        "status": op.status.value,
        "current_step": op.current_step,
    }


# An operation's end, and the notification that wakes WaitOperation callers (delivered
# at commit, dropped on rollback): one statement. A success shows the step "done" and
# clears the last error; `error` and `deletion_report` are written when given (JSONB or
# NULL). The unit of work holds it until commit and sends it with the COMMIT.
FINISH_OPERATION = text(
    """
    UPDATE operations
    SET status = :status, attempt = :attempt, ended_at = now(), next_attempt_at = NULL,
        retry_until = NULL, updated_at = now(),
        current_step = CASE WHEN :succeeded THEN 'done' ELSE current_step END,
        last_error = CASE WHEN :succeeded THEN '' ELSE last_error END,
        error = coalesce(CAST(:error AS jsonb), error),
        deletion_report = coalesce(CAST(:deletion_report AS jsonb), deletion_report)
    WHERE operation_id = CAST(:operation_id AS uuid)
    RETURNING pg_notify('servicecontrol_operations', CAST(operation_id AS text))
    """
)

# A write the unit of work holds to send with its COMMIT (statement, parameters).
Hold = Callable[[TextClause, dict[str, Any]], None]


class OperationRepository:
    def __init__(self, conn: AsyncConnection, hold: Hold | None = None) -> None:
        self.conn = conn
        # Given by a unit of work: writes that need no answer before the commit go
        # with it (the operation's end).
        self._hold = hold

    async def add(self, op: Operation) -> Operation:
        row = (await self.conn.execute(ADD_OPERATION, add_parameters(op))).one()
        op.started_at, op.updated_at = row.started_at, row.updated_at
        return op

    async def get(
        self, account_id: str, operation_id: str, *, for_update: bool = False
    ) -> Operation | None:
        query = select(operations).where(
            operations.c.account_id == account_id, operations.c.operation_id == operation_id
        )
        if for_update:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).mappings().first()
        return operation_from_row(row) if row else None

    async def list_for_service(
        self, account_id: str, service_id: str, after: Cursor | None, limit: int
    ) -> list[Operation]:
        query = select(operations).where(
            operations.c.account_id == account_id, operations.c.service_id == service_id
        )
        query = newest_first(
            query, operations.c.started_at, operations.c.operation_id, after, limit
        )
        rows = (await self.conn.execute(query)).mappings().all()
        return [operation_from_row(row) for row in rows]

    async def mark_step(
        self, operation_id: str, step: str, attempt: int, *, durable: bool = True
    ) -> None:
        if not durable:
            # The commit returns without waiting for the WAL flush (about one disk flush
            # per step saved). Postgres still writes commits in order, so any later
            # durable commit (the job's outcome) makes this one durable too; a database
            # crash before that loses only the marker, and the job's next attempt, which
            # the crash forces, writes it again.
            await self.conn.execute(
                MARK_STEP_LAZILY,
                {
                    "operation_id": operation_id,
                    "status": OperationStatus.IN_PROGRESS.value,
                    "step": step,
                    "attempt": attempt,
                },
            )
            return
        await self._set(
            operation_id,
            status=OperationStatus.IN_PROGRESS.value,
            current_step=step,
            attempt=attempt,
            next_attempt_at=None,
        )

    async def note_retry(
        self,
        operation_id: str,
        last_error: str,
        attempt: int,
        retry_in_seconds: float,
        window_left_seconds: float | None = None,
    ) -> None:
        values: dict[str, Any] = {}
        if window_left_seconds is not None:
            values["retry_until"] = func.now() + func.make_interval(
                0, 0, 0, 0, 0, 0, window_left_seconds
            )
        await self._set(
            operation_id,
            last_error=last_error,
            attempt=attempt,
            next_attempt_at=func.now() + func.make_interval(0, 0, 0, 0, 0, 0, retry_in_seconds),
            **values,
        )

    async def finish(
        self,
        operation_id: str,
        status: OperationStatus,
        attempt: int,
        *,
        error: dict[str, Any] | None = None,
        deletion_report: dict[str, Any] | None = None,
    ) -> None:
        """Ends the operation and notifies OPERATIONS_CHANNEL, which Postgres delivers at
        commit: that is what wakes WaitOperation callers. Held until the commit when the
        repository belongs to a unit of work that holds writes."""
        if status.is_active:
            raise ValueError(f"{status} is not a final status")
        params: dict[str, Any] = {
            "operation_id": operation_id,
            "status": status.value,
            "attempt": attempt,
            "succeeded": status is OperationStatus.SUCCEEDED,
            "error": None if error is None else Jsonb(error),
            "deletion_report": None if deletion_report is None else Jsonb(deletion_report),
        }
        if self._hold is not None:
            self._hold(FINISH_OPERATION, params)
            return
        await self.conn.execute(FINISH_OPERATION, params)

    async def _set(self, operation_id: str, **values: Any) -> None:
        await self.conn.execute(
            update(operations)
            .where(operations.c.operation_id == operation_id)
            .values(updated_at=func.now(), **values)
        )


def operation_from_row(row: RowMapping) -> Operation:
    return Operation(
        operation_id=row["operation_id"],
        account_id=row["account_id"],
        service_id=row["service_id"],
        target_arn=row["target_arn"],
        type=OperationType(row["type"]),
        status=OperationStatus(row["status"]),
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        ended_at=row["ended_at"],
        current_step=row["current_step"],
        attempt=row["attempt"],
        error=row["error"],
        deletion_report=row["deletion_report"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        retry_until=row["retry_until"],
    )
