"""Request ids: the first answer of a mutation, kept so a retry gets the same one."""

from __future__ import annotations

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from ..direct import pipelined_reads
from ..schema import request_ids

# A mutation's first statement when it names a request id: sent with the transaction's
# BEGIN in one round trip (`direct.pipelined_reads`). A concurrent first call with the
# same key waits on the primary key until the other commits (then this one inserts
# nothing) or rolls back (then this one records).
CLAIM_REQUEST_ID = text(
    """
    INSERT INTO request_ids (account_id, request_id, fingerprint, result_kind, result_id)
    VALUES (:account_id, :request_id, :fingerprint, :result_kind, :result_id)
    ON CONFLICT DO NOTHING
    RETURNING request_id
    """
)


class RequestIdRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def claim(
        self, account_id: str, request_id: str, fingerprint: str, result_kind: str, result_id: str
    ) -> tuple[str, str, str] | None:
        """Records the key; when it exists already, returns the first call's
        (fingerprint, result_kind, result_id) instead. Concurrent first calls serialise on
        the primary key, so exactly one of them records."""
        (inserted,) = await pipelined_reads(
            self.conn,
            (
                (
                    CLAIM_REQUEST_ID,
                    {
                        "account_id": account_id,
                        "request_id": request_id,
                        "fingerprint": fingerprint,
                        "result_kind": result_kind,
                        "result_id": result_id,
                    },
                ),
            ),
        )
        if inserted:
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
