"""Alembic environment: migrations run online, on a synchronous psycopg connection.

`servicecontrol_server.adapters.postgres.migrate` drives this with a connection that already
holds the migration advisory lock (config.attributes["connection"]). Run by the alembic
command line instead, it connects to config.attributes["url"] or sqlalchemy.url itself.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine, pool

from servicecontrol_server.adapters.postgres.database import sqlalchemy_url
from servicecontrol_server.adapters.postgres.schema import metadata

config = context.config
target_metadata = metadata


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = config.attributes.get("connection")
    if given is not None:
        _configure_and_run(given)
        return
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: set config.attributes['url'] or sqlalchemy.url")
    # NullPool: a migration run is one connection, closed when it ends.
    engine = create_engine(sqlalchemy_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            _configure_and_run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (--sql) migrations are not supported; run them online")
run_migrations_online()
