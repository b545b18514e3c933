"""Applying the schema migrations (alembic; the scripts live in <repo>/migrations) and
checking a live database against schema.py."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import Connection, MetaData, create_engine, pool, text

import servicecontrol_server

from .database import sqlalchemy_url
from .schema import metadata as schema_metadata

MIGRATIONS_DIR_ENV = "SERVICECONTROL_MIGRATIONS_DIR"

# Key of the session-level advisory lock held while migrating. Advisory locks are scoped to
# one database, so replicas of different deployments sharing a server never wait on each other.
MIGRATION_LOCK_KEY = 0x5343_4D49_4752_4154

_VERSION_TABLE = "alembic_version"

# alembic's `context` and `op` are process-wide proxies: two alembic commands running at once
# in one process (even on different databases) would overwrite each other's state.
_ALEMBIC_IN_PROCESS = threading.Lock()


def migrations_dir() -> Path:
    override = os.environ.get(MIGRATIONS_DIR_ENV)
    if override:
        return Path(override).resolve()
    return Path(servicecontrol_server.__file__).resolve().parents[2] / "migrations"


def alembic_config(url: str, connection: Connection | None = None) -> Config:
    """An alembic Config built in code; migrations/env.py reads url and connection from
    its attributes, so no alembic.ini is involved."""
    config = Config()
    # ConfigParser interpolation would read a "%" in the path as a reference.
    config.set_main_option("script_location", str(migrations_dir()).replace("%", "%%"))
    config.attributes["url"] = url
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _connection(url: str) -> Iterator[Connection]:
    # NullPool: closing the connection really closes the session, which also releases any
    # session-level advisory lock it still holds (for instance after a failed migration).
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


@contextmanager
def _migration_lock(url: str) -> Iterator[Connection]:
    """A connection holding the migration lock. Replicas starting together on one database
    queue here; each one after the first then finds the database at head."""
    with _connection(url) as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        # Session-level, so it outlives this transaction and every one alembic runs. It is
        # released by closing the session, which also happens when a migration fails.
        conn.commit()
        with _ALEMBIC_IN_PROCESS:
            yield conn


def upgrade_to_head(url: str) -> None:
    """Migrates the database to the newest revision; a no-op when it is there already.
    Safe to call from several replicas at once: they take turns (see _migration_lock)."""
    with _migration_lock(url) as conn:
        command.upgrade(alembic_config(url, conn), "head")
        conn.commit()


def downgrade_to_base(url: str) -> None:
    """Undoes every migration (drops the whole schema; alembic's version table stays)."""
    with _migration_lock(url) as conn:
        command.downgrade(alembic_config(url, conn), "base")
        conn.commit()


def current_revision(url: str) -> str | None:
    with _connection(url) as conn:
        revision: str | None = MigrationContext.configure(conn).get_current_revision()
        return revision


def head_revision() -> str | None:
    """The newest revision among the migration scripts."""
    from alembic.script import ScriptDirectory

    head: str | None = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    return head


def pending_differences(url: str, target: MetaData | None = None) -> list[Any]:
    """How the live schema differs from `target` (schema.py's metadata by default); empty
    when they agree.

    First alembic's compare_metadata (tables, columns, types, nullability, server defaults,
    indexes, unique and foreign keys), then ("catalog", kind, table, name, live, expected)
    tuples from comparing Postgres's own definitions of every column, constraint and index.
    The second pass catches what alembic ignores, partial index predicates and constraint
    names among them. `expected` comes from Postgres creating `target` in this session's
    temporary schema (so only the TEMP privilege is needed) in a transaction that is rolled
    back. Last, ("storage", table, parameter, live, expected) tuples for the tables'
    storage parameters (autovacuum settings), when target.info["storage_parameters"] names
    them.
    """
    metadata = schema_metadata if target is None else target
    with _connection(url) as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "target_metadata": metadata,
            },
        )
        differences: list[Any] = list(compare_metadata(context, metadata))
        conn.rollback()
        try:
            differences.extend(_catalog_differences(conn, metadata))
            differences.extend(_storage_differences(conn, metadata))
        finally:
            conn.rollback()
    return differences


_COLUMNS = text(
    """
    SELECT c.relname, a.attname,
           format_type(a.atttypid, a.atttypmod)
           || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END
           || CASE a.attidentity
                WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY'
                WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY'
                ELSE '' END
           || CASE WHEN a.attgenerated <> '' THEN ' GENERATED' ELSE '' END
           || COALESCE(' DEFAULT ' || pg_get_expr(d.adbin, d.adrelid), '')
    FROM pg_attribute a
    JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE n.nspname = :schema AND c.relkind IN ('r', 'p')
      AND a.attnum > 0 AND NOT a.attisdropped
    """
)

# NOT NULL constraints (contype 'n') are left out: attnotnull above covers them, and their
# generated names say nothing about the schema.
_CONSTRAINTS = text(
    """
    SELECT c.relname, con.conname, pg_get_constraintdef(con.oid)
    FROM pg_constraint con
    JOIN pg_class c ON c.oid = con.conrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = :schema AND con.contype <> 'n'
    """
)

_INDEXES = text(
    """
    SELECT c.relname, i.relname, pg_get_indexdef(i.oid)
    FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_class c ON c.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = :schema
    """
)


def _catalog(conn: Connection, schema: str, *aliases: str) -> dict[tuple[str, str, str], str]:
    """(kind, table, name) -> definition, with the schema's name (or an alias Postgres
    prints for it) taken out of the definitions so that two schemas can be compared."""
    quote = conn.dialect.identifier_preparer.quote_schema
    prefixes = [quote(name) + "." for name in (schema, *aliases)]
    found: dict[tuple[str, str, str], str] = {}
    for kind, query in (("column", _COLUMNS), ("constraint", _CONSTRAINTS), ("index", _INDEXES)):
        for table, name, definition in conn.execute(query, {"schema": schema}):
            if table == _VERSION_TABLE:
                continue
            for prefix in prefixes:
                definition = definition.replace(prefix, "")
            found[(kind, table, name)] = definition
    return found


def _catalog_differences(conn: Connection, metadata: MetaData) -> list[tuple[Any, ...]]:
    live_schema: str = conn.execute(text("SELECT current_schema()")).scalar_one()
    # Read before the temporary tables exist: once they do, they hide the live tables of
    # the same names and Postgres starts qualifying the live ones.
    live = _catalog(conn, live_schema)
    # A temporary schema needs no CREATE privilege on the database and cannot collide with
    # anything another session does.
    metadata.create_all(
        conn.execution_options(schema_translate_map={None: "pg_temp"}), checkfirst=False
    )
    temp_schema: str = conn.execute(
        text("SELECT nspname FROM pg_namespace WHERE oid = pg_my_temp_schema()")
    ).scalar_one()
    expected = _catalog(conn, temp_schema, "pg_temp")

    live_tables = {table for _, table, _ in live}
    expected_tables = {table for _, table, _ in expected}
    differences: list[tuple[Any, ...]] = [
        ("catalog", "table", table, table, None, "") for table in expected_tables - live_tables
    ]
    differences += [
        ("catalog", "table", table, table, "", None) for table in live_tables - expected_tables
    ]
    for key in sorted(live.keys() | expected.keys()):
        kind, table, name = key
        if table not in live_tables or table not in expected_tables:
            continue  # reported once, as the table
        if live.get(key) != expected.get(key):
            differences.append(("catalog", kind, table, name, live.get(key), expected.get(key)))
    return differences


_RELOPTIONS = text(
    """
    SELECT c.relname, option.option_name, option.option_value
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    CROSS JOIN LATERAL pg_options_to_table(c.reloptions) AS option
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')
    """
)


def _storage_differences(conn: Connection, metadata: MetaData) -> list[tuple[Any, ...]]:
    """The live tables' storage parameters against metadata.info["storage_parameters"]
    ({table: {parameter: value}}); nothing is compared when the metadata names none."""
    expected_by_table: dict[str, dict[str, str]] | None = metadata.info.get("storage_parameters")
    if expected_by_table is None:
        return []
    live: dict[tuple[str, str], str] = {
        (table, name): value for table, name, value in conn.execute(_RELOPTIONS)
    }
    expected = {
        (table, name): value
        for table, parameters in expected_by_table.items()
        for name, value in parameters.items()
    }
    return [
        ("storage", table, name, live.get((table, name)), expected.get((table, name)))
        for table, name in sorted(live.keys() | expected.keys())
        if live.get((table, name)) != expected.get((table, name))
    ]
