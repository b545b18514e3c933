"""Starting PostgreSQL for tests and preparing the migrated template database."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.adapters.postgres.database import with_database
from servicecontrol_server.adapters.postgres.embedded import EmbeddedPostgres


@contextmanager
def postgres_server_url(data_dir: Path) -> Iterator[str]:
    server = EmbeddedPostgres(data_dir)
    server.start()
    try:
        yield server.url("postgres")
    finally:
        server.stop()


def prepare_template(admin_url: str, name: str) -> None:
    """(Re)creates database `name` with the schema migrated to head."""
    from servicecontrol_server.adapters.postgres.migrate import upgrade_to_head

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    upgrade_to_head(with_database(admin_url, name))


async def pending_delete_operation(engine: AsyncEngine) -> str:
    """A PENDING DELETE_SERVICE operation row of no real service: for queue-level tests
    of what a job writes on its operation."""
    operation_id = str(uuid.uuid4())
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO operations (operation_id, account_id, service_id, target_arn,"
                " type, status, current_step) VALUES (CAST(:id AS uuid), 'acct', 'svc',"
                " 'arn', 'DELETE_SERVICE', 'PENDING', '')"
            ),
            {"id": operation_id},
        )
    return operation_id
