"""Each hot statement uses the index it was written for, on tables grown to the size a
long-lived installation reaches (pgqueuer's EXPLAIN-plan regression tests): 90,000 service
tombstones, 200,000 operations, a queue with a backlog, 200,000 relayed outbox rows,
100,000 retained certificates. Every named statement (a module-level SQL constant) of the
modules below is declared here with the index its plan must use, or as exempt with the
reason: a new constant fails the completeness test until it is declared, and a changed
statement is EXPLAINed by its name, whatever its text has become.

The statements the repositories build per call (pages, lookups) are captured while the
repository method runs and EXPLAINed the same way; so is every statement of a walk through
the request path, the workers, the relay and the reaper, none of which may scan a grown
table. The churning tables' autovacuum
settings are checked against schema.STORAGE_PARAMETERS."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import psycopg
import pytest
from psycopg.sql import Literal
from psycopg.types.json import Jsonb
from sqlalchemy import TextClause, event, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from servicecontrol_server.adapters.postgres import (
    event_hub,
    identity,
    jobqueue,
    migrate,
    outbox,
    presence,
    schema,
    stats,
    ttl,
)
from servicecontrol_server.adapters.postgres.database import create_engine, libpq_url, with_database
from servicecontrol_server.adapters.postgres.repositories import (
    config_resources,
    operations,
    services,
    vpc,
)
from servicecontrol_server.adapters.postgres.unit_of_work import PostgresUnitOfWork
from servicecontrol_server.domain.model import (
    CertificateStatus,
    Operation,
    OperationStatus,
    OperationType,
)

MODULES: list[ModuleType] = [
    jobqueue,
    outbox,
    event_hub,
    stats,
    ttl,
    identity,
    presence,
    services,
    operations,
    vpc,
    config_resources,
]

ACCOUNTS = 100
SERVICES = 100_000  # nine in ten of them tombstones
ACCOUNT = "100000000007"
REGION = "us-east-1"
LIVE_SERVICE = "s10"  # i % 10 == 0: live; its account is 100000000010
LIVE_ACCOUNT = "100000000010"
TOMBSTONE = "s11"
TOKEN = str(uuid.uuid4())

# Seeding the grown tables takes most of a minute on a quiet machine, minutes on a busy one.
GROWN_TIMEOUT = pytest.mark.timeout(600)

# Tables the seed grows: a sequential scan of any of them is a regression.
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
    "api_keys",
    "resource_tags",
}

_account = "lpad((100000000000 + i % :accounts)::text, 12, '0')"
SEED = [
    f"INSERT INTO accounts (account_id) SELECT {_account} FROM generate_series(0, :accounts - 1) i",
    # Services as the system leaves them: live ones with their configuration, tombstones
    # (DELETED, configuration removed) waiting for purge_at.
    f"""
    INSERT INTO services (service_id, account_id, region, service_name, service_arn,
                          service_url, status, created_at, updated_at, deleted_at, purge_at)
    SELECT 's' || i, {_account}, 'us-east-1', 'svc-' || i,
           'arn:aws:apprunner:us-east-1:x:service/svc-' || i || '/' || md5('s' || i),
           md5('u' || i) || '.example', CASE WHEN i % 10 = 0 THEN 'RUNNING' ELSE 'DELETED' END,
           now() - make_interval(secs => i), now(),
           CASE WHEN i % 10 = 0 THEN NULL ELSE now() END,
           CASE WHEN i % 10 = 0 THEN NULL ELSE now() + interval '30 days' END
    FROM generate_series(1, :services) i
    """,
    """
    INSERT INTO service_configurations (service_id, source_configuration,
                                        instance_configuration, health_check_configuration,
                                        auto_scaling_configuration_arn, network_configuration)
    SELECT service_id, '{}', '{}', '{}', 'arn:asc/' || (hashtext(service_id) % 50),
           '{"egress_configuration": {"egress_type": "DEFAULT"}}'
    FROM services WHERE status <> 'DELETED'
    """,
    """
    INSERT INTO operations (operation_id, account_id, service_id, target_arn, type, status,
                            started_at, ended_at)
    SELECT gen_random_uuid(), account_id, service_id, service_arn,
           CASE WHEN n = 1 THEN 'CREATE_SERVICE' ELSE 'DELETE_SERVICE' END,
           'SUCCEEDED', created_at + make_interval(secs => n), now()
    FROM services, generate_series(1, 2) n
    """,
    # A backlog: queued jobs not yet due, running ones under lease, a few failed.
    """
    INSERT INTO jobs (kind, service_id, account_id, state, max_attempts, run_at,
                      lease_token, lease_owner, lease_expires_at)
    SELECT 'delete_service', 's' || i, '100000000001',
           CASE WHEN i % 100 = 0 THEN 'failed' WHEN i % 20 = 1 THEN 'running'
                ELSE 'queued' END, 8,
           now() + interval '1 hour',
           CASE WHEN i % 20 = 1 THEN gen_random_uuid() END,
           CASE WHEN i % 20 = 1 THEN 'w' END,
           CASE WHEN i % 20 = 1 THEN now() + interval '1 minute' END
    FROM generate_series(1, 20000) i
    """,
    # The outbox as the relay leaves it: relayed (position, delivered_at) and retained
    # until the pruner's retention passes; a handful pending.
    f"""
    INSERT INTO outbox (event_id, account_id, resource_arn, type, payload, position,
                        delivered_at)
    SELECT gen_random_uuid(), {_account},
           'arn:aws:apprunner:us-east-1:x:service/s/' || (i % 5000), 'service.deleted', '{{}}',
           CASE WHEN i > 199990 THEN NULL ELSE i END,
           CASE WHEN i > 199990 THEN NULL ELSE now() - make_interval(secs => (200000 - i) / 10)
           END
    FROM generate_series(1, 200000) i
    """,
    "SELECT setval('outbox_position_seq', 200000)",
    f"""
    INSERT INTO connections (connection_id, account_id, connection_name, connection_arn,
                             provider_type, status, created_at, deleted_at, purge_at)
    SELECT md5('c' || i), {_account}, 'conn-' || i,
           'arn:aws:apprunner:us-east-1:x:connection/conn-' || i || '/' || md5('c' || i),
           'GITHUB', CASE WHEN i % 2 = 0 THEN 'AVAILABLE' ELSE 'DELETED' END,
           now() - make_interval(secs => i),
           CASE WHEN i % 2 = 0 THEN NULL ELSE now() END,
           CASE WHEN i % 2 = 0 THEN NULL ELSE now() + interval '30 days' END
    FROM generate_series(1, 10000) i
    """,
    # Retained certificates: unlinked from their (deleted) service, kept until expires_at.
    f"""
    INSERT INTO certificates (certificate_id, account_id, certificate_arn, domain_name, status,
                              unlinked_at, expires_at)
    SELECT 'k' || i, {_account},
           'arn:aws:acm:us-east-1:x:certificate/' || md5('k' || i), 'd' || i || '.example.com',
           'ISSUED', now(), now() + interval '7 days'
    FROM generate_series(1, 100000) i
    """,
    """
    INSERT INTO custom_domains (service_id, domain_name, enable_www_subdomain, status,
                                certificate_id)
    SELECT s.service_id, 'd' || s.n || '.example.com', true,
           CASE WHEN s.n % 20 = 0 THEN 'PENDING_CERTIFICATE_DNS_VALIDATION' ELSE 'ACTIVE' END,
           'k' || s.n
    FROM (SELECT service_id, row_number() OVER (ORDER BY service_id) AS n
          FROM services WHERE status <> 'DELETED') AS s
    """,
    f"""
    INSERT INTO request_ids (account_id, request_id, fingerprint, result_kind, result_id,
                             created_at)
    SELECT {_account}, 'r' || i, 'f', 'operation', 'x', now() - make_interval(secs => i)
    FROM generate_series(1, 50000) i
    """,
    f"""
    INSERT INTO api_keys (key_id, account_id, role, secret_hash, secret_sealed)
    SELECT 'key' || i, {_account}, 'writer', md5('h' || i), 'sealed'
    FROM generate_series(1, 10000) i
    """,
    f"""
    INSERT INTO resource_tags (resource_arn, tag_key, account_id, tag_value)
    SELECT 'arn:aws:apprunner:us-east-1:x:service/svc-' || i || '/' || md5('s' || i),
           'k' || n, {_account}, 'v'
    FROM generate_series(1, 25000) i, generate_series(1, 2) n
    """,
    "ANALYZE",
]


@pytest.fixture(scope="module")
async def grown(postgres_admin_url: str, template_database: str) -> AsyncIterator[AsyncEngine]:
    """One grown database for the module's tests: they only read and explain (a repository
    call's unit of work is rolled back), so the seed, the slow part, runs once."""
    name = f"g_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    engine = create_engine(with_database(postgres_admin_url, name))
    try:
        async with engine.begin() as conn:
            for statement in SEED:
                await conn.execute(text(statement), {"accounts": ACCOUNTS, "services": SERVICES})
        yield engine
    finally:
        await engine.dispose()
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class Hot:
    """A hot statement's representative parameters and the indexes its plan must use (all
    of them; "a|b": either, where both fit and the planner picks by the data); an empty
    set: it reads no grown table, and must not scan one."""

    params: dict[str, Any]
    indexes: frozenset[str] = field(default_factory=frozenset)


def _hot(params: dict[str, Any], *indexes: str) -> Hot:
    return Hot(params, frozenset(indexes))


_lease = {"job_ids": [1, 2, 3], "tokens": [TOKEN] * 3}
_claim = {"limit": 10, "owner": "w", "lease_seconds": 30.0}
_svc_arn = f"arn:aws:apprunner:us-east-1:{LIVE_ACCOUNT}:service/svc-10/x"

HOT: dict[str, Hot] = {
    # The job queue: claim, complete, heartbeat, rescue, the engine's round trip.
    "jobqueue.COMPLETE_AND_CLAIM": _hot({**_lease, **_claim}, "pk_jobs", "ix_jobs_ready"),
    "jobqueue.COMPLETE_MANY": _hot(_lease, "pk_jobs"),
    "jobqueue.COMPLETE": _hot({"job_id": 1, "token": TOKEN}, "pk_jobs"),
    "jobqueue.COMPLETE_OR_FAIL": _hot({"job_id": 1, "token": TOKEN}, "pk_jobs"),
    "jobqueue.HEARTBEAT": _hot({**_lease, "lease_seconds": 30.0}, "pk_jobs"),
    "jobqueue.SAVE_PROGRESS": _hot(
        {"changes": Jsonb({"step": 1}), "job_id": 1, "token": TOKEN}, "pk_jobs"
    ),
    "jobqueue.SAVE_PROGRESS_AT_STEP": _hot(
        {
            "changes": Jsonb({"step": 1}),
            "job_id": 1,
            "token": TOKEN,
            "step": "delete_image_copy",
            "attempt": 1,
        },
        "pk_jobs",
        "pk_operations",
    ),
    "jobqueue.MARK_STEP": _hot(
        {"job_id": 1, "token": TOKEN, "step": "delete_configuration", "attempt": 1},
        "pk_jobs",
        "pk_operations",
    ),
    "jobqueue.MARK_FAILED": _hot({"job_id": 1, "token": TOKEN, "error": "x"}, "pk_jobs"),
    "jobqueue.RETRY_LATER": _hot(
        {"delay_seconds": 1.0, "error": "x", "transient": True, "job_id": 1, "token": TOKEN},
        "pk_jobs",
    ),
    "jobqueue.RELEASE": _hot({"job_id": 1, "token": TOKEN}, "pk_jobs"),
    "jobqueue.RESCUE_EXPIRED": _hot({"limit": 100}, "ix_jobs_leases"),
    "jobqueue.TAKE_FAILED_PROGRESS": _hot(
        {"kind": "delete_service", "service_id": "s100"}, "ix_jobs_failed_service"
    ),
    "jobqueue.SECONDS_UNTIL_NEXT": _hot({}, "ix_jobs_ready"),
    # The outbox: relay, prune, the event feed.
    # The pending rows are found by position IS NULL: the partial index or the unique
    # index on position (NULLs are in it), both answer with the pending rows only.
    "outbox.RELAY": _hot(
        {"key": 1, "batch": 500}, "ix_outbox_pending|uq_outbox_position", "pk_outbox"
    ),
    "outbox.PRUNE_DELIVERED": _hot(
        {"older_than_seconds": 86400.0, "batch": 500}, "ix_outbox_delivered"
    ),
    "outbox.READ_EVENTS": _hot(
        {"account_id": ACCOUNT, "after_position": 150_000, "resource_arn": None, "limit": 100},
        "ix_outbox_stream",
    ),
    "outbox.HEAD_POSITION": _hot({"account_id": ACCOUNT}, "ix_outbox_stream"),
    "event_hub.READ_LOG": _hot({"after_position": 199_000, "limit": 500}, "uq_outbox_position"),
    "event_hub.LOG_HEAD": _hot({}, "uq_outbox_position"),
    "event_hub.READ_ACCOUNT_RANGE": _hot(
        {
            "account_id": ACCOUNT,
            "after_position": 150_000,
            "until_position": 199_000,
            "resource_arn": "arn:aws:apprunner:us-east-1:x:service/s/7",
            "limit": 100,
        },
        "ix_outbox_stream",
    ),
    # Metrics and admission control.
    "stats.BACKLOG": _hot({}, "ix_jobs_ready", "ix_outbox_pending|uq_outbox_position"),
    "stats.READY_JOBS": _hot({"at_most": 1000}, "ix_jobs_ready"),
    # The TTL reaper.
    "ttl.PURGE_EXPIRED_CERTIFICATES": _hot({"batch": 100}, "ix_certificates_expires_at"),
    "ttl.PURGE_CERTIFICATE_IF_EXPIRED": _hot(
        # By id, or by expiry when few certificates are expired (none here).
        {"certificate_id": "k5"},
        "pk_certificates|ix_certificates_expires_at",
        "ix_custom_domains_certificate",
    ),
    "ttl.PURGE_CONNECTION_TOMBSTONES": _hot({"batch": 100}, "ix_connections_purge_at"),
    "ttl.PURGE_SERVICE_TOMBSTONES": _hot({"batch": 100}, "ix_services_purge_at"),
    "ttl.DELETE_OPERATIONS_OF_SERVICES": _hot(
        {"service_ids": ["s11", "s12"]}, "ix_operations_by_service"
    ),
    "ttl.DELETE_FAILED_JOBS_OF_SERVICES": _hot(
        {"service_ids": ["s100", "s200"]}, "ix_jobs_failed_service"
    ),
    "ttl.PURGE_ENDED_OPERATIONS": _hot(
        {"older_than_seconds": 86400.0, "batch": 100}, "ix_operations_ended_at"
    ),
    "ttl.PURGE_REQUEST_IDS": _hot(
        {"older_than_seconds": 86400.0, "batch": 100}, "ix_request_ids_created_at"
    ),
    "ttl.PURGE_ORPHANED_FAILED_JOBS": _hot({"batch": 100}, "ix_jobs_failed", "pk_services"),
    # Every authenticated call's key.
    "identity.GET_KEY": _hot({"key_id": "key5"}, "pk_api_keys"),
    # The request path's service row.
    "services.GET_SERVICE": _hot(
        {"account_id": LIVE_ACCOUNT, "service_id": LIVE_SERVICE},
        "pk_services",
        "pk_service_configurations",
    ),
    "services.GET_SERVICE_FOR_UPDATE": _hot(
        {"account_id": LIVE_ACCOUNT, "service_id": LIVE_SERVICE},
        "pk_services",
        "pk_service_configurations",
    ),
    "services.LIST_LIVE_SERVICES": _hot(
        {"account_id": LIVE_ACCOUNT, "region": REGION, "limit": 21},
        "ix_services_live_listing",
        "pk_service_configurations",
    ),
    "services.LIST_LIVE_SERVICES_AFTER": _hot(
        {
            "account_id": LIVE_ACCOUNT,
            "region": REGION,
            "limit": 21,
            "after_time": datetime.now(UTC),
            "after_id": "s500",
        },
        "ix_services_live_listing",
    ),
    "services.DELETE_CONFIGURATION": _hot(
        {"service_id": LIVE_SERVICE}, "pk_service_configurations"
    ),
    "services.TOMBSTONE_SERVICE": _hot(
        {
            "service_id": LIVE_SERVICE,
            "service_arn": _svc_arn,
            "tombstone_seconds": 60,
            "certificate_retention_seconds": 60,
        },
        "pk_services",
        "pk_service_configurations",
        "pk_custom_domains",
        "pk_certificates",
        "pk_resource_tags",
    ),
    "operations.FINISH_OPERATION": _hot(
        {
            "status": "SUCCEEDED",
            "attempt": 1,
            "succeeded": True,
            "error": None,
            "deletion_report": Jsonb({"image_objects": 1}),
            "operation_id": str(uuid.uuid4()),
        },
        "pk_operations",
    ),
    "operations.MARK_STEP_LAZILY": _hot(
        {
            "status": "IN_PROGRESS",
            "step": "stop_compute",
            "attempt": 1,
            "operation_id": str(uuid.uuid4()),
        },
        "pk_operations",
    ),
    "services.SAVE_SERVICE": _hot(
        {
            "status": "OPERATION_IN_PROGRESS",
            "status_message": "",
            "current_operation_id": None,
            "status_before_operation": None,
            "connection_arn": None,
            "deleted_at": None,
            "purge_at": None,
            "service_id": LIVE_SERVICE,
        },
        "pk_services",
    ),
    # DeleteVpcConnector's and the configuration resources' checks on the grown tables.
    "vpc.SERVICES_USING_CONNECTOR": _hot(
        {"arn": "arn:vpcconnector/x", "deleted": "DELETED"},
        "ix_service_configurations_vpc_connector",
    ),
    "config_resources.SERVICES_USING": _hot(
        {"account_id": LIVE_ACCOUNT, "arn": "arn:asc/7", "after": None, "limit": 20}
    ),
    "config_resources.IN_USE": _hot(
        {"arns": ["arn:asc/7"]},
        "ix_service_configurations_auto_scaling",
        "ix_service_configurations_observability",
        "ix_jobs_active_updates",
    ),
}

# Named statements with no plan worth asserting, and why.
EXEMPT: dict[str, str] = {
    "jobqueue.ENQUEUE": "a single-row INSERT",
    "identity.INSERT_AUDIT": "a single-row INSERT",
    "outbox.INSERT_EVENT": "a single-row INSERT",
    "outbox.INSERT_ONE_EVENT": "a single-row INSERT",
    "outbox.NOTIFY_OUTBOX": "pg_notify, no table",
    "operations.ADD_OPERATION": "a single-row INSERT",
    "presence.LIVE_WORKERS": "reads pg_locks, no table of ours",
    "vpc.PURGE_CONNECTOR_TOMBSTONES": "vpc_connectors: a few rows per account",
    "vpc.PURGE_INGRESS_TOMBSTONES": "vpc_ingress_connections: a few rows per account",
    # vpc.LIVE_INGRESS_FOR_SERVICE (services imports it, for DeleteService).
    "services.LIVE_INGRESS_FOR_SERVICE": "vpc_ingress_connections: one live row per service",
    "config_resources.GET_CONFIG": "config_resources: a few rows per account",
    "config_resources.ACTIVE_REVISIONS": "config_resources: a few rows per account",
    "config_resources.GET_DEFAULT": "config_resources: a few rows per account",
    "config_resources.COUNT_ACTIVE_NAMES": "config_resources: a few rows per account",
    "config_resources.LIST_PAGE": "config_resources: a few rows per account",
    "config_resources.MARK_INACTIVE": "config_resources: a few rows per account",
    "config_resources.CLEAR_DEFAULT": "config_resources: a few rows per account",
    "config_resources.SET_DEFAULT": "config_resources: a few rows per account",
}

_DML = ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH")


def named_statements() -> dict[str, str | TextClause]:
    """Every module-level SQL constant of MODULES, as "module.NAME" (a constant one module
    imports from another is named after the first in MODULES)."""
    found: dict[str, str | TextClause] = {}
    seen: set[int] = set()
    for module in MODULES:
        short = module.__name__.rsplit(".", 1)[1]
        for name, value in vars(module).items():
            if not name.isupper() or name.startswith("_"):
                continue
            sql = value.text if isinstance(value, TextClause) else value
            is_sql = isinstance(sql, str) and sql.lstrip().upper().startswith(_DML)
            if is_sql and id(value) not in seen:
                seen.add(id(value))
                found[f"{short}.{name}"] = value
    return found


def test_every_named_statement_is_declared_hot_or_exempt() -> None:
    named = set(named_statements())
    assert named - HOT.keys() - EXEMPT.keys() == set(), "declare these in HOT or EXEMPT"
    assert (HOT.keys() | EXEMPT.keys()) - named == set(), "these statements no longer exist"


@dataclass
class Plan:
    indexes: set[str] = field(default_factory=set)
    seq_scans: set[str] = field(default_factory=set)

    def missing(self, expected: set[str] | frozenset[str]) -> list[str]:
        return sorted(e for e in expected if not self.indexes & set(e.split("|")))


def _walk(node: dict[str, Any], plan: Plan) -> Plan:
    if "Index Name" in node:
        plan.indexes.add(node["Index Name"])
    if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") in GROWN:
        plan.seq_scans.add(node["Relation Name"])
    for child in node.get("Plans", []):
        _walk(child, plan)
    return plan


async def explain(conn: AsyncConnection, statement: str | TextClause, params: Any) -> Plan:
    if isinstance(statement, str) and "%(" in statement:
        # Driver SQL (the worker's prepared statements), pyformat parameters.
        result = await conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, params)
    else:
        clause = statement if isinstance(statement, TextClause) else text(statement)
        explained = text("EXPLAIN (FORMAT JSON) " + clause.text).bindparams(
            *clause._bindparams.values()
        )
        result = await conn.execute(explained, params)
    raw = result.scalar_one()
    document = json.loads(raw) if isinstance(raw, str) else raw
    return _walk(document[0]["Plan"], Plan())


async def each_hot_statement_uses_its_index(grown: AsyncEngine) -> None:
    named = named_statements()
    wrong: list[str] = []
    async with grown.connect() as conn:
        for name, hot in HOT.items():
            plan = await explain(conn, named[name], hot.params)
            missing = plan.missing(hot.indexes)
            if missing or plan.seq_scans:
                wrong.append(
                    f"{name}: missing {sorted(missing)}, seq scans {sorted(plan.seq_scans)},"
                    f" used {sorted(plan.indexes)}"
                )
        await conn.rollback()
    assert wrong == [], "hot statements off their index:\n" + "\n".join(wrong)


async def generic_plan(conn: AsyncConnection, statement: str, params: dict[str, Any]) -> Plan:
    """The plan Postgres settles on for a prepared statement (the queue's are prepared on
    its connections, and after five runs may be planned once for any parameters): the
    statement prepared with $n parameters and explained under force_generic_plan."""
    order: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in order:
            order.append(match.group(1))
        return f"${order.index(match.group(1)) + 1}"

    numbered = re.sub(r"%\((\w+)\)s", number, statement)
    await conn.exec_driver_sql("SET plan_cache_mode = force_generic_plan")
    await conn.exec_driver_sql(f"PREPARE generic_check AS {numbered}")
    try:
        # Each argument cast to the type Postgres inferred for its parameter.
        types = (
            await conn.exec_driver_sql(
                "SELECT parameter_types::text[] FROM pg_prepared_statements"
                " WHERE name = 'generic_check'"
            )
        ).scalar_one()
        # Literals: EXPLAIN EXECUTE takes no bound parameters of its own.
        raw_conn = (await conn.get_raw_connection()).driver_connection
        arguments = ", ".join(
            f"({Literal(params[name]).as_string(raw_conn)})::{type_}"
            for name, type_ in zip(order, types, strict=True)
        )
        raw = (
            await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) EXECUTE generic_check({arguments})")
        ).scalar_one()
    finally:
        await conn.exec_driver_sql("DEALLOCATE generic_check")
        await conn.exec_driver_sql("RESET plan_cache_mode")
    document = json.loads(raw) if isinstance(raw, str) else raw
    return _walk(document[0]["Plan"], Plan())


async def prepared_queue_statements_keep_their_index_in_a_generic_plan(
    grown: AsyncEngine,
) -> None:
    named = named_statements()
    prepared = {name: sql for name, sql in named.items() if isinstance(sql, str) and "%(" in sql}
    assert "jobqueue.COMPLETE_AND_CLAIM" in prepared
    wrong: list[str] = []
    async with grown.connect() as conn:
        for name, sql in prepared.items():
            assert isinstance(sql, str)
            plan = await generic_plan(conn, sql, HOT[name].params)
            missing = plan.missing(HOT[name].indexes)
            if missing or plan.seq_scans:
                wrong.append(
                    f"{name}: missing {missing}, seq scans {sorted(plan.seq_scans)},"
                    f" used {sorted(plan.indexes)}"
                )
        await conn.rollback()
    assert wrong == [], "generic plans off their index:\n" + "\n".join(wrong)


# ------------------------------------------------------------ statements built per call

RepositoryCall = Callable[[PostgresUnitOfWork], Awaitable[Any]]


async def _list_second_page(uow: PostgresUnitOfWork) -> Any:
    first = await uow.services.list_live(LIVE_ACCOUNT, REGION, None, 21)
    return await uow.services.list_live(
        LIVE_ACCOUNT, REGION, (first[-1].created_at, first[-1].service_id), 21
    )


# (label, call, indexes its statements must use between them)
BUILT: list[tuple[str, RepositoryCall, set[str]]] = [
    (
        "services.list_live (first page)",
        lambda uow: uow.services.list_live(LIVE_ACCOUNT, REGION, None, 21),
        {"ix_services_live_listing", "pk_service_configurations"},
    ),
    ("services.list_live (keyset page)", _list_second_page, {"ix_services_live_listing"}),
    (
        "services.live_arn_with_name",
        lambda uow: uow.services.live_arn_with_name(LIVE_ACCOUNT, REGION, "svc-10"),
        {"ix_services_live_name"},
    ),
    (
        "services.count_live",
        lambda uow: uow.services.count_live(LIVE_ACCOUNT, REGION),
        {"ix_services_live_name|ix_services_live_listing"},
    ),
    (
        "operations.get",
        lambda uow: uow.operations.get(LIVE_ACCOUNT, str(uuid.uuid4())),
        {"pk_operations"},
    ),
    (
        "operations.list_for_service",
        lambda uow: uow.operations.list_for_service(LIVE_ACCOUNT, LIVE_SERVICE, None, 21),
        {"ix_operations_by_service"},
    ),
    (
        "request_ids.get",
        lambda uow: uow.request_ids.get(ACCOUNT, "r7"),
        {"pk_request_ids"},
    ),
    (
        "tags.for_resource",
        lambda uow: uow.tags.for_resource(_svc_arn),
        {"pk_resource_tags"},
    ),
    (
        "tags.delete_all",
        lambda uow: uow.tags.delete_all(_svc_arn),
        {"pk_resource_tags"},
    ),
    (
        "certificates.get_for_domain",
        lambda uow: uow.certificates.get_for_domain(ACCOUNT, REGION, "d7.example.com"),
        {"uq_certificates_account_id_region_domain_name"},
    ),
    (
        "certificates.list_page",
        lambda uow: uow.certificates.list_page(ACCOUNT, REGION, None, None, 21),
        {"uq_certificates_account_id_region_domain_name"},
    ),
    (
        "custom_domains.for_service",
        lambda uow: uow.custom_domains.for_service(LIVE_SERVICE),
        {"pk_custom_domains"},
    ),
]


@pytest.fixture
def recorded(grown: AsyncEngine) -> Iterator[list[tuple[str, Any]]]:
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith(_DML):
            statements.append((statement, parameters))

    event.listen(grown.sync_engine, "before_cursor_execute", record)
    yield statements
    event.remove(grown.sync_engine, "before_cursor_execute", record)


async def explain_captured(
    conn: AsyncConnection, statement: str, parameters: Any, plan: Plan
) -> Plan:
    """`plan` with what the plan of a statement captured as the driver ran it adds."""
    raw = (
        await conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters)
    ).scalar_one()
    document = json.loads(raw) if isinstance(raw, str) else raw
    return _walk(document[0]["Plan"], plan)


async def statements_built_per_call_use_their_index(
    grown: AsyncEngine, recorded: list[tuple[str, Any]]
) -> None:
    wrong: list[str] = []
    for label, call, indexes in BUILT:
        recorded.clear()
        uow = PostgresUnitOfWork(grown)
        async with uow:  # never committed: rolled back on exit
            await call(uow)
        captured = list(recorded)
        assert captured, f"{label} ran no statement"
        plan = Plan()
        async with grown.connect() as conn:
            for statement, parameters in captured:
                await explain_captured(conn, statement, parameters, plan)
            await conn.rollback()
        if plan.missing(indexes) or plan.seq_scans:
            wrong.append(
                f"{label}: missing {plan.missing(indexes)}, seq scans"
                f" {sorted(plan.seq_scans)}, used {sorted(plan.indexes)}"
            )
    assert wrong == [], "repository statements off their index:\n" + "\n".join(wrong)


# ------------------------------------------------------------ every statement of a walk


async def _walk_the_hot_paths(engine: AsyncEngine, recorded: list[tuple[str, Any]]) -> None:
    """What the request path, the workers, the relay and the reaper run, once each; the
    statements are recorded from the first repository call on. The units of work are
    rolled back; the queue's and the relay's own transactions change nothing the
    module's other tests read (no job is due, no lease matches, a handful of events
    pending), and this walk runs after them."""
    async with engine.connect() as conn:
        service_id, live, arn = (
            await conn.execute(
                text(
                    "SELECT service_id, account_id, service_arn FROM services"
                    " WHERE status = 'RUNNING' LIMIT 1"
                )
            )
        ).one()
    recorded.clear()
    async with PostgresUnitOfWork(engine) as uow:  # never committed: rolled back on exit
        service = await uow.services.get(live, service_id)
        assert service is not None
        await uow.services.get(live, service_id, for_update=True)
        await uow.services.live_arn_with_name(live, REGION, "svc-1")
        await uow.services.count_live(live, REGION)
        page = await uow.services.list_live(live, REGION, None, 21)
        await uow.services.list_live(live, REGION, (page[-1].created_at, page[-1].service_id), 21)
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
        await uow.accounts.lock(live)
        await uow.connections.get_by_arn(live, "arn:aws:apprunner:us-east-1:x:connection/c/1")
        await uow.connections.live_arn_with_name(live, REGION, "conn-2")
        await uow.connections.count_live(live, REGION)
        await uow.connections.list_page(live, REGION, None, None, 21)
        await uow.certificates.get_for_domain(live, REGION, "d1.example.com")
        await uow.certificates.list_page(live, REGION, None, None, 21)
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
        # Held for a commit that never comes (COMPLETE_OR_FAIL is declared above); sent
        # before any later statement, it would fail: no lease matches.
        await uow.jobs.complete(job_id, str(uuid.uuid4()))
    queue = jobqueue.JobQueue(engine)
    await queue.claim("plans", 4, 30)
    await queue.heartbeat(1, str(uuid.uuid4()), 30)
    await queue.rescue_expired()
    await queue.seconds_until_next()
    await outbox.OutboxRelay(engine).relay_once()
    await outbox.EventLog(engine).read(live, 199_000, 100)
    await outbox.EventLog(engine).read(live, 0, 100, arn)


async def no_statement_of_a_walk_through_the_hot_paths_scans_a_grown_table(
    grown: AsyncEngine, recorded: list[tuple[str, Any]]
) -> None:
    """Whatever statement a repository, the queue, the relay or the reaper runs, named or
    built, declared above or not: none scans a grown table."""
    recorded.clear()
    await _walk_the_hot_paths(grown, recorded)
    captured = list(recorded)
    assert len(captured) > 40
    offenders: list[str] = []
    async with grown.connect() as conn:
        for statement, parameters in captured:
            scans = (await explain_captured(conn, statement, parameters, Plan())).seq_scans
            if scans:
                offenders.append(f"{sorted(scans)}: {' '.join(statement.split())[:300]}")
        await conn.rollback()
    assert offenders == [], "statements that scan a grown table:\n" + "\n".join(offenders)


# ------------------------------------------------------------ the checks, on one grown database


@GROWN_TIMEOUT
async def test_statement_plans_on_grown_tables(
    grown: AsyncEngine, recorded: list[tuple[str, Any]]
) -> None:
    """Every check above, on one grown database. Seeding it is the slow part (20-45 s) and
    the checks take a second: as tests of their own they were spread over the suite's
    workers, and each worker seeded a database of its own. Each check runs whatever an
    earlier one found; every failure is reported."""
    checks: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("named hot statements", lambda: each_hot_statement_uses_its_index(grown)),
        (
            "generic plans of the queue's prepared statements",
            lambda: prepared_queue_statements_keep_their_index_in_a_generic_plan(grown),
        ),
        (
            "statements built per call",
            lambda: statements_built_per_call_use_their_index(grown, recorded),
        ),
        (
            "a walk through the hot paths",
            lambda: no_statement_of_a_walk_through_the_hot_paths_scans_a_grown_table(
                grown, recorded
            ),
        ),
    ]
    failures: list[str] = []
    for label, check in checks:
        try:
            await check()
        except AssertionError as exc:
            failures.append(f"{label}: {exc}")
    assert failures == [], "\n\n".join(failures)


# ------------------------------------------------------------ autovacuum settings


async def test_churning_tables_carry_their_autovacuum_settings(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                """
                SELECT c.relname, o.option_name, o.option_value
                FROM pg_class c
                CROSS JOIN LATERAL pg_options_to_table(c.reloptions) AS o
                WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r'
                """
            )
        )
        live: dict[str, dict[str, str]] = {}
        for table, name, value in rows:
            live.setdefault(table, {})[name] = value
    assert live == schema.STORAGE_PARAMETERS
    # The queue is vacuumed after a fixed number of dead rows, whatever its backlog.
    assert live["jobs"]["autovacuum_vacuum_scale_factor"] == "0"
    assert float(live["outbox"]["autovacuum_vacuum_scale_factor"]) <= 0.01


def test_the_migrations_check_sees_storage_parameters_drift(database_url: str) -> None:
    """A storage parameter changed by hand, or declared without a migration, is reported."""
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("ALTER TABLE jobs RESET (autovacuum_vacuum_scale_factor)")
        conn.execute("ALTER TABLE accounts SET (fillfactor = 90)")

    differences = migrate.pending_differences(database_url)

    assert ("storage", "jobs", "autovacuum_vacuum_scale_factor", None, "0") in differences
    assert ("storage", "accounts", "fillfactor", "90", None) in differences
