"""Engines and connections: SQLAlchemy 2 on psycopg 3, asyncio."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def sqlalchemy_url(url: str) -> str:
    """Accepts postgresql:// (or postgres://) URLs and selects the psycopg driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("database URL must start with postgresql://")


def libpq_url(url: str) -> str:
    """The same URL for plain psycopg (LISTEN connections, admin tasks)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No pre-ping round trip on every checkout: after a server restart the first use of
        # each stale connection fails, the pool is invalidated, and the caller gets
        # UNAVAILABLE (retryable) instead of every request paying for the check.
        pool_pre_ping=False,
        # Times are the database's: every timestamp is computed by now() in SQL.
        connect_args={"options": "-c timezone=UTC"},
    )


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database `name` (query parameters kept)."""
    base, sep, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{name}{sep}{query}"
