"""VPC connectors, VPC ingress connections, and the network configuration kept with a
service's configuration (application.ports.VpcRepository)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ....application.ports import Cursor
from ....domain.model import ServiceStatus
from ....domain.vpc import (
    VpcConnector,
    VpcConnectorStatus,
    VpcIngressConnection,
    VpcIngressConnectionStatus,
)
from ..schema import service_configurations, vpc_connectors, vpc_ingress_connections
from ._keyset import newest_first

# The non-deleted services whose egress goes through a connector: read from the
# configuration, which a service's delete removes with it.
SERVICES_USING_CONNECTOR = text(
    """
    SELECT s.service_arn
    FROM service_configurations c JOIN services s ON s.service_id = c.service_id
    WHERE c.network_configuration #>> '{egress_configuration,egress_type}' = 'VPC'
      AND c.network_configuration #>> '{egress_configuration,vpc_connector_arn}' = :arn
      AND s.status <> :deleted
    ORDER BY s.service_arn
    """
)

_DELETED = VpcIngressConnectionStatus.DELETED.value

# A service's ingress connections that are not deleted (at most INGRESS_PER_SERVICE).
# DeleteService sends it right after its locked read of the service, as a statement of
# its own: its snapshot is taken once that lock is held, so it sees a connection that a
# CreateVpcIngressConnection holding the lock before committed (folded into the locked
# read, it would read the snapshot taken before the lock wait, and miss it).
LIVE_INGRESS_FOR_SERVICE = text(
    """
    SELECT * FROM vpc_ingress_connections
    WHERE service_id = :service_id AND status <> 'DELETED'
    ORDER BY connection_id
    """
)

# The reaper's purges of tombstones past purge_at (served by the purge_at indexes), in
# batches that skip rows another reaper holds.
PURGE_CONNECTOR_TOMBSTONES = text(
    """
    WITH doomed AS MATERIALIZED (
        SELECT connector_id
        FROM vpc_connectors
        WHERE status = 'INACTIVE' AND purge_at <= now()
        ORDER BY purge_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM vpc_connectors AS v
    USING doomed
    WHERE v.connector_id = doomed.connector_id
    RETURNING v.*
    """
)
PURGE_INGRESS_TOMBSTONES = text(
    """
    WITH doomed AS MATERIALIZED (
        SELECT connection_id
        FROM vpc_ingress_connections
        WHERE status = 'DELETED' AND purge_at <= now()
        ORDER BY purge_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM vpc_ingress_connections AS v
    USING doomed
    WHERE v.connection_id = doomed.connection_id
    RETURNING v.*
    """
)


def _tombstone(seconds: int) -> Any:
    return func.now() + text(f"interval '{int(seconds)} seconds'")


class VpcRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    # ----- connectors -----

    async def _connector(self, *where: Any, for_update: bool = False) -> VpcConnector | None:
        query = select(vpc_connectors).where(*where)
        if for_update:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).mappings().first()
        return connector_from_row(row) if row else None

    async def connector_by_arn(
        self, account_id: str, arn: str, *, for_update: bool = False
    ) -> VpcConnector | None:
        return await self._connector(
            vpc_connectors.c.account_id == account_id,
            vpc_connectors.c.connector_arn == arn,
            for_update=for_update,
        )

    async def connector(self, account_id: str, connector_id: str) -> VpcConnector | None:
        return await self._connector(
            vpc_connectors.c.account_id == account_id,
            vpc_connectors.c.connector_id == connector_id,
        )

    async def active_connector_arn_with_name(
        self, account_id: str, region: str, name: str
    ) -> str | None:
        return (
            await self.conn.execute(
                select(vpc_connectors.c.connector_arn).where(
                    vpc_connectors.c.account_id == account_id,
                    vpc_connectors.c.region == region,
                    vpc_connectors.c.connector_name == name,
                    vpc_connectors.c.status == VpcConnectorStatus.ACTIVE.value,
                )
            )
        ).scalar_one_or_none()

    async def last_connector_revision(self, account_id: str, region: str, name: str) -> int:
        value = (
            await self.conn.execute(
                select(func.max(vpc_connectors.c.revision)).where(
                    vpc_connectors.c.account_id == account_id,
                    vpc_connectors.c.region == region,
                    vpc_connectors.c.connector_name == name,
                )
            )
        ).scalar_one()
        return int(value or 0)

    async def count_active_connectors(self, account_id: str, region: str) -> int:
        return (
            await self.conn.execute(
                select(func.count()).where(
                    vpc_connectors.c.account_id == account_id,
                    vpc_connectors.c.region == region,
                    vpc_connectors.c.status == VpcConnectorStatus.ACTIVE.value,
                )
            )
        ).scalar_one()

    async def add_connector(self, connector: VpcConnector) -> VpcConnector:
        row = (
            await self.conn.execute(
                insert(vpc_connectors)
                .values(
                    connector_id=connector.connector_id,
                    account_id=connector.account_id,
                    connector_name=connector.name,
                    revision=connector.revision,
                    connector_arn=connector.arn,
                    subnets=list(connector.subnets),
                    security_groups=list(connector.security_groups),
                    status=connector.status.value,
                )
                .returning(vpc_connectors.c.created_at)
            )
        ).one()
        connector.created_at = row.created_at
        return connector

    async def list_connectors(
        self, account_id: str, region: str, after: Cursor | None, limit: int
    ) -> list[VpcConnector]:
        query = newest_first(
            select(vpc_connectors).where(
                vpc_connectors.c.account_id == account_id, vpc_connectors.c.region == region
            ),
            vpc_connectors.c.created_at,
            vpc_connectors.c.connector_id,
            after,
            limit,
        )
        rows = (await self.conn.execute(query)).mappings().all()
        return [connector_from_row(row) for row in rows]

    async def deactivate_connector(self, connector: VpcConnector, tombstone_seconds: int) -> None:
        row = (
            await self.conn.execute(
                update(vpc_connectors)
                .where(vpc_connectors.c.connector_id == connector.connector_id)
                .values(
                    status=VpcConnectorStatus.INACTIVE.value,
                    updated_at=func.now(),
                    deleted_at=func.now(),
                    purge_at=_tombstone(tombstone_seconds),
                )
                .returning(vpc_connectors.c.deleted_at, vpc_connectors.c.purge_at)
            )
        ).one()
        connector.status = VpcConnectorStatus.INACTIVE
        connector.deleted_at, connector.purge_at = row.deleted_at, row.purge_at

    async def services_using_connector(self, connector_arn: str) -> list[str]:
        rows = await self.conn.execute(
            SERVICES_USING_CONNECTOR,
            {"arn": connector_arn, "deleted": ServiceStatus.DELETED.value},
        )
        return list(rows.scalars())

    # ----- a service's network configuration -----

    async def save_network(self, service_id: str, network: dict[str, Any]) -> None:
        result = await self.conn.execute(
            update(service_configurations)
            .where(service_configurations.c.service_id == service_id)
            .values(network_configuration=network, updated_at=func.now())
        )
        if not result.rowcount:
            raise LookupError(f"service {service_id} has no configuration to hold its network")

    # ----- ingress connections -----

    async def _ingress(self, *where: Any, for_update: bool = False) -> VpcIngressConnection | None:
        query = select(vpc_ingress_connections).where(*where)
        if for_update:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).mappings().first()
        return ingress_from_row(row) if row else None

    async def ingress_by_arn(
        self, account_id: str, arn: str, *, for_update: bool = False
    ) -> VpcIngressConnection | None:
        return await self._ingress(
            vpc_ingress_connections.c.account_id == account_id,
            vpc_ingress_connections.c.connection_arn == arn,
            for_update=for_update,
        )

    async def ingress(self, account_id: str, connection_id: str) -> VpcIngressConnection | None:
        return await self._ingress(
            vpc_ingress_connections.c.account_id == account_id,
            vpc_ingress_connections.c.connection_id == connection_id,
        )

    async def live_ingress_arn_with_name(
        self, account_id: str, region: str, name: str
    ) -> str | None:
        return (
            await self.conn.execute(
                select(vpc_ingress_connections.c.connection_arn).where(
                    vpc_ingress_connections.c.account_id == account_id,
                    vpc_ingress_connections.c.region == region,
                    vpc_ingress_connections.c.connection_name == name,
                    vpc_ingress_connections.c.status != _DELETED,
                )
            )
        ).scalar_one_or_none()

    async def live_ingress_for_service(self, service_id: str) -> list[VpcIngressConnection]:
        rows = await self.conn.execute(LIVE_INGRESS_FOR_SERVICE, {"service_id": service_id})
        return [ingress_from_row(row) for row in rows.mappings()]

    async def add_ingress(self, connection: VpcIngressConnection) -> VpcIngressConnection:
        row = (
            await self.conn.execute(
                insert(vpc_ingress_connections)
                .values(
                    connection_id=connection.connection_id,
                    account_id=connection.account_id,
                    connection_name=connection.name,
                    connection_arn=connection.arn,
                    service_id=connection.service_id,
                    service_arn=connection.service_arn,
                    vpc_id=connection.vpc_id,
                    vpc_endpoint_id=connection.vpc_endpoint_id,
                    domain_name=connection.domain_name,
                    status=connection.status.value,
                )
                .returning(vpc_ingress_connections.c.created_at)
            )
        ).one()
        connection.created_at = row.created_at
        return connection

    async def list_ingress(
        self,
        account_id: str,
        region: str,
        service_arn: str | None,
        vpc_endpoint_id: str | None,
        after: Cursor | None,
        limit: int,
    ) -> list[VpcIngressConnection]:
        query = select(vpc_ingress_connections).where(
            vpc_ingress_connections.c.account_id == account_id,
            vpc_ingress_connections.c.region == region,
        )
        if service_arn:
            query = query.where(vpc_ingress_connections.c.service_arn == service_arn)
        if vpc_endpoint_id:
            query = query.where(vpc_ingress_connections.c.vpc_endpoint_id == vpc_endpoint_id)
        query = newest_first(
            query,
            vpc_ingress_connections.c.created_at,
            vpc_ingress_connections.c.connection_id,
            after,
            limit,
        )
        rows = (await self.conn.execute(query)).mappings().all()
        return [ingress_from_row(row) for row in rows]

    async def update_ingress(self, connection: VpcIngressConnection) -> None:
        await self.conn.execute(
            update(vpc_ingress_connections)
            .where(vpc_ingress_connections.c.connection_id == connection.connection_id)
            .values(
                vpc_id=connection.vpc_id,
                vpc_endpoint_id=connection.vpc_endpoint_id,
                status=connection.status.value,
                updated_at=func.now(),
            )
        )

    async def mark_ingress_deleted(
        self, connection: VpcIngressConnection, tombstone_seconds: int
    ) -> None:
        row = (
            await self.conn.execute(
                update(vpc_ingress_connections)
                .where(vpc_ingress_connections.c.connection_id == connection.connection_id)
                .values(
                    status=_DELETED,
                    updated_at=func.now(),
                    deleted_at=func.now(),
                    purge_at=_tombstone(tombstone_seconds),
                )
                .returning(vpc_ingress_connections.c.deleted_at, vpc_ingress_connections.c.purge_at)
            )
        ).one()
        connection.status = VpcIngressConnectionStatus.DELETED
        connection.deleted_at, connection.purge_at = row.deleted_at, row.purge_at

    # ----- retention (the reaper) -----

    async def purge_connector_tombstones(self, batch: int) -> list[VpcConnector]:
        rows = (await self.conn.execute(PURGE_CONNECTOR_TOMBSTONES, {"batch": batch})).mappings()
        return [connector_from_row(row) for row in rows]

    async def purge_ingress_tombstones(self, batch: int) -> list[VpcIngressConnection]:
        rows = (await self.conn.execute(PURGE_INGRESS_TOMBSTONES, {"batch": batch})).mappings()
        return [ingress_from_row(row) for row in rows]


def connector_from_row(row: RowMapping) -> VpcConnector:
    return VpcConnector(
        connector_id=row["connector_id"],
        account_id=row["account_id"],
        name=row["connector_name"],
        revision=row["revision"],
        arn=row["connector_arn"],
        subnets=list(row["subnets"]),
        security_groups=list(row["security_groups"]),
        status=VpcConnectorStatus(row["status"]),
        created_at=row["created_at"],
        deleted_at=row["deleted_at"],
        purge_at=row["purge_at"],
    )


def ingress_from_row(row: Mapping[Any, Any]) -> VpcIngressConnection:
    return VpcIngressConnection(
        connection_id=row["connection_id"],
        account_id=row["account_id"],
        name=row["connection_name"],
        arn=row["connection_arn"],
        service_arn=row["service_arn"],
        service_id=row["service_id"],
        vpc_id=row["vpc_id"],
        vpc_endpoint_id=row["vpc_endpoint_id"],
        domain_name=row["domain_name"],
        status=VpcIngressConnectionStatus(row["status"]),
        created_at=row["created_at"],
        deleted_at=row["deleted_at"],
        purge_at=row["purge_at"],
    )
