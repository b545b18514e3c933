"""Engines and connections: SQLAlchemy 2 on psycopg 3, asyncio."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import psycopg
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ...domain.errors import BackendUnavailable
from .jsonb import loads

log = logging.getLogger(__name__)


def sqlalchemy_url(url: str) -> str:
    """Accepts postgresql:// (or postgres://) URLs and selects the psycopg driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("database URL must start with postgresql://")


# The options every session of ours opens with (the engine's, the direct pool's and the
# loops' own connections): times are the database's, every timestamp computed by now() in
# SQL, and read back in UTC.
SESSION_OPTIONS = "-c timezone=UTC"


def libpq_url(url: str) -> str:
    """The same URL for plain psycopg (LISTEN connections, admin tasks)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def create_engine(
    url: str, *, pool_size: int | None = None, max_overflow: int | None = None
) -> AsyncEngine:
    """The process's pool for transactions. Every session it opens is kept for the next
    checkout: an overflow session is closed when it is given back, so a steady load
    above the pool's size would open and close a session per call (16 callers on a pool
    of 10 + 10 overflow opened ≈3 sessions a second). The cap is the same 20 as before;
    single-statement reads on the request path use their own pool (`direct`).

    A caller naming `pool_size` alone gets as many overflow sessions again."""
    if pool_size is None:
        pool_size, max_overflow = 20, 0 if max_overflow is None else max_overflow
    elif max_overflow is None:
        max_overflow = pool_size
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        # No pre-ping round trip on every checkout: after a server restart the first use of
        # each stale connection fails, the pool is invalidated, and the caller gets
        # UNAVAILABLE (retryable) instead of every request paying for the check.
        pool_pre_ping=False,
        connect_args={"options": SESSION_OPTIONS},
        # jsonb decoded as on our other sessions (see `jsonb`).
        json_deserializer=loads,
    )


def single_statement(engine: AsyncEngine) -> AsyncEngine:
    """The same pool in autocommit: for reads that are one statement (a statement is its
    own snapshot), saving the BEGIN and ROLLBACK round trips of a transaction."""
    return engine.execution_options(isolation_level="AUTOCOMMIT")


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at database `name` (query parameters kept)."""
    base, sep, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{name}{sep}{query}"


# The driver failures that mean "the database cannot be reached or is restarting", as
# opposed to a statement the database refused: retryable, and told apart from bugs.
OUTAGES: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
)


def is_outage(exc: BaseException) -> bool:
    return isinstance(exc, OUTAGES)


def unavailable(exc: BaseException) -> BackendUnavailable:
    """The domain's word for an outage; the driver's detail goes to the log only."""
    log.warning("database unavailable: %s", _detail(exc))
    return BackendUnavailable("The database is unavailable; retry the call.")


@contextlib.asynccontextmanager
async def outage_as_unavailable() -> AsyncIterator[None]:
    """Raises BackendUnavailable instead of a driver's outage error."""
    try:
        yield
    except OUTAGES as exc:
        raise unavailable(exc) from exc


def _detail(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__
