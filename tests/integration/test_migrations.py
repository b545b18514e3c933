"""The alembic migrations against a real PostgreSQL: they build exactly schema.py, undo
cleanly, and serialise replicas that start together."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import BigInteger, Column, Index, MetaData, Text, text

from servicecontrol_server.adapters.postgres import migrate, schema
from servicecontrol_server.adapters.postgres.database import libpq_url, with_database

# The chain: 0001, 0005 (indexes), 0002 (identity), 0004 (resource tags), 0006 (retry window),
# 0008 (auto scaling and observability configurations), 0009 (VPC), 0010 (regions), 0011
# (autovacuum settings of the churning tables), 0012 (API key changes notified).
HEAD = "0012"


@pytest.fixture
def empty_database_url(postgres_admin_url: str) -> Iterator[str]:
    """A database with nothing in it: migrations have not run."""
    name = f"m_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield with_database(postgres_admin_url, name)
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _tables(url: str) -> set[str]:
    with psycopg.connect(libpq_url(url)) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    return {row[0] for row in rows}


def _copy_of_schema() -> MetaData:
    copy = MetaData(naming_convention=schema.metadata.naming_convention)
    for table in schema.metadata.sorted_tables:
        table.to_metadata(copy)
    return copy


def _replace_index(metadata: MetaData, table: str, name: str, *columns: Any, **kw: Any) -> None:
    t = metadata.tables[table]
    t.indexes.discard(next(i for i in t.indexes if i.name == name))
    Index(name, *columns, _table=t, **kw)


def test_upgrade_on_an_empty_database_builds_exactly_schema_py(empty_database_url: str) -> None:
    assert migrate.current_revision(empty_database_url) is None

    migrate.upgrade_to_head(empty_database_url)

    assert migrate.current_revision(empty_database_url) == HEAD
    assert _tables(empty_database_url) == set(schema.metadata.tables) | {"alembic_version"}
    assert migrate.pending_differences(empty_database_url) == []


def test_upgrade_at_head_is_a_no_op(database_url: str) -> None:
    migrate.upgrade_to_head(database_url)
    assert migrate.current_revision(database_url) == HEAD
    assert migrate.pending_differences(database_url) == []


def test_an_unchanged_copy_of_the_metadata_matches(database_url: str) -> None:
    # The baseline for the drift cases below: the copy itself introduces no difference.
    assert migrate.pending_differences(database_url, _copy_of_schema()) == []


def _add_column(md: MetaData) -> str:
    md.tables["services"].append_column(Column("description", Text, nullable=True))
    return "description"


def _change_type(md: MetaData) -> str:
    md.tables["request_ids"].c.result_id.type = BigInteger()
    return "result_id"


def _change_server_default(md: MetaData) -> str:
    md.tables["jobs"].c.state.server_default.arg = "waiting"  # type: ignore[union-attr]
    return "state"


def _change_partial_index_predicate(md: MetaData) -> str:
    jobs = md.tables["jobs"]
    _replace_index(
        md, "jobs", "ix_jobs_ready", jobs.c.run_at, jobs.c.job_id,
        postgresql_where=text("state = 'running'"),
    )  # fmt: skip
    return "ix_jobs_ready"


def _change_index_direction(md: MetaData) -> str:
    ops = md.tables["operations"]
    _replace_index(
        md, "operations", "ix_operations_by_service",
        ops.c.service_id, text("started_at"), text("operation_id DESC"),
    )  # fmt: skip
    return "ix_operations_by_service"


def _drop_on_delete_cascade(md: MetaData) -> str:
    (fk,) = md.tables["compute_instances"].foreign_key_constraints
    fk.ondelete = None
    return "fk_compute_instances_service_id_services"


def _rename_primary_key(md: MetaData) -> str:
    md.tables["services"].primary_key.name = "services_pkey"
    return "services_pkey"


DRIFTS: dict[str, Callable[[MetaData], str]] = {
    "added column": _add_column,
    "changed type": _change_type,
    "changed server default": _change_server_default,
    "changed partial index predicate": _change_partial_index_predicate,
    "changed index direction": _change_index_direction,
    "dropped ON DELETE CASCADE": _drop_on_delete_cascade,
    "renamed primary key": _rename_primary_key,
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_drift_guard_reports_schema_changes_without_a_migration(
    database_url: str, drift: str
) -> None:
    """Each case is a schema.py edit made without a migration; the guard must see it."""
    changed = _copy_of_schema()
    culprit = DRIFTS[drift](changed)

    differences = migrate.pending_differences(database_url, changed)

    assert differences, f"{drift}: not detected"
    assert culprit in repr(differences), differences


def test_downgrade_to_base_then_upgrade_round_trips(database_url: str) -> None:
    migrate.downgrade_to_base(database_url)

    assert migrate.current_revision(database_url) is None
    # alembic keeps its (now empty) version table; everything else is gone.
    assert _tables(database_url) == {"alembic_version"}

    migrate.upgrade_to_head(database_url)

    assert migrate.current_revision(database_url) == HEAD
    assert migrate.pending_differences(database_url) == []


def _run_in_thread(fn: Callable[[], None], errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # handed to the test thread, which fails on it
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_concurrent_upgrades_on_one_database_both_succeed(empty_database_url: str) -> None:
    """Two replicas starting together: neither fails, and the schema is built once. (That
    the database lock is what orders them is shown by the next test.)"""
    start = threading.Barrier(2)
    errors: list[BaseException] = []

    def replica() -> None:
        start.wait(timeout=30)
        migrate.upgrade_to_head(empty_database_url)

    threads = [_run_in_thread(replica, errors) for _ in range(2)]
    for thread in threads:
        thread.join(timeout=60)

    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert migrate.current_revision(empty_database_url) == HEAD
    assert migrate.pending_differences(empty_database_url) == []


def _waiting_for_advisory_lock(conn: psycopg.Connection[Any], key: int) -> bool:
    # A bigint advisory key shows in pg_locks as classid (high half) and objid (low half).
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
        " AND classid::bigint = %s AND objid::bigint = %s",
        (key >> 32, key & 0xFFFF_FFFF),
    ).fetchone()
    return row is not None and row[0] > 0


def test_upgrade_waits_for_the_migration_lock(empty_database_url: str) -> None:
    """The lock, shown deterministically: while another session holds it, an upgrade blocks
    before touching the schema, and completes once it is released."""
    key = migrate.MIGRATION_LOCK_KEY
    errors: list[BaseException] = []
    with psycopg.connect(libpq_url(empty_database_url), autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (key,))
        upgrade = _run_in_thread(lambda: migrate.upgrade_to_head(empty_database_url), errors)

        deadline = time.monotonic() + 30
        while not _waiting_for_advisory_lock(holder, key):
            assert upgrade.is_alive() and time.monotonic() < deadline, (
                f"upgrade did not wait for the lock: {errors}"
            )

        assert _tables(empty_database_url) == set()
        holder.execute("SELECT pg_advisory_unlock(%s)", (key,))

    upgrade.join(timeout=60)
    assert not upgrade.is_alive()
    assert errors == []
    assert migrate.current_revision(empty_database_url) == HEAD


def test_migrations_dir_is_the_repository_one_unless_overridden(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(migrate.MIGRATIONS_DIR_ENV, raising=False)
    assert (migrate.migrations_dir() / "env.py").is_file()
    assert (migrate.migrations_dir() / "versions" / "0001_initial_schema.py").is_file()

    monkeypatch.setenv(migrate.MIGRATIONS_DIR_ENV, str(tmp_path))
    assert migrate.migrations_dir() == tmp_path.resolve()


def test_existing_services_come_to_use_their_accounts_built_in_default(
    empty_database_url: str,
) -> None:
    """0008 records the built-in DefaultConfiguration (the ARN services were shown before)
    as what every existing service uses, and creates that revision for its account."""
    from alembic import command

    from servicecontrol_server.domain.config_resources import default_auto_scaling

    with migrate._migration_lock(empty_database_url) as conn:
        command.upgrade(migrate.alembic_config(empty_database_url, conn), "0006")
        conn.commit()
    account, region = "123456789012", "eu-west-1"
    with psycopg.connect(libpq_url(empty_database_url)) as conn:
        conn.execute("INSERT INTO accounts (account_id) VALUES (%s)", (account,))
        for i in range(2):
            conn.execute(
                "INSERT INTO services (service_id, account_id, region, service_name,"
                " service_arn, service_url, status) VALUES (%s, %s, %s, %s, %s, %s, 'RUNNING')",
                (f"{i}" * 32, account, region, f"web-{i}", f"arn:{i}", f"u{i}.example"),
            )
            conn.execute(
                "INSERT INTO service_configurations (service_id, source_configuration,"
                " instance_configuration, health_check_configuration)"
                " VALUES (%s, '{}', '{}', '{}')",
                (f"{i}" * 32,),
            )

    migrate.upgrade_to_head(empty_database_url)

    expected = default_auto_scaling(region, account, datetime_now())
    with psycopg.connect(libpq_url(empty_database_url)) as conn:
        rows = conn.execute(
            "SELECT config_id, arn, status, is_default, settings FROM config_resources"
        ).fetchall()
        used = conn.execute(
            "SELECT DISTINCT auto_scaling_configuration_arn FROM service_configurations"
        ).fetchall()
    assert rows == [
        (expected.config_id, expected.arn, "ACTIVE", True, expected.settings),
    ]
    assert used == [(expected.arn,)]


def datetime_now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
