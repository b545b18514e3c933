"""What a delete job sends to the database, counted through the driver and on the wire,
never timed: its outcome transaction is the service row's lock sent with BEGIN, one
statement for everything removed with the service, then the operation's end, the outbox
event and the fenced completion sent with the COMMIT (three round trips); its image step rides
in the first progress save; its other markers are single statements and no transaction
marks a step. A lost lease at the outcome commits none of it."""

from __future__ import annotations

import contextlib
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server import faults
from servicecontrol_server.adapters.compute.recorded import STOP_INSTANCE
from servicecontrol_server.adapters.postgres import direct, jobqueue
from servicecontrol_server.adapters.postgres.database import libpq_url
from servicecontrol_server.adapters.postgres.repositories import operations, services
from servicecontrol_server.application import jobs
from servicecontrol_server.application.ports import JobContext, LeaseLost
from tests.integration.test_mutation_round_trips import WireTrace, round_trips
from tests.support.server import ACCOUNT, Harness
from tests.support.waiting import wait_until


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


def _last_batch(lines: list[str]) -> str:
    """The trace of what the client sent in its last round trip (a statement's text
    may span lines of the trace)."""
    sent = "\n".join(lines)
    return sent.split("\tSync\n")[-2].rsplit("\tQuery\t", 1)[-1]


async def test_a_delete_job_s_outcome_is_three_round_trips_and_its_steps_ride_along(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
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
    (tmp_path / "wire").mkdir()
    wire = WireTrace(tmp_path / "wire")
    pool = sync_engine.pool
    event.listen(pool, "checkout", wire.checkout)
    event.listen(pool, "checkin", wire.checkin)
    # The compute record goes on the direct pool's sessions: traced too.
    connection = direct.DirectPool.connection

    @contextlib.asynccontextmanager
    async def traced(self: direct.DirectPool) -> AsyncIterator[Any]:
        async with connection(self) as conn:
            wire.start(conn)
            try:
                yield conn
            finally:
                wire.stop(conn)

    monkeypatch.setattr(direct.DirectPool, "connection", traced)
    try:
        response = await harness.stub.DeleteService(
            api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=harness.meta()
        )
        op = await harness.wait(response.operation_id)
    finally:
        transactions.detach(sync_engine)
        event.remove(pool, "checkout", wire.checkout)
        event.remove(pool, "checkin", wire.checkin)
    assert op.status == pb.Operation.SUCCEEDED
    assert op.deletion_report.image_objects > 0

    # The outcome: the transaction that tombstones the service. Through SQLAlchemy it
    # sends the tombstone; the lock goes with BEGIN, the rest with the COMMIT.
    [outcome] = [
        (statements, how)
        for statements, how in transactions.done
        if any(_same(services.TOMBSTONE_SERVICE, s) for s in statements)
    ]
    statements, how = outcome
    assert how == "COMMIT"
    assert len(statements) == 1, statements
    assert _same(services.TOMBSTONE_SERVICE, statements[0])
    # On the wire: BEGIN with the lock, the tombstone, and one batch with the operation's
    # end, the event, the fenced completion and COMMIT.
    [session] = [s for s in wire.sessions() if any("DELETE FROM jobs" in line for line in s)]
    assert round_trips(session) == 3
    first = "\n".join(session).split("\tSync\n")[0]
    assert '"BEGIN' in first and "FOR UPDATE" in first, first
    last = _last_batch(session)
    held = [
        last.find("UPDATE operations"),
        last.find("DELETE FROM jobs"),
        last.find("INSERT INTO outbox"),
    ]
    assert -1 not in held and max(held) < last.find('"COMMIT"'), last
    # The compute record is one statement in autocommit on a direct session: no BEGIN or
    # COMMIT around it (prepared at its first use on a session, as every direct statement).
    stop = STOP_INSTANCE.text.split("FROM")[0].strip()
    [compute] = [s for s in wire.sessions() if stop in "\n".join(s)]
    sent = "\n".join(compute)
    assert sum(1 for line in compute if "\tExecute\t" in line) == 1, sent
    assert "BEGIN" not in sent and "COMMIT" not in sent, sent
    assert round_trips(compute) <= 2

    # The first and last steps were shown by markers of their own, the image step by the
    # first progress save; no transaction marked a step, and the service was loaded
    # without one (the only transaction of the job with BEGIN and COMMIT is its outcome).
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


async def test_a_lease_lost_at_the_outcome_commits_none_of_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease moves to another worker after the outcome's statements were written and
    before its COMMIT: the held completion fails, so the COMMIT sent with it commits
    nothing (the operation has not ended, no event, the service is not tombstoned, the
    job stays the other worker's), and the handler learns LeaseLost."""
    svc = await harness.running_service("stolen")
    url = libpq_url(harness.app.engine.url.render_as_string(hide_password=False))
    stolen: list[int] = []

    def steal(name: str) -> None:
        if name != "delete_service:before_commit" or stolen:
            return
        # What a rescue plus another worker's claim do, far from expiring.
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "UPDATE jobs SET lease_token = gen_random_uuid(), lease_owner = 'thief',"
                " lease_expires_at = now() + interval '1 hour'"
                " WHERE kind = 'delete_service' AND state = 'running' RETURNING job_id"
            ).fetchone()
        assert row is not None
        stolen.append(int(row[0]))

    ended: list[BaseException | None] = []
    run = jobs.DeleteServiceJob.run

    async def watched(self: jobs.DeleteServiceJob, ctx: JobContext) -> None:
        try:
            await run(self, ctx)
        except BaseException as exc:
            ended.append(exc)
            raise
        ended.append(None)

    monkeypatch.setattr(faults, "checkpoint", steal)
    monkeypatch.setattr(jobs.DeleteServiceJob, "run", watched)
    response = await harness.stub.DeleteService(
        api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=harness.meta()
    )
    await wait_until(lambda: bool(ended), timeout=20)
    assert isinstance(ended[0], LeaseLost)
    async with harness.app.engine.connect() as conn:
        state = (
            await conn.execute(
                text(
                    "SELECT (SELECT status FROM operations WHERE operation_id = :op),"
                    " (SELECT ended_at IS NULL FROM operations WHERE operation_id = :op),"
                    " (SELECT count(*) FROM outbox WHERE type = 'service.deleted'"
                    "  AND payload->>'operationId' = :text_op),"
                    " (SELECT status FROM services WHERE service_arn = :arn),"
                    " (SELECT lease_owner FROM jobs WHERE job_id = :job)"
                ),
                {
                    "op": uuid.UUID(response.operation_id),
                    "text_op": response.operation_id,
                    "arn": svc.service_arn,
                    "job": stolen[0],
                },
            )
        ).one()
    assert tuple(state) == ("IN_PROGRESS", True, 0, "OPERATION_IN_PROGRESS", "thief")
