"""Every statement the hot paths run uses an index, on tables grown to a realistic size
(pgqueuer's EXPLAIN-plan regression tests, applied to every repository): the statements
are captured while the repositories, the queue, the outbox and the reaper run, then each
is EXPLAINed; a sequential scan of a grown table fails the test and names the statement."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres import outbox
from servicecontrol_server.adapters.postgres.jobqueue import JobQueue
from servicecontrol_server.adapters.postgres.unit_of_work import PostgresUnitOfWork
from servicecontrol_server.application.ports import LeaseLost
from servicecontrol_server.domain.model import (
    CertificateStatus,
    Operation,
    OperationStatus,
    OperationType,
)

ACCOUNTS = 100
SERVICES_PER_ACCOUNT = 1000  # 100,000 services, nine in ten of them tombstones
ACCOUNT = "100000000007"
# The tables the seed grows; a sequential scan of any of them is a regression.
GROWN = {
    "services",
    "service_configurations",
    "operations",
    "jobs",
    "outbox",
    "connections",
    "certificates",
    "custom_domains",
    "request_ids",
}

SEED = [
    """
    INSERT INTO accounts (account_id)
    SELECT lpad((100000000000 + a)::text, 12, '0') FROM generate_series(0, :accounts - 1) a
    """,
    """
    INSERT INTO services (service_id, account_id, region, service_name, service_arn,
                          service_url, status, created_at, updated_at, deleted_at, purge_at)
    SELECT md5('s' || i), lpad((100000000000 + i % :accounts)::text, 12, '0'), 'us-east-1',
           'svc-' || i, 'arn:aws:apprunner:us-east-1:x:service/svc-' || i || '/' || md5('s' || i),
           md5('u' || i) || '.example', CASE WHEN i % 10 = 0 THEN 'RUNNING' ELSE 'DELETED' END,
           now() - make_interval(secs => i), now(),
           CASE WHEN i % 10 = 0 THEN NULL ELSE now() END,
           CASE WHEN i % 10 = 0 THEN NULL ELSE now() + interval '30 days' END
    FROM generate_series(1, :services) i
    """,
    """
    INSERT INTO service_configurations (service_id, source_configuration,
                                        instance_configuration, health_check_configuration)
    SELECT service_id, '{}', '{}', '{}' FROM services WHERE status <> 'DELETED'
    """,
    """
    INSERT INTO operations (operation_id, account_id, service_id, target_arn, type, status,
                            started_at, ended_at)
    SELECT gen_random_uuid(), account_id, service_id, service_arn, 'DELETE_SERVICE',
           'SUCCEEDED', created_at, now()
    FROM services, generate_series(1, 2)
    """,
    """
    INSERT INTO jobs (kind, service_id, account_id, state, max_attempts, run_at)
    SELECT 'delete_service', md5('s' || i), '100000000001',
           CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'queued' END, 8,
           now() + interval '1 hour'
    FROM generate_series(1, 20000) i
    """,
    """
    INSERT INTO outbox (event_id, account_id, resource_arn, type, payload, position,
                        delivered_at)
    SELECT gen_random_uuid(), lpad((100000000000 + i % :accounts)::text, 12, '0'),
           'arn:aws:apprunner:us-east-1:x:service/s/' || i, 'service.deleted', '{}', i, now()
    FROM generate_series(1, 100000) i
    """,
    "SELECT setval('outbox_position_seq', 100000)",
    """
    INSERT INTO connections (connection_id, account_id, connection_name, connection_arn,
                             provider_type, status, created_at, deleted_at, purge_at)
    SELECT md5('c' || i), lpad((100000000000 + i % :accounts)::text, 12, '0'), 'conn-' || i,
           'arn:aws:apprunner:us-east-1:x:connection/conn-' || i || '/' || md5('c' || i),
           'GITHUB', CASE WHEN i % 2 = 0 THEN 'AVAILABLE' ELSE 'DELETED' END,
           now() - make_interval(secs => i),
           CASE WHEN i % 2 = 0 THEN NULL ELSE now() END,
           CASE WHEN i % 2 = 0 THEN NULL ELSE now() + interval '30 days' END
    FROM generate_series(1, 10000) i
    """,
    """
    INSERT INTO certificates (certificate_id, account_id, certificate_arn, domain_name, status,
                              unlinked_at, expires_at)
    SELECT md5('k' || i), lpad((100000000000 + i % :accounts)::text, 12, '0'),
           'arn:aws:acm:us-east-1:x:certificate/' || md5('k' || i), 'd' || i || '.example.com',
           'ISSUED', now(), now() + interval '7 days'
    FROM generate_series(1, 20000) i
    """,
    """
    INSERT INTO custom_domains (service_id, domain_name, enable_www_subdomain, status,
                                certificate_id)
    SELECT s.service_id, 'd' || s.n || '.example.com', true,
           CASE WHEN s.n % 20 = 0 THEN 'PENDING_CERTIFICATE_DNS_VALIDATION' ELSE 'ACTIVE' END,
           md5('k' || s.n)
    FROM (SELECT service_id, row_number() OVER (ORDER BY service_id) AS n
          FROM services WHERE status <> 'DELETED') AS s
    """,
    """
    INSERT INTO request_ids (account_id, request_id, fingerprint, result_kind, result_id)
    SELECT lpad((100000000000 + i % :accounts)::text, 12, '0'), 'r' || i, 'f', 'operation', 'x'
    FROM generate_series(1, 20000) i
    """,
    "ANALYZE",
]


@pytest.fixture
async def grown(engine: AsyncEngine) -> AsyncEngine:
    params = {"accounts": ACCOUNTS, "services": ACCOUNTS * SERVICES_PER_ACCOUNT}
    async with engine.begin() as conn:
        for statement in SEED:
            await conn.execute(text(statement), {k: v for k, v in params.items()})
    return engine


class Captured:
    def __init__(self) -> None:
        self.statements: list[tuple[str, Any]] = []
        # Off while a test finds its way around the seed; on for what it exercises.
        self.recording = False


@pytest.fixture
def captured(grown: AsyncEngine) -> Iterator[Captured]:
    seen = Captured()

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        dml = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")
        if seen.recording and statement.lstrip().upper().startswith(dml):
            seen.statements.append((statement, parameters))

    event.listen(grown.sync_engine, "before_cursor_execute", record)
    yield seen
    event.remove(grown.sync_engine, "before_cursor_execute", record)


async def _exercise(engine: AsyncEngine, captured: Captured) -> None:
    """What the request path, the workers, the relay and the reaper run, once each."""
    service_id = await _scalar(
        engine, "SELECT service_id FROM services WHERE status = 'RUNNING' LIMIT 1"
    )
    live = await _scalar(
        engine, "SELECT account_id FROM services WHERE service_id = :s", s=service_id
    )
    arn = await _scalar(
        engine, "SELECT service_arn FROM services WHERE service_id = :s", s=service_id
    )
    captured.recording = True
    async with _rolled_back(engine) as uow:
        service = await uow.services.get(live, service_id)
        assert service is not None
        await uow.services.get(live, service_id, for_update=True)
        await uow.services.live_arn_with_name(live, "us-east-1", "svc-1")
        await uow.services.count_live(live, "us-east-1")
        page = await uow.services.list_live(live, "us-east-1", None, 21)
        await uow.services.list_live(
            live, "us-east-1", (page[-1].created_at, page[-1].service_id), 21
        )
        await uow.services.save(service)
        await uow.services.live_arns_using_connection(
            "arn:aws:apprunner:us-east-1:x:connection/c/1"
        )
        op = Operation(
            operation_id=str(uuid.uuid4()),
            account_id=live,
            service_id=service_id,
            target_arn=arn,
            type=OperationType.PAUSE_SERVICE,
            status=OperationStatus.PENDING,
            started_at=datetime.now(UTC),
            updated_at=datetime.now(UTC),
        )
        await uow.operations.add(op)
        await uow.operations.get(live, op.operation_id)
        ops = await uow.operations.list_for_service(live, service_id, None, 21)
        await uow.operations.list_for_service(
            live, service_id, (ops[-1].started_at, ops[-1].operation_id), 21
        )
        await uow.operations.mark_step(op.operation_id, "stop_compute", 1)
        await uow.operations.note_retry(op.operation_id, "x", 1, 2.0)
        await uow.operations.finish(op.operation_id, OperationStatus.SUCCEEDED, 1)
        await uow.request_ids.claim(live, "r-new", "f", "operation", op.operation_id)
        await uow.request_ids.claim(live, "r1", "f", "operation", op.operation_id)
        job_id = await uow.jobs.enqueue(
            kind="pause_service", payload={}, max_attempts=8, service_id=service_id
        )
        await uow.jobs.take_failed_progress("delete_service", service_id)
        with pytest.raises(LeaseLost):
            await uow.jobs.complete(job_id, str(uuid.uuid4()))
        await uow.accounts.lock(live)
        await uow.connections.get_by_arn(live, "arn:aws:apprunner:us-east-1:x:connection/c/1")
        await uow.connections.live_arn_with_name(live, "us-east-1", "conn-2")
        await uow.connections.count_live(live, "us-east-1")
        await uow.connections.list_page(live, "us-east-1", None, None, 21)
        await uow.certificates.get_for_domain(live, "us-east-1", "d1.example.com")
        await uow.certificates.list_page(live, "us-east-1", None, None, 21)
        await uow.certificates.retain([], 60)
        await uow.custom_domains.for_service(service_id)
        await uow.custom_domains.awaiting_validation(None, None, 100)
        await uow.custom_domains.remove_all(service_id)
        await uow.services.delete_configuration(service_id)
        await uow.services.mark_deleted(service, 60)
        await uow.retention.purge_expired_certificates(100)
        await uow.retention.purge_connection_tombstones(100)
        await uow.retention.purge_service_tombstones(100)
        await uow.retention.purge_ended_operations(3600.0, 100)
        await uow.retention.purge_request_ids(3600.0, 100)
        await uow.retention.purge_orphaned_failed_jobs(100)
        await uow.retention.prune_delivered_events(3600.0, 100)
        await uow.certificates.set_validation("nope", CertificateStatus.ISSUED, [])
        # DeleteVpcConnector's check, on the grown configurations.
        await uow.vpc.services_using_connector(
            f"arn:aws:apprunner:us-east-1:{live}:vpcconnector/egress/1/{'0' * 32}"
        )
    queue = JobQueue(engine)
    await queue.claim("plans", 4, 30)
    await queue.heartbeat(1, str(uuid.uuid4()), 30)
    await queue.rescue_expired()
    await queue.seconds_until_next()
    await outbox.OutboxRelay(engine).relay_once()
    await outbox.EventLog(engine).read(live, 99_000, 100)
    await outbox.EventLog(engine).read(live, 0, 100, arn)


class _rolled_back:
    """A unit of work whose writes are thrown away: the seed stays as it was."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.uow = PostgresUnitOfWork(engine)

    async def __aenter__(self) -> PostgresUnitOfWork:
        return await self.uow.__aenter__()

    async def __aexit__(self, *exc: Any) -> None:
        await self.uow.__aexit__(*exc)


async def _scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


def _seq_scans(plan: dict[str, Any]) -> list[str]:
    found = []
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in GROWN:
        found.append(plan["Relation Name"])
    for child in plan.get("Plans", []):
        found += _seq_scans(child)
    return found


async def test_no_hot_statement_scans_a_grown_table(grown: AsyncEngine, captured: Captured) -> None:
    await _exercise(grown, captured)
    assert len(captured.statements) > 40
    offenders: list[str] = []
    async with grown.connect() as conn:
        for statement, parameters in captured.statements:
            explained = await conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters)
            plan = (
                json.loads(explained.scalar_one())
                if isinstance(explained, str)
                else explained.scalar_one()
            )
            scans = _seq_scans(plan[0]["Plan"])
            if scans:
                offenders.append(f"{sorted(set(scans))}: {' '.join(statement.split())[:300]}")
        await conn.rollback()
    assert offenders == [], "statements that scan a grown table:\n" + "\n".join(offenders)
