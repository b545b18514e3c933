"""The account row: created on first use, locked to serialise quota checks."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..schema import accounts


class AccountRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def lock(self, account_id: str) -> None:
        """Creates the account on first use and locks it until commit. Serialises the
        account's quota-checked creations so concurrent ones cannot exceed a quota."""
        await self.conn.execute(
            pg_insert(accounts).values(account_id=account_id).on_conflict_do_nothing()
        )
        await self.conn.execute(
            select(accounts.c.account_id)
            .where(accounts.c.account_id == account_id)
            .with_for_update()
        )
