"""What a delete job sends to the database, counted through the driver, never timed: its
outcome transaction is the service row's lock, one statement for everything removed
with the service, the operation's end, the outbox event and the fenced completion; its
image step rides in the first progress save; its other markers are single statements and
no transaction marks a step."""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import event, text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.adapters.postgres import jobqueue
from servicecontrol_server.adapters.postgres.repositories import operations, services
from tests.support.server import ACCOUNT, Harness


class Transactions:
    """The statements of every transaction on the engine's connections, in order."""

    def __init__(self) -> None:
        self.open: dict[int, list[str]] = defaultdict(list)
        self.done: list[tuple[list[str], str]] = []
        self._commit, self._rollback = self._end("COMMIT"), self._end("ROLLBACK")

    def attach(self, sync_engine: Any) -> None:
        event.listen(sync_engine, "begin", self._begin)
        event.listen(sync_engine, "before_cursor_execute", self._statement)
        event.listen(sync_engine, "commit", self._commit)
        event.listen(sync_engine, "rollback", self._rollback)

    def detach(self, sync_engine: Any) -> None:
        event.remove(sync_engine, "begin", self._begin)
        event.remove(sync_engine, "before_cursor_execute", self._statement)
        event.remove(sync_engine, "commit", self._commit)
        event.remove(sync_engine, "rollback", self._rollback)

    def _begin(self, conn: Any) -> None:
        self.open[id(conn)] = []

    def _statement(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.open[id(conn)].append(" ".join(statement.split()))

    def _end(self, how: str) -> Any:
        def ended(conn: Any) -> None:
            self.done.append((self.open.pop(id(conn), []), how))

        return ended


def _same(sql: Any, recorded: str) -> bool:
    """Whether `recorded` (as the driver got it) is the named statement `sql`."""
    named = sql if isinstance(sql, str) else re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", str(sql))
    return " ".join(named.split()) == recorded


async def test_a_delete_job_s_outcome_is_five_statements_and_its_steps_ride_along(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = await harness.running_service("counted")
    async with harness.app.engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO resource_tags (resource_arn, tag_key, account_id, tag_value)"
                " VALUES (:arn, 'team', :account, 'shop')"
            ),
            {"arn": svc.service_arn, "account": ACCOUNT},
        )

    queued: list[str] = []
    rows = jobqueue.JobQueue._rows

    async def counted(self: Any, sql: str, params: dict[str, Any], **kw: Any) -> list[Any]:
        queued.append(sql)
        return await rows(self, sql, params, **kw)

    monkeypatch.setattr(jobqueue.JobQueue, "_rows", counted)
    transactions = Transactions()
    sync_engine = harness.app.engine.sync_engine
    transactions.attach(sync_engine)
    try:
        response = await harness.stub.DeleteService(
            api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=harness.meta()
        )
        op = await harness.wait(response.operation_id)
    finally:
        transactions.detach(sync_engine)
    assert op.status == pb.Operation.SUCCEEDED
    assert op.deletion_report.image_objects > 0

    # The outcome: the transaction whose statements end with the fenced completion.
    [outcome] = [
        (statements, how)
        for statements, how in transactions.done
        if statements and _same(jobqueue.COMPLETE, statements[-1])
    ]
    statements, how = outcome
    assert how == "COMMIT"
    assert len(statements) == 5, statements
    assert _same(services.GET_SERVICE_FOR_UPDATE, statements[0])
    assert _same(services.TOMBSTONE_SERVICE, statements[1])
    assert statements[2].startswith("UPDATE operations") and "pg_notify" in statements[2]
    assert "INSERT INTO outbox" in statements[3]
    # The first and last steps were shown by markers of their own, the image step by the
    # first progress save; no transaction marked a step, and the service was loaded
    # without one (the only transactions of the job are its outcome and its compute
    # record, which commits on its own).
    assert queued.count(jobqueue.SAVE_PROGRESS_AT_STEP) == 1
    assert queued.count(jobqueue.MARK_STEP) == 2
    assert not [
        statements
        for statements, _ in transactions.done
        if any(_same(operations.MARK_STEP_LAZILY, s) for s in statements)
    ]

    # What the one statement removed: the tags went with the service.
    async with harness.app.engine.connect() as conn:
        tags = (
            await conn.execute(
                text("SELECT count(*) FROM resource_tags WHERE resource_arn = :arn"),
                {"arn": svc.service_arn},
            )
        ).scalar_one()
    assert tags == 0
