"""How many round trips to PostgreSQL a mutation's transaction makes, counted on the wire
(libpq's protocol trace of the session that serves it): BEGIN goes with the first
statements (DeleteService's locked read and ingress check, or a request id's claim), and
the writes that need no answer before the commit (service state, operation, job, audit
row, outbox event) go with COMMIT. Also what that costs nothing in: the ingress check
still sees what the row lock's previous holder committed, a claim is still rolled back
with its transaction, and every session goes back to the pool as it came."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from psycopg.pq import TransactionStatus
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.adapters.postgres.direct import (
    end_pipelined_transaction,
    pipelined_reads,
)
from servicecontrol_server.adapters.postgres.unit_of_work import PostgresUnitOfWork
from servicecontrol_server.domain import names, vpc
from servicecontrol_server.domain.errors import BackendUnavailable
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, Harness
from tests.support.waiting import wait_until


class WireTrace:
    """libpq's trace of every session the engine hands out while it is on, one file per
    checkout (a checkout serves one unit of work)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._numbers = itertools.count()
        self._open: dict[int, tuple[psycopg.AsyncConnection[Any], int]] = {}

    def checkout(self, dbapi: Any, record: Any, proxy: Any) -> None:
        self.start(record.driver_connection, key=id(record))

    def checkin(self, dbapi: Any, record: Any) -> None:
        self.stop(None, key=id(record))

    def start(self, driver: psycopg.AsyncConnection[Any], *, key: int | None = None) -> None:
        """Traces `driver` into a file of its own until stop()."""
        path = self.directory / f"session-{next(self._numbers)}.trace"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        driver.pgconn.trace(fd)
        driver.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        self._open[id(driver) if key is None else key] = (driver, fd)

    def stop(self, driver: psycopg.AsyncConnection[Any] | None, *, key: int | None = None) -> None:
        found = self._open.pop(id(driver) if key is None else key, None)
        if found is not None:
            traced, fd = found
            traced.pgconn.untrace()
            os.close(fd)

    @contextlib.contextmanager
    def attached(self, pool: Any) -> Iterator[None]:
        """Traces every session `pool` hands out inside the block."""
        event.listen(pool, "checkout", self.checkout)
        event.listen(pool, "checkin", self.checkin)
        try:
            yield
        finally:
            event.remove(pool, "checkout", self.checkout)
            event.remove(pool, "checkin", self.checkin)

    def sessions(self) -> Iterator[list[str]]:
        for path in sorted(self.directory.glob("session-*.trace")):
            yield path.read_text().splitlines()


def round_trips(lines: list[str]) -> int:
    """Each answer the client waits for ends a round trip: a simple `Query` message, or
    the `Sync` that closes a batch of extended-protocol messages."""
    sent = [line.split("\t") for line in lines if line.startswith("F\t")]
    return sum(1 for fields in sent if len(fields) > 2 and fields[2] in ("Query", "Sync"))


@pytest.fixture
def wire(harness: Harness, tmp_path: Path) -> Iterator[WireTrace]:
    directory = tmp_path / "wire"
    directory.mkdir()
    trace = WireTrace(directory)
    pool = harness.app.engine.sync_engine.pool
    yield trace
    for name, fn in (("checkout", trace.checkout), ("checkin", trace.checkin)):
        if event.contains(pool, name, fn):
            event.remove(pool, name, fn)


async def traced_delete(harness: Harness, wire: WireTrace, **request: Any) -> list[list[str]]:
    svc = await harness.running_service(f"rt-{uuid.uuid4().hex[:8]}")
    with wire.attached(harness.app.engine.sync_engine.pool):
        response = await harness.stub.DeleteService(
            api.DeleteServiceRequest(service_arn=svc.service_arn, **request),
            metadata=harness.meta(),
        )
    assert response.service.status == pb.Service.OPERATION_IN_PROGRESS
    # The transaction committed everything it wrote, together.
    async with harness.app.engine.connect() as conn:
        written = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM operations WHERE operation_id = :op),"
                    " (SELECT count(*) FROM jobs WHERE operation_id = :op),"
                    " (SELECT count(*) FROM outbox WHERE payload->>'operationId' = :text_op),"
                    " (SELECT count(*) FROM audit_log WHERE operation_id = :text_op)"
                ),
                {"op": uuid.UUID(response.operation_id), "text_op": response.operation_id},
            )
        ).one()
    assert tuple(written) == (1, 1, 1, 1)
    return [s for s in wire.sessions() if any("INSERT INTO operations" in line for line in s)]


async def test_delete_service_is_two_round_trips(harness: Harness, wire: WireTrace) -> None:
    (session,) = await traced_delete(harness, wire)
    # BEGIN, the service's row lock and the ingress check; then the service's new state,
    # the operation, its job, the audit row, the event and COMMIT.
    assert round_trips(session) == 2


async def test_delete_service_with_a_request_id_adds_only_its_claim(
    harness: Harness, wire: WireTrace
) -> None:
    (session,) = await traced_delete(harness, wire, request_id=str(uuid.uuid4()))
    # BEGIN and the claim; the row lock and the ingress check; the writes and COMMIT.
    assert round_trips(session) == 3


class Checkins:
    """The driver session's state each time the engine's pool takes a session back."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.pool = engine.sync_engine.pool
        self.seen: list[tuple[bool, TransactionStatus]] = []
        event.listen(self.pool, "checkin", self._checkin)

    def _checkin(self, dbapi: Any, record: Any) -> None:
        if dbapi is None:  # invalidated: nothing goes back to the pool
            return
        driver = record.driver_connection
        self.seen.append((driver.autocommit, driver.info.transaction_status))

    def close(self) -> None:
        event.remove(self.pool, "checkin", self._checkin)


async def test_delete_sees_an_ingress_connection_the_lock_holder_committed(
    harness: Harness,
) -> None:
    """The ingress check is a statement of its own after the locked read: its snapshot is
    taken once the lock is granted. A CreateVpcIngressConnection that holds the service's
    row lock while the delete waits for it, and commits its connection, is seen."""
    svc = await harness.running_service(f"race-{uuid.uuid4().hex[:8]}")
    service_id = svc.service_arn.rsplit("/", 1)[1]
    url = harness.settings.database_url
    name = f"in-{uuid.uuid4().hex[:8]}"
    connection_id = names.new_resource_id()
    arn = vpc.ingress_connection_arn("us-east-1", ACCOUNT, name, connection_id)
    async with await psycopg.AsyncConnection.connect(url) as holder:
        await holder.execute(
            "SELECT 1 FROM services WHERE service_id = %s FOR UPDATE", (service_id,)
        )
        delete = asyncio.ensure_future(
            harness.stub.DeleteService(
                api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=harness.meta()
            )
        )
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as watcher:

            async def delete_waits_for_the_lock() -> bool:
                row = await (
                    await watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE OF s%'"
                    )
                ).fetchone()
                return bool(row and row[0])

            await wait_until(delete_waits_for_the_lock)
        assert not delete.done()
        await holder.execute(
            "INSERT INTO vpc_ingress_connections (connection_id, account_id, connection_name,"
            " connection_arn, service_id, service_arn, vpc_id, vpc_endpoint_id, domain_name,"
            " status) VALUES (%s, %s, %s, %s, %s, %s, 'vpc-1', 'vpce-1', 'in.example.com',"
            " 'AVAILABLE')",
            (connection_id, ACCOUNT, name, arn, service_id, svc.service_arn),
        )
        await holder.commit()
    err = await expect_error(delete, grpc.StatusCode.FAILED_PRECONDITION)
    assert err.metadata["vpcIngressConnectionArn"] == arn
    assert (await harness.describe(svc.service_arn)).status == pb.Service.RUNNING


async def test_sessions_go_back_to_the_pool_as_they_came(harness: Harness) -> None:
    """A session whose transaction began with a pipelined BEGIN (in autocommit) is given
    back out of autocommit and idle: after a delete, a refused one, a replayed one."""
    svc = await harness.running_service(f"pool-{uuid.uuid4().hex[:8]}")
    checkins = Checkins(harness.app.engine)
    try:
        request_id = str(uuid.uuid4())
        await expect_error(
            harness.stub.DeleteService(
                api.DeleteServiceRequest(service_arn=svc.service_arn, etag="stale"),
                metadata=harness.meta(),
            ),
            grpc.StatusCode.ABORTED,
        )
        for _ in range(2):  # the second is a replay
            await harness.stub.DeleteService(
                api.DeleteServiceRequest(service_arn=svc.service_arn, request_id=request_id),
                metadata=harness.meta(),
            )
        await wait_until(lambda: len(checkins.seen) >= 3)
    finally:
        checkins.close()
    assert set(checkins.seen) == {(False, TransactionStatus.IDLE)}


async def test_a_failing_pipelined_statement_rolls_back_and_restores_the_session(
    engine: AsyncEngine,
) -> None:
    checkins = Checkins(engine)
    try:
        with pytest.raises(psycopg.errors.DivisionByZero):
            async with PostgresUnitOfWork(engine) as uow:
                await pipelined_reads(uow.conn, ((text("SELECT 1 / 0"), {}),))
    finally:
        checkins.close()
    assert checkins.seen == [(False, TransactionStatus.IDLE)]


async def test_a_session_broken_inside_a_pipelined_transaction_is_discarded(
    engine: AsyncEngine,
) -> None:
    """The database ends the session while the transaction is open: leaving the unit of
    work is the usual outage (BackendUnavailable), and the session is not given back."""
    checkins = Checkins(engine)
    try:
        with pytest.raises(BackendUnavailable):
            async with PostgresUnitOfWork(engine) as uow:
                ((row,),) = await pipelined_reads(
                    uow.conn, ((text("SELECT pg_backend_pid() AS pid"), {}),)
                )
                async with engine.connect() as other:
                    await other.execute(
                        text("SELECT pg_terminate_backend(:pid)"), {"pid": row["pid"]}
                    )
                await uow.conn.execute(text("SELECT 1"))
    finally:
        checkins.close()
    # The other session went back idle; the broken one was not given back.
    assert checkins.seen == [(False, TransactionStatus.IDLE)]
    async with PostgresUnitOfWork(engine) as uow:  # the pool serves sound sessions
        await uow.conn.execute(text("SELECT 1"))


async def test_a_claim_sent_with_begin_is_in_the_transaction(engine: AsyncEngine) -> None:
    """The statement sent after the pipelined BEGIN, and those after it on the session in
    autocommit, are the transaction's: not seen by others before the commit, and gone
    when it rolls back."""
    account, request_id, later_id = "100000000001", str(uuid.uuid4()), str(uuid.uuid4())

    async def recorded() -> int:
        async with engine.connect() as other:
            found = await other.execute(
                text("SELECT count(*) FROM request_ids WHERE request_id IN (:a, :b)"),
                {"a": request_id, "b": later_id},
            )
            return int(found.scalar_one())

    async with engine.begin() as conn:
        await conn.execute(
            text("INSERT INTO accounts (account_id) VALUES (:a) ON CONFLICT DO NOTHING"),
            {"a": account},
        )
    async with PostgresUnitOfWork(engine) as uow:
        assert await uow.request_ids.claim(account, request_id, "f", "operation", "1") is None
        # A write after it, through SQLAlchemy, on the session in autocommit.
        await uow.conn.execute(
            text(
                "INSERT INTO request_ids (account_id, request_id, fingerprint, result_kind,"
                " result_id) VALUES (:a, :r, 'f', 'operation', '2')"
            ),
            {"a": account, "r": later_id},
        )
        assert await recorded() == 0
    assert await recorded() == 0  # rolled back
    async with PostgresUnitOfWork(engine) as uow:
        assert await uow.request_ids.claim(account, request_id, "f", "operation", "1") is None
        assert await recorded() == 0
        await uow.commit()
    assert await recorded() == 1
    async with PostgresUnitOfWork(engine) as uow:
        assert await uow.request_ids.claim(account, request_id, "g", "operation", "2") == (
            "f",
            "operation",
            "1",
        )


async def test_pause_service_sends_its_locked_read_with_begin(
    harness: Harness, wire: WireTrace
) -> None:
    svc = await harness.running_service(f"rt-{uuid.uuid4().hex[:8]}")
    with wire.attached(harness.app.engine.sync_engine.pool):
        response = await harness.stub.PauseService(
            api.PauseServiceRequest(service_arn=svc.service_arn), metadata=harness.meta()
        )
    assert response.service.status == pb.Service.OPERATION_IN_PROGRESS
    (session,) = [s for s in wire.sessions() if any("INSERT INTO operations" in line for line in s)]
    # BEGIN with the service's row lock; then the writes and COMMIT.
    first = "\n".join(session).split("\tSync\n")[0]
    assert '"BEGIN' in first and "FOR UPDATE" in first, first
    assert round_trips(session) == 2


@pytest.mark.parametrize(
    ("level", "begin"),
    [
        (None, '"BEGIN"'),
        # What a session carries after the pool reset it from an autocommit read.
        (psycopg.IsolationLevel.READ_COMMITTED, '"BEGIN ISOLATION LEVEL READ COMMITTED"'),
        (psycopg.IsolationLevel.SERIALIZABLE, '"BEGIN ISOLATION LEVEL SERIALIZABLE"'),
    ],
)
async def test_the_pipelined_begin_is_the_session_s_own(
    engine: AsyncEngine, tmp_path: Path, level: psycopg.IsolationLevel | None, begin: str
) -> None:
    """Whatever isolation level the pooled session names, its BEGIN goes with the first
    reads in one round trip, and names that level."""
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert isinstance(driver, psycopg.AsyncConnection)
        await driver.set_isolation_level(level)
        path = tmp_path / "session.trace"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        driver.pgconn.trace(fd)
        driver.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            (rows,) = await pipelined_reads(
                conn, ((text("SELECT current_setting('transaction_isolation') AS i"), {}),)
            )
        finally:
            driver.pgconn.untrace()
            os.close(fd)
            await driver.rollback()
            await end_pipelined_transaction(conn)
            await driver.set_isolation_level(None)
    named = (level or psycopg.IsolationLevel.READ_COMMITTED).name.replace("_", " ")
    assert rows == [{"i": named.lower()}]
    lines = path.read_text().splitlines()
    assert round_trips(lines) == 1
    assert any(begin in line for line in lines), lines
