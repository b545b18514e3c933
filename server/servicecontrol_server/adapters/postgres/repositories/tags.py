"""Resource tags: one row per (resource ARN, key)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ..schema import resource_tags


class TagRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def for_resource(self, resource_arn: str) -> dict[str, str]:
        rows = await self.conn.execute(
            select(resource_tags.c.tag_key, resource_tags.c.tag_value)
            .where(resource_tags.c.resource_arn == resource_arn)
            .order_by(resource_tags.c.tag_key)
        )
        return {row.tag_key: row.tag_value for row in rows}

    async def put(self, account_id: str, resource_arn: str, tags: dict[str, str]) -> None:
        if not tags:
            return
        stmt = pg_insert(resource_tags).values(
            [
                {
                    "resource_arn": resource_arn,
                    "tag_key": key,
                    "account_id": account_id,
                    "tag_value": value,
                }
                for key, value in tags.items()
            ]
        )
        await self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[resource_tags.c.resource_arn, resource_tags.c.tag_key],
                set_={"tag_value": stmt.excluded.tag_value},
            )
        )

    async def remove(self, resource_arn: str, keys: list[str]) -> list[str]:
        if not keys:
            return []
        rows = await self.conn.execute(
            delete(resource_tags)
            .where(
                resource_tags.c.resource_arn == resource_arn,
                resource_tags.c.tag_key.in_(keys),
            )
            .returning(resource_tags.c.tag_key)
        )
        return [row.tag_key for row in rows]

    async def delete_all(self, resource_arn: str) -> int:
        result = await self.conn.execute(
            delete(resource_tags).where(resource_tags.c.resource_arn == resource_arn)
        )
        return int(result.rowcount or 0)
