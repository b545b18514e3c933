"""Request ids: the first answer of a mutation, kept so a retry gets the same one."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..schema import request_ids


class RequestIdRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def claim(
        self, account_id: str, request_id: str, fingerprint: str, result_kind: str, result_id: str
    ) -> tuple[str, str, str] | None:
        """Records the key; when it exists already, returns the first call's
        (fingerprint, result_kind, result_id) instead. Concurrent first calls serialise on
        the primary key, so exactly one of them records."""
        inserted = (
            await self.conn.execute(
                pg_insert(request_ids)
                .values(
                    account_id=account_id,
                    request_id=request_id,
                    fingerprint=fingerprint,
                    result_kind=result_kind,
                    result_id=result_id,
                )
                .on_conflict_do_nothing()
                .returning(request_ids.c.request_id)
            )
        ).first()
        if inserted is not None:
            return None
        return await self.get(account_id, request_id)

    async def get(self, account_id: str, request_id: str) -> tuple[str, str, str] | None:
        row = (
            await self.conn.execute(
                select(
                    request_ids.c.fingerprint, request_ids.c.result_kind, request_ids.c.result_id
                ).where(
                    request_ids.c.account_id == account_id,
                    request_ids.c.request_id == request_id,
                )
            )
        ).first()
        return (row.fingerprint, row.result_kind, row.result_id) if row else None
