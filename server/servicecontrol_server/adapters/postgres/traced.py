"""The unit of work with a trace span per transaction (bootstrap builds it when tracing is
on). The span names the operation the transaction writes, as soon as it is known, and a
job enqueued in it carries the trace context, so that its attempts join the call's trace."""

from __future__ import annotations

import dataclasses
from types import TracebackType
from typing import Any

from opentelemetry.trace import SpanKind

from ... import tracing
from ...application.ports import OperationJob
from ...domain.model import Operation, Service
from .jobqueue import TRACE_CONTEXT_KEY
from .unit_of_work import PostgresUnitOfWork


class TracedPostgresUnitOfWork(PostgresUnitOfWork):
    _span: Any = None
    _committed = False

    async def __aenter__(self) -> TracedPostgresUnitOfWork:
        self._committed = False
        self._span = tracing.start_span(
            "transaction", SpanKind.INTERNAL, {"db.system.name": "postgresql"}
        )
        try:
            await super().__aenter__()
        except BaseException as exc:
            self._span.end(exc)
            raise
        return self

    def _bind(self, conn: Any) -> None:
        super()._bind(conn)
        operations_add = self.operations.add
        jobs_enqueue = self.jobs.enqueue

        async def add(operation: Operation) -> Operation:
            tracing.annotate(
                operation_id=operation.operation_id,
                service_arn=operation.target_arn,
                account_id=operation.account_id,
            )
            return await operations_add(operation)

        async def enqueue(*, payload: dict[str, Any], **kwargs: Any) -> int:
            carrier = tracing.inject()
            if carrier:
                payload = {**payload, TRACE_CONTEXT_KEY: carrier}
            return await jobs_enqueue(payload=payload, **kwargs)

        self.operations.add = add  # type: ignore[method-assign,assignment]
        self.jobs.enqueue = enqueue  # type: ignore[method-assign]

    async def start_operation(
        self, operation: Operation, job: OperationJob, *, saving: Service | None = None
    ) -> None:
        tracing.annotate(
            operation_id=operation.operation_id,
            service_arn=operation.target_arn,
            account_id=operation.account_id,
        )
        carrier = tracing.inject()
        if carrier:
            job = dataclasses.replace(job, payload={**job.payload, TRACE_CONTEXT_KEY: carrier})
        await super().start_operation(operation, job, saving=saving)

    async def commit(self) -> None:
        await super().commit()
        self._committed = True

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        span = self._span
        try:
            await super().__aexit__(exc_type, exc, tb)
        except BaseException as error:
            span.set_attribute("servicecontrol.transaction.outcome", "rolled_back")
            span.end(error)
            raise
        span.set_attribute(
            "servicecontrol.transaction.outcome",
            "committed" if self._committed else "rolled_back",
        )
        span.end(exc)
