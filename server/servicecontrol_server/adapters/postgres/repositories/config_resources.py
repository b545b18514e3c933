"""Auto scaling and observability configuration revisions (ConfigResourceRepository)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ....application.ports import ConfigPosition
from ....domain.config_resources import ConfigKind, ConfigResource, ConfigStatus
from ..schema import config_resources

# Names, revisions, defaults and quotas are per account and region (the ARN's region, a
# generated column).
# Every read derives `latest` (the highest ACTIVE revision of the name) and
# `has_associated_service` (a live service's configuration names the revision).
_COLUMNS = """
    r.config_id, r.account_id, r.kind, r.name, r.revision, r.arn, r.status, r.settings,
    r.is_default, r.created_at, r.deleted_at,
    (r.status = 'ACTIVE' AND r.revision = (
        SELECT max(x.revision) FROM config_resources x
        WHERE x.account_id = r.account_id AND x.region = r.region AND x.kind = r.kind
          AND x.name = r.name
          AND x.status = 'ACTIVE'
    )) AS latest,
    (EXISTS (
        SELECT 1 FROM service_configurations c JOIN services s ON s.service_id = c.service_id
        WHERE c.auto_scaling_configuration_arn = r.arn AND s.status <> 'DELETED'
    ) OR EXISTS (
        SELECT 1 FROM service_configurations c JOIN services s ON s.service_id = c.service_id
        WHERE c.observability_configuration_arn = r.arn AND s.status <> 'DELETED'
    )) AS has_associated_service
"""

GET_CONFIG = f"""
    SELECT {_COLUMNS} FROM config_resources r
    WHERE r.account_id = :account_id AND r.kind = :kind AND r.config_id = :config_id
"""

ACTIVE_REVISIONS = f"""
    SELECT {_COLUMNS} FROM config_resources r
    WHERE r.account_id = :account_id AND r.region = :region AND r.kind = :kind
      AND r.name = :name AND r.status = 'ACTIVE'
    ORDER BY r.revision
"""

GET_DEFAULT = f"""
    SELECT {_COLUMNS} FROM config_resources r
    WHERE r.account_id = :account_id AND r.region = :region AND r.kind = :kind
      AND r.is_default
"""

COUNT_ACTIVE_NAMES = text(
    """
    SELECT count(DISTINCT name) FROM config_resources
    WHERE account_id = :account_id AND region = :region AND kind = :kind
      AND status = 'ACTIVE'
    """
)

# A page of ACTIVE revisions by (name, revision); with :latest_only, each name's highest.
LIST_PAGE = text(
    f"""
    SELECT * FROM (SELECT {_COLUMNS} FROM config_resources r
        WHERE r.account_id = :account_id AND r.region = :region AND r.kind = :kind
          AND r.status = 'ACTIVE'
          AND (CAST(:name AS text) IS NULL OR r.name = :name)
          AND (CAST(:after_name AS text) IS NULL
               OR (r.name, r.revision) > (:after_name, CAST(:after_revision AS integer)))
    ) page
    WHERE NOT :latest_only OR page.latest
    ORDER BY page.name, page.revision
    LIMIT :limit
    """
)

SERVICES_USING = text(
    """
    SELECT s.service_arn FROM service_configurations c
    JOIN services s ON s.service_id = c.service_id
    WHERE s.account_id = :account_id AND s.status <> 'DELETED'
      AND (c.auto_scaling_configuration_arn = :arn OR c.observability_configuration_arn = :arn)
      AND (CAST(:after AS text) IS NULL OR s.service_arn > :after)
    ORDER BY s.service_arn
    LIMIT :limit
    """
)

# In use: by a live service's configuration, or by an update job not yet applied (its
# payload carries the references it will write).
IN_USE = text(
    """
    SELECT EXISTS (
        SELECT 1 FROM service_configurations c JOIN services s ON s.service_id = c.service_id
        WHERE s.status <> 'DELETED' AND c.auto_scaling_configuration_arn = ANY(:arns)
    ) OR EXISTS (
        SELECT 1 FROM service_configurations c JOIN services s ON s.service_id = c.service_id
        WHERE s.status <> 'DELETED' AND c.observability_configuration_arn = ANY(:arns)
    ) OR EXISTS (
        SELECT 1 FROM jobs j
        WHERE j.kind = 'update_service' AND j.state IN ('queued', 'running')
          AND (j.payload ->> 'auto_scaling_configuration_arn' = ANY(:arns)
               OR j.payload ->> 'observability_configuration_arn' = ANY(:arns))
    )
    """
)

MARK_INACTIVE = text(
    """
    UPDATE config_resources SET status = 'INACTIVE', is_default = false, deleted_at = now()
    WHERE config_id = :config_id
    RETURNING deleted_at
    """
)

CLEAR_DEFAULT = text(
    """
    UPDATE config_resources SET is_default = false
    WHERE account_id = :account_id AND region = :region AND kind = :kind AND is_default
    """
)

SET_DEFAULT = text("UPDATE config_resources SET is_default = true WHERE config_id = :config_id")


class ConfigResourceRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def _rows(self, sql: str, params: dict[str, Any], for_update: bool) -> list[RowMapping]:
        query = text(sql + (" FOR UPDATE OF r" if for_update else ""))
        return list((await self.conn.execute(query, params)).mappings().all())

    async def ensure_default(self, default: ConfigResource) -> None:
        # Runs on reads too: when the row exists (nearly always) nothing is written, not
        # even a speculative insert, so a read stays a read.
        exists = (
            await self.conn.execute(
                select(config_resources.c.config_id).where(
                    config_resources.c.config_id == default.config_id
                )
            )
        ).first()
        if exists is None:
            await self.conn.execute(
                pg_insert(config_resources)
                .values(_values(default))
                .on_conflict_do_nothing(index_elements=["config_id"])
            )

    async def get(
        self, account_id: str, kind: ConfigKind, config_id: str, *, for_update: bool = False
    ) -> ConfigResource | None:
        rows = await self._rows(
            GET_CONFIG,
            {"account_id": account_id, "kind": kind.value, "config_id": config_id},
            for_update,
        )
        return config_from_row(rows[0]) if rows else None

    async def active_revisions(
        self,
        account_id: str,
        region: str,
        kind: ConfigKind,
        name: str,
        *,
        for_update: bool = False,
    ) -> list[ConfigResource]:
        rows = await self._rows(
            ACTIVE_REVISIONS,
            {"account_id": account_id, "region": region, "kind": kind.value, "name": name},
            for_update,
        )
        return [config_from_row(row) for row in rows]

    async def count_active_names(self, account_id: str, region: str, kind: ConfigKind) -> int:
        count: int = (
            await self.conn.execute(
                COUNT_ACTIVE_NAMES,
                {"account_id": account_id, "region": region, "kind": kind.value},
            )
        ).scalar_one()
        return count

    async def get_default(
        self, account_id: str, region: str, kind: ConfigKind, *, for_update: bool = False
    ) -> ConfigResource | None:
        rows = await self._rows(
            GET_DEFAULT,
            {"account_id": account_id, "region": region, "kind": kind.value},
            for_update,
        )
        return config_from_row(rows[0]) if rows else None

    async def add(self, config: ConfigResource) -> ConfigResource:
        row = (
            await self.conn.execute(
                pg_insert(config_resources)
                .values(_values(config))
                .returning(config_resources.c.created_at)
            )
        ).one()
        config.created_at = row.created_at
        return config

    async def mark_inactive(self, config: ConfigResource) -> None:
        row = (await self.conn.execute(MARK_INACTIVE, {"config_id": config.config_id})).one()
        config.status = ConfigStatus.INACTIVE
        config.is_default = False
        config.latest = False
        config.deleted_at = row.deleted_at

    async def set_default(
        self, account_id: str, region: str, kind: ConfigKind, config: ConfigResource
    ) -> None:
        await self.conn.execute(
            CLEAR_DEFAULT, {"account_id": account_id, "region": region, "kind": kind.value}
        )
        await self.conn.execute(SET_DEFAULT, {"config_id": config.config_id})
        config.is_default = True

    async def list_page(
        self,
        account_id: str,
        region: str,
        kind: ConfigKind,
        name: str | None,
        latest_only: bool,
        after: ConfigPosition | None,
        limit: int,
    ) -> list[ConfigResource]:
        rows = await self.conn.execute(
            LIST_PAGE,
            {
                "account_id": account_id,
                "region": region,
                "kind": kind.value,
                "name": name,
                "latest_only": latest_only,
                "after_name": after[0] if after else None,
                "after_revision": after[1] if after else None,
                "limit": limit,
            },
        )
        return [config_from_row(row) for row in rows.mappings()]

    async def services_using(
        self, account_id: str, arn: str, after: str | None, limit: int
    ) -> list[str]:
        rows = await self.conn.execute(
            SERVICES_USING,
            {"account_id": account_id, "arn": arn, "after": after, "limit": limit},
        )
        return list(rows.scalars())

    async def in_use(self, arns: list[str]) -> bool:
        return bool((await self.conn.execute(IN_USE, {"arns": arns})).scalar_one())


def _values(config: ConfigResource) -> dict[str, Any]:
    return {
        "config_id": config.config_id,
        "account_id": config.account_id,
        "kind": config.kind.value,
        "name": config.name,
        "revision": config.revision,
        "arn": config.arn,
        "status": config.status.value,
        "settings": config.settings,
        "is_default": config.is_default,
    }


def config_from_row(row: RowMapping) -> ConfigResource:
    return ConfigResource(
        config_id=row["config_id"],
        account_id=row["account_id"],
        kind=ConfigKind(row["kind"]),
        name=row["name"],
        revision=row["revision"],
        arn=row["arn"],
        status=ConfigStatus(row["status"]),
        created_at=row["created_at"],
        settings=dict(row["settings"] or {}),
        is_default=bool(row["is_default"]),
        latest=bool(row["latest"]),
        has_associated_service=bool(row["has_associated_service"]),
        deleted_at=row["deleted_at"],
    )
