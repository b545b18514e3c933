"""Connections (shared resources: a service delete never touches them)."""

from __future__ import annotations

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ....application.ports import Cursor
from ....domain.model import Connection, ConnectionStatus, ProviderType
from ..schema import connections
from ._keyset import newest_first


class ConnectionRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get_by_arn(
        self, account_id: str, arn: str, *, for_update: bool = False
    ) -> Connection | None:
        query = select(connections).where(
            connections.c.account_id == account_id, connections.c.connection_arn == arn
        )
        if for_update:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).mappings().first()
        return connection_from_row(row) if row else None

    async def get(self, account_id: str, connection_id: str) -> Connection | None:
        row = (
            (
                await self.conn.execute(
                    select(connections).where(
                        connections.c.account_id == account_id,
                        connections.c.connection_id == connection_id,
                    )
                )
            )
            .mappings()
            .first()
        )
        return connection_from_row(row) if row else None

    async def live_arn_with_name(self, account_id: str, region: str, name: str) -> str | None:
        return (
            await self.conn.execute(
                select(connections.c.connection_arn).where(
                    connections.c.account_id == account_id,
                    connections.c.region == region,
                    connections.c.connection_name == name,
                    connections.c.status != ConnectionStatus.DELETED.value,
                )
            )
        ).scalar_one_or_none()

    async def count_live(self, account_id: str, region: str) -> int:
        return (
            await self.conn.execute(
                select(func.count()).where(
                    connections.c.account_id == account_id,
                    connections.c.region == region,
                    connections.c.status != ConnectionStatus.DELETED.value,
                )
            )
        ).scalar_one()

    async def add(self, connection: Connection) -> Connection:
        row = (
            await self.conn.execute(
                insert(connections)
                .values(
                    connection_id=connection.connection_id,
                    account_id=connection.account_id,
                    connection_name=connection.connection_name,
                    connection_arn=connection.connection_arn,
                    provider_type=connection.provider_type.value,
                    status=connection.status.value,
                )
                .returning(connections.c.created_at)
            )
        ).one()
        connection.created_at = row.created_at
        return connection

    async def list_page(
        self, account_id: str, region: str, name: str | None, after: Cursor | None, limit: int
    ) -> list[Connection]:
        """Newest first, tombstones included (App Runner lists DELETED connections)."""
        query = select(connections).where(
            connections.c.account_id == account_id, connections.c.region == region
        )
        if name:
            query = query.where(connections.c.connection_name == name)
        query = newest_first(
            query, connections.c.created_at, connections.c.connection_id, after, limit
        )
        rows = (await self.conn.execute(query)).mappings().all()
        return [connection_from_row(row) for row in rows]

    async def set_status(self, connection: Connection, status: ConnectionStatus) -> None:
        await self.conn.execute(
            update(connections)
            .where(connections.c.connection_id == connection.connection_id)
            .values(status=status.value, updated_at=func.now())
        )
        connection.status = status

    async def mark_deleted(self, connection: Connection, tombstone_seconds: int) -> None:
        row = (
            await self.conn.execute(
                update(connections)
                .where(connections.c.connection_id == connection.connection_id)
                .values(
                    status=ConnectionStatus.DELETED.value,
                    updated_at=func.now(),
                    deleted_at=func.now(),
                    purge_at=func.now() + text(f"interval '{int(tombstone_seconds)} seconds'"),
                )
                .returning(connections.c.deleted_at, connections.c.purge_at)
            )
        ).one()
        connection.status = ConnectionStatus.DELETED
        connection.deleted_at, connection.purge_at = row.deleted_at, row.purge_at


def connection_from_row(row: RowMapping) -> Connection:
    return Connection(
        connection_id=row["connection_id"],
        account_id=row["account_id"],
        connection_name=row["connection_name"],
        connection_arn=row["connection_arn"],
        provider_type=ProviderType(row["provider_type"]),
        status=ConnectionStatus(row["status"]),
        created_at=row["created_at"],
        deleted_at=row["deleted_at"],
        purge_at=row["purge_at"],
    )
