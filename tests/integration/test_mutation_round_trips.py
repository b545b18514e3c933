"""How many round trips to PostgreSQL a mutation's transaction makes, counted on the wire
(libpq's protocol trace of the session that serves it): the writes that need no answer
before the commit (service state, operation, job, audit row, outbox event) go with
COMMIT in one round trip."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import event, text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from tests.support.server import Harness


class WireTrace:
    """libpq's trace of every session the engine hands out while it is on, one file per
    checkout (a checkout serves one unit of work)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._numbers = itertools.count()
        self._open: dict[int, tuple[psycopg.AsyncConnection[Any], int]] = {}

    def checkout(self, dbapi: Any, record: Any, proxy: Any) -> None:
        driver = record.driver_connection
        path = self.directory / f"session-{next(self._numbers)}.trace"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        driver.pgconn.trace(fd)
        driver.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        self._open[id(record)] = (driver, fd)

    def checkin(self, dbapi: Any, record: Any) -> None:
        found = self._open.pop(id(record), None)
        if found is not None:
            driver, fd = found
            driver.pgconn.untrace()
            os.close(fd)

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
    pool = harness.app.engine.sync_engine.pool
    event.listen(pool, "checkout", wire.checkout)
    event.listen(pool, "checkin", wire.checkin)
    try:
        response = await harness.stub.DeleteService(
            api.DeleteServiceRequest(service_arn=svc.service_arn, **request),
            metadata=harness.meta(),
        )
    finally:
        event.remove(pool, "checkout", wire.checkout)
        event.remove(pool, "checkin", wire.checkin)
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


async def test_delete_service_is_four_round_trips(harness: Harness, wire: WireTrace) -> None:
    (session,) = await traced_delete(harness, wire)
    # BEGIN; the service's row lock; the ingress check; then the service's new state,
    # the operation, its job, the audit row, the event and COMMIT, in one.
    assert round_trips(session) == 4


async def test_delete_service_with_a_request_id_adds_only_its_claim(
    harness: Harness, wire: WireTrace
) -> None:
    (session,) = await traced_delete(harness, wire, request_id=str(uuid.uuid4()))
    assert round_trips(session) == 5
