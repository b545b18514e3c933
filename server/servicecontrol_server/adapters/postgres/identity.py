"""Accounts, API keys and the audit log in PostgreSQL."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...application.caller import current_caller
from ...application.identity import AccountSummary, AuditEntry, StoredKey
from ...domain.identity import ApiKey, Role
from ...domain.model import Event
from . import direct
from .database import outage_as_unavailable, single_statement
from .key_cache import KeyCache
from .schema import accounts, api_keys, audit_log

P = ParamSpec("P")
T = TypeVar("T")


def _outage_unavailable(
    fn: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """A driver's outage error leaves as domain.errors.BackendUnavailable."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        async with outage_as_unavailable():
            return await fn(*args, **kwargs)

    return wrapper


_KEY_COLUMNS = (
    api_keys.c.key_id,
    api_keys.c.account_id,
    api_keys.c.role,
    api_keys.c.created_at,
    api_keys.c.expires_at,
    api_keys.c.revoked_at,
)


def _key(row: Any) -> ApiKey:
    return ApiKey(
        key_id=row.key_id,
        account_id=row.account_id,
        role=Role(row.role),
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _key_from(row: dict[str, Any]) -> ApiKey:
    return ApiKey(
        key_id=row["key_id"],
        account_id=row["account_id"],
        role=Role(row["role"]),
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(
        occurred_at=row.occurred_at,
        key_id=row.key_id,
        account_id=row.account_id,
        action=row.action,
        resource_arn=row.resource_arn,
        operation_id=row.operation_id,
        request_id=row.request_id,
        outcome=row.outcome,
        source=row.source,
    )


# Every authenticated call reads its key: one statement, written once (not built per
# call), run outside a transaction (no BEGIN/ROLLBACK round trips), with the database
# clock that expiry is judged by.
GET_KEY = text(
    """
    SELECT key_id, account_id, role, created_at, expires_at, revoked_at,
           secret_hash, secret_sealed, now() AS now
    FROM api_keys WHERE key_id = :key_id
    """
)


class PostgresIdentityStore:
    def __init__(self, engine: AsyncEngine, cache: KeyCache | None = None) -> None:
        self.engine = engine
        # The API key cache of a process that answers calls (bootstrap.cached_identity):
        # key lookups answered from it while its listener proves it current; a revoke
        # through this store drops the key from it.
        self.cache = cache
        self._single = single_statement(engine)
        # The composition root's direct pool for the per-call key lookup, when it gave one.
        self._direct = direct.attached(engine)

    @_outage_unavailable
    async def create_account(self, account_id: str) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                pg_insert(accounts)
                .values(account_id=account_id)
                .on_conflict_do_nothing()
                .returning(accounts.c.account_id)
            )
            return result.first() is not None

    @_outage_unavailable
    async def account_exists(self, account_id: str) -> bool:
        async with self.engine.connect() as conn:
            found = await conn.execute(
                select(accounts.c.account_id).where(accounts.c.account_id == account_id)
            )
            return found.first() is not None

    @_outage_unavailable
    async def list_accounts(self) -> list[AccountSummary]:
        active = (
            select(func.count())
            .where(
                api_keys.c.account_id == accounts.c.account_id,
                api_keys.c.revoked_at.is_(None),
                (api_keys.c.expires_at.is_(None)) | (api_keys.c.expires_at > func.now()),
            )
            .scalar_subquery()
        )
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(accounts.c.account_id, accounts.c.created_at, active.label("n")).order_by(
                    accounts.c.account_id
                )
            )
            return [AccountSummary(r.account_id, r.created_at, int(r.n)) for r in rows]

    async def insert_key(
        self,
        key_id: str,
        account_id: str,
        role: Role,
        secret_hash: str,
        secret_sealed: str,
        expires_in_seconds: int | None,
    ) -> ApiKey:
        expires = (
            func.now() + text(f"interval '{int(expires_in_seconds)} seconds'")
            if expires_in_seconds is not None
            else None
        )
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    api_keys.insert()
                    .values(
                        key_id=key_id,
                        account_id=account_id,
                        role=role.value,
                        secret_hash=secret_hash,
                        secret_sealed=secret_sealed,
                        expires_at=expires,
                    )
                    .returning(*_KEY_COLUMNS)
                )
            ).one()
        return _key(row)

    async def get_key(self, key_id: str) -> StoredKey | None:
        if self.cache is not None:
            return await self.cache.lookup(key_id, self.read_key)
        return await self.read_key(key_id)

    @_outage_unavailable
    async def read_key(self, key_id: str) -> StoredKey | None:
        """The key's row, read from the database (the cache aside)."""
        if self._direct is not None:
            found = await self._direct.fetch_one(GET_KEY, {"key_id": key_id})
            if found is None:
                return None
            return StoredKey(
                _key_from(found), found["secret_hash"], found["secret_sealed"], found["now"]
            )
        async with self._single.connect() as conn:
            row = (await conn.execute(GET_KEY, {"key_id": key_id})).first()
        if row is None:
            return None
        return StoredKey(_key(row), row.secret_hash, row.secret_sealed, row.now)

    @_outage_unavailable
    async def list_keys(self, account_id: str) -> list[ApiKey]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(*_KEY_COLUMNS)
                .where(api_keys.c.account_id == account_id)
                .order_by(api_keys.c.created_at, api_keys.c.key_id)
            )
            return [_key(r) for r in rows]

    async def revoke_key(self, account_id: str, key_id: str) -> ApiKey | None:
        try:
            return await self._revoke_key(account_id, key_id)
        finally:
            # Whether it committed is unknown on a failure: the entry goes either way.
            if self.cache is not None:
                self.cache.drop(key_id)

    @_outage_unavailable
    async def _revoke_key(self, account_id: str, key_id: str) -> ApiKey | None:
        async with self.engine.begin() as conn:
            await conn.execute(
                api_keys.update()
                .where(
                    api_keys.c.key_id == key_id,
                    api_keys.c.account_id == account_id,
                    api_keys.c.revoked_at.is_(None),
                )
                .values(revoked_at=func.now())
            )
            row = (
                await conn.execute(
                    select(*_KEY_COLUMNS).where(
                        api_keys.c.key_id == key_id, api_keys.c.account_id == account_id
                    )
                )
            ).first()
        return None if row is None else _key(row)

    @_outage_unavailable
    async def has_keys(self) -> bool:
        async with self.engine.connect() as conn:
            return (await conn.execute(select(api_keys.c.key_id).limit(1))).first() is not None

    @_outage_unavailable
    async def write_audit(self, entry: AuditEntry) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(audit_log.insert().values(**_audit_values(entry)))

    @_outage_unavailable
    async def list_audit(self, account_id: str, since: datetime | None) -> list[AuditEntry]:
        query = select(audit_log).where(audit_log.c.account_id == account_id)
        if since is not None:
            query = query.where(audit_log.c.occurred_at >= since)
        async with self.engine.connect() as conn:
            rows = await conn.execute(query.order_by(audit_log.c.audit_id))
            return [_entry(r) for r in rows]


def _audit_values(entry: AuditEntry) -> dict[str, str]:
    return {
        "key_id": entry.key_id,
        "account_id": entry.account_id,
        "action": entry.action,
        "resource_arn": entry.resource_arn,
        "operation_id": entry.operation_id,
        "request_id": entry.request_id,
        "outcome": entry.outcome,
        "source": entry.source,
    }


async def audit_in_transaction(conn: AsyncConnection, events: Sequence[Event]) -> bool:
    """The audit row of the request being served, when it is a mutation that changed
    something (recorded events): written in the transaction that commits the change.
    True when a row was written."""
    values = audit_values(events)
    if values is None:
        return False
    await conn.execute(INSERT_AUDIT, values)
    return True


# The audit row of a mutation, written in the transaction that makes it.
INSERT_AUDIT = text(
    """
    INSERT INTO audit_log (key_id, account_id, action, resource_arn, operation_id,
                           request_id, outcome, source)
    VALUES (:key_id, :account_id, :action, :resource_arn, :operation_id, :request_id,
            :outcome, :source)
    """
)


def audit_values(events: Sequence[Event]) -> dict[str, Any] | None:
    """INSERT_AUDIT's parameters for the request being served, or None when there is no
    row to write (not a request, not a mutation, already audited, or nothing changed)."""
    caller = current_caller()
    if caller is None or not caller.mutating or caller.audited or not events:
        return None
    operation_id = next(
        (str(e.payload["operationId"]) for e in events if e.payload.get("operationId")), ""
    )
    return {
        "key_id": caller.key_id,
        "account_id": caller.account_id,
        "action": caller.action,
        "resource_arn": events[0].resource_arn,
        "operation_id": operation_id,
        "request_id": caller.request_id,
        "outcome": "OK",
        "source": caller.source,
    }


def mark_audited() -> None:
    caller = current_caller()
    if caller is not None:
        caller.audited = True
