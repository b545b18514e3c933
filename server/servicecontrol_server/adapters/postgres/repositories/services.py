"""Services and their configuration records."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import TextClause, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from ....application.ports import Cursor, ServiceRemoval
from ....domain.model import Service, ServiceConfiguration, ServiceStatus
from ....domain.vpc import VpcIngressConnection
from ..direct import pipelined_reads
from ..schema import service_configurations, services
from .certificates import certificate_from_row
from .vpc import LIVE_INGRESS_FOR_SERVICE, ingress_from_row

# The request path of every mutation reads and writes one service row; these two are
# written as SQL once, not built per call, because statement construction cost more than
# the round trip itself.
_SERVICE_COLUMNS = """
    s.service_id, s.account_id, s.region, s.service_name, s.service_arn, s.service_url,
    s.status, s.status_message, s.version, s.current_operation_id::text AS current_operation_id,
    s.status_before_operation, s.connection_arn, s.created_at, s.updated_at, s.deleted_at,
    s.purge_at, c.source_configuration, c.instance_configuration,
    c.health_check_configuration, c.image_identifier, c.image_bucket, c.image_prefix,
    c.auto_scaling_configuration_arn, c.observability_configuration_arn,
    c.network_configuration
"""
GET_SERVICE = text(
    f"""
    SELECT {_SERVICE_COLUMNS}
    FROM services s LEFT JOIN service_configurations c ON c.service_id = s.service_id
    WHERE s.account_id = :account_id AND s.service_id = :service_id
    """
)
# Locks the service row only (not its configuration): the lock that serialises every
# mutation of one service.
GET_SERVICE_FOR_UPDATE = text(
    f"""
    SELECT {_SERVICE_COLUMNS}
    FROM services s LEFT JOIN service_configurations c ON c.service_id = s.service_id
    WHERE s.account_id = :account_id AND s.service_id = :service_id
    FOR UPDATE OF s
    """
)
# A page of live services, newest first: cut from ix_services_live_listing first (the
# partial index's own `status <> 'DELETED'`), then only its rows are joined with their
# configuration, whatever the sizes of the two tables. `_AFTER` starts after a keyset
# cursor (created_at, service_id).
_LIVE_PAGE = """
    SELECT {columns}
    FROM (
        SELECT * FROM services
        WHERE account_id = :account_id AND region = :region AND status <> 'DELETED'{after}
        ORDER BY created_at DESC, service_id DESC
        LIMIT :limit
    ) s LEFT JOIN service_configurations c ON c.service_id = s.service_id
    ORDER BY s.created_at DESC, s.service_id DESC
"""
LIST_LIVE_SERVICES = text(_LIVE_PAGE.format(columns=_SERVICE_COLUMNS, after=""))
LIST_LIVE_SERVICES_AFTER = text(
    _LIVE_PAGE.format(
        columns=_SERVICE_COLUMNS,
        after="""
          AND (created_at < :after_time
               OR (created_at = :after_time AND service_id < :after_id))""",
    )
)


def live_page_parameters(
    account_id: str, region: str, after: Cursor | None, limit: int
) -> tuple[TextClause, dict[str, Any]]:
    """The statement and parameters of one page of `list_live`."""
    if after is None:
        return LIST_LIVE_SERVICES, {"account_id": account_id, "region": region, "limit": limit}
    at, last_id = after
    return LIST_LIVE_SERVICES_AFTER, {
        "account_id": account_id,
        "region": region,
        "limit": limit,
        "after_time": at,
        "after_id": last_id,
    }


SAVE_SERVICE = text(
    """
    UPDATE services SET
        status = :status, status_message = :status_message, version = version + 1,
        current_operation_id = CAST(:current_operation_id AS uuid),
        status_before_operation = :status_before_operation,
        connection_arn = :connection_arn, updated_at = now(),
        deleted_at = :deleted_at, purge_at = :purge_at
    WHERE service_id = :service_id
    RETURNING version, updated_at
    """
)


# Both configuration records of a service in one statement (one round trip).
DELETE_CONFIGURATION = text(
    """
    WITH configurations AS (
        DELETE FROM service_configurations WHERE service_id = :service_id RETURNING 1
    ),
    instances AS (
        DELETE FROM compute_instances WHERE service_id = :service_id RETURNING 1
    )
    SELECT (SELECT count(*) FROM configurations) AS configurations,
           (SELECT count(*) FROM instances) AS instances
    """
)


# Everything a finished delete writes about its service, in one statement (one round trip
# instead of six): its configuration records, its custom domains with their certificate
# records unlinked and retained, its tags, and its tombstone. The caller holds the service
# row's lock (GET_SERVICE_FOR_UPDATE, an earlier statement), so this statement's snapshot,
# taken after that lock was granted, sees every change committed before it. The
# sub-statements touch different tables, except `retained`, which updates the
# certificates of the associations `domains` deletes (through its RETURNING). Whether
# ingress connections remain is read from the same snapshot: the caller deletes those
# through its own rules. One row per retained certificate, or one row with NULL
# certificate columns when there is none; the other columns repeat on every row.
TOMBSTONE_SERVICE = text(
    """
    WITH configurations AS (
        DELETE FROM service_configurations WHERE service_id = :service_id RETURNING 1
    ),
    instances AS (
        DELETE FROM compute_instances WHERE service_id = :service_id RETURNING 1
    ),
    domains AS (
        DELETE FROM custom_domains WHERE service_id = :service_id RETURNING certificate_id
    ),
    retained AS (
        UPDATE certificates
        SET service_id = NULL, service_arn = NULL, unlinked_at = now(),
            expires_at = now() + make_interval(secs => :certificate_retention_seconds)
        WHERE certificate_id IN (SELECT certificate_id FROM domains)
        RETURNING certificate_id, account_id, certificate_arn, domain_name, status,
                  validation_records, service_id, service_arn, created_at, unlinked_at,
                  expires_at
    ),
    tags AS (
        DELETE FROM resource_tags WHERE resource_arn = :service_arn
    ),
    tombstone AS (
        UPDATE services
        SET status = 'DELETED', status_message = '', version = version + 1,
            current_operation_id = NULL, status_before_operation = NULL,
            connection_arn = NULL, updated_at = now(), deleted_at = now(),
            purge_at = now() + make_interval(secs => :tombstone_seconds)
        WHERE service_id = :service_id
        RETURNING version, updated_at, deleted_at, purge_at
    )
    SELECT t.version AS service_version, t.updated_at AS service_updated_at,
           t.deleted_at AS service_deleted_at, t.purge_at AS service_purge_at,
           (SELECT count(*) FROM configurations) AS configurations,
           (SELECT count(*) FROM instances) AS instances,
           EXISTS (
               SELECT 1 FROM vpc_ingress_connections
               WHERE service_id = :service_id AND status <> 'DELETED'
           ) AS live_ingress,
           r.*
    FROM tombstone t LEFT JOIN retained r ON true
    ORDER BY r.domain_name
    """
)


class ServiceRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(
        self, account_id: str, service_id: str, *, for_update: bool = False
    ) -> Service | None:
        params = {"account_id": account_id, "service_id": service_id}
        if for_update:
            # The locked read is usually a transaction's first statement: it goes with the
            # transaction's BEGIN, in one round trip (`direct.pipelined_reads`).
            (rows,) = await pipelined_reads(self.conn, ((GET_SERVICE_FOR_UPDATE, params),))
            return service_from_row(rows[0]) if rows else None
        row = (await self.conn.execute(GET_SERVICE, params)).mappings().first()
        return service_from_row(row) if row else None

    async def get_locked_with_ingress(
        self, account_id: str, service_id: str
    ) -> tuple[Service | None, list[VpcIngressConnection]]:
        """`get(for_update=True)` and then the service's live ingress connections, the two
        statements (and the transaction's `BEGIN`, when it is the first) in one round trip
        (`direct.pipelined_reads`). The second is a statement of its own, run once the
        lock is held, so it sees what the lock's previous holder committed."""
        params = {"account_id": account_id, "service_id": service_id}
        service_rows, ingress_rows = await pipelined_reads(
            self.conn,
            (
                (GET_SERVICE_FOR_UPDATE, params),
                (LIVE_INGRESS_FOR_SERVICE, {"service_id": service_id}),
            ),
        )
        service = service_from_row(service_rows[0]) if service_rows else None
        if service is None:
            # Another account's service of the same id is not this caller's to see.
            return None, []
        return service, [ingress_from_row(row) for row in ingress_rows]

    async def live_arn_with_name(self, account_id: str, region: str, name: str) -> str | None:
        return (
            await self.conn.execute(
                select(services.c.service_arn).where(
                    services.c.account_id == account_id,
                    services.c.region == region,
                    services.c.service_name == name,
                    services.c.status != ServiceStatus.DELETED.value,
                )
            )
        ).scalar_one_or_none()

    async def count_live(self, account_id: str, region: str) -> int:
        return (
            await self.conn.execute(
                select(func.count()).where(
                    services.c.account_id == account_id,
                    services.c.region == region,
                    services.c.status != ServiceStatus.DELETED.value,
                )
            )
        ).scalar_one()

    async def list_live(
        self, account_id: str, region: str, after: Cursor | None, limit: int
    ) -> list[Service]:
        query, params = live_page_parameters(account_id, region, after, limit)
        rows = (await self.conn.execute(query, params)).mappings().all()
        return [service_from_row(row) for row in rows]

    async def add(self, service: Service) -> Service:
        row = (
            await self.conn.execute(
                insert(services)
                .values(
                    service_id=service.service_id,
                    account_id=service.account_id,
                    region=service.region,
                    service_name=service.service_name,
                    service_arn=service.service_arn,
                    service_url=service.service_url,
                    status=service.status.value,
                    status_message=service.status_message,
                    version=service.version,
                    current_operation_id=service.current_operation_id,
                    status_before_operation=_opt(service.status_before_operation),
                    connection_arn=service.connection_arn,
                )
                .returning(services.c.created_at, services.c.updated_at)
            )
        ).one()
        service.created_at, service.updated_at = row.created_at, row.updated_at
        if service.configuration is not None:
            await self.save_configuration(service.service_id, service.configuration)
        return service

    async def save(self, service: Service) -> None:
        """Writes the service's state and bumps its version (and so its etag)."""
        row = (await self.conn.execute(SAVE_SERVICE, save_parameters(service))).one()
        service.version, service.updated_at = row.version, row.updated_at

    async def mark_deleted(self, service: Service, tombstone_seconds: int) -> None:
        row = (
            await self.conn.execute(
                update(services)
                .where(services.c.service_id == service.service_id)
                .values(
                    status=ServiceStatus.DELETED.value,
                    status_message="",
                    version=services.c.version + 1,
                    current_operation_id=None,
                    status_before_operation=None,
                    connection_arn=None,
                    updated_at=func.now(),
                    deleted_at=func.now(),
                    purge_at=func.now() + text(f"interval '{int(tombstone_seconds)} seconds'"),
                )
                .returning(
                    services.c.version,
                    services.c.updated_at,
                    services.c.deleted_at,
                    services.c.purge_at,
                )
            )
        ).one()
        service.status = ServiceStatus.DELETED
        service.current_operation_id = None
        service.status_before_operation = None
        service.connection_arn = None
        service.version, service.updated_at = row.version, row.updated_at
        service.deleted_at, service.purge_at = row.deleted_at, row.purge_at

    async def tombstone(
        self, service: Service, tombstone_seconds: int, certificate_retention_seconds: int
    ) -> ServiceRemoval:
        rows = (
            (
                await self.conn.execute(
                    TOMBSTONE_SERVICE,
                    {
                        "service_id": service.service_id,
                        "service_arn": service.service_arn,
                        "tombstone_seconds": int(tombstone_seconds),
                        "certificate_retention_seconds": int(certificate_retention_seconds),
                    },
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            raise LookupError(f"no service {service.service_id} to tombstone")
        first = rows[0]
        service.status = ServiceStatus.DELETED
        service.status_message = ""
        service.current_operation_id = None
        service.status_before_operation = None
        service.connection_arn = None
        service.version = first["service_version"]
        service.updated_at = first["service_updated_at"]
        service.deleted_at = first["service_deleted_at"]
        service.purge_at = first["service_purge_at"]
        removed: list[str] = []
        if first["configurations"]:
            removed.append("service_configuration")
        if first["instances"]:
            removed.append("compute_instance")
        return ServiceRemoval(
            configuration_records=removed,
            retained_certificates=[
                certificate_from_row(row) for row in rows if row["certificate_id"] is not None
            ],
            live_ingress=bool(first["live_ingress"]),
        )

    async def save_configuration(self, service_id: str, config: ServiceConfiguration) -> None:
        values = {
            "source_configuration": config.source,
            "instance_configuration": config.instance,
            "health_check_configuration": config.health_check,
            "image_identifier": config.image_identifier,
            "image_bucket": config.image_bucket,
            "image_prefix": config.image_prefix,
            "auto_scaling_configuration_arn": config.auto_scaling_configuration_arn,
            "observability_configuration_arn": config.observability_configuration_arn,
            "updated_at": func.now(),
        }
        await self.conn.execute(
            pg_insert(service_configurations)
            .values(service_id=service_id, **values)
            .on_conflict_do_update(index_elements=["service_id"], set_=values)
        )

    async def delete_configuration(self, service_id: str) -> list[str]:
        """Removes the service configuration records; returns what was removed."""
        row = (await self.conn.execute(DELETE_CONFIGURATION, {"service_id": service_id})).one()
        removed: list[str] = []
        if row.configurations:
            removed.append("service_configuration")
        if row.instances:
            removed.append("compute_instance")
        return removed

    async def live_arns_using_connection(self, connection_arn: str) -> list[str]:
        rows = await self.conn.execute(
            select(services.c.service_arn)
            .where(
                services.c.connection_arn == connection_arn,
                services.c.status != ServiceStatus.DELETED.value,
            )
            .order_by(services.c.service_arn)
        )
        return list(rows.scalars())


def save_parameters(service: Service) -> dict[str, Any]:
    """SAVE_SERVICE's parameters: the service's state as it is to be written."""
    return {
        "service_id": service.service_id,
        "status": service.status.value,
        "status_message": service.status_message,
        "current_operation_id": service.current_operation_id,
        "status_before_operation": _opt(service.status_before_operation),
        "connection_arn": service.connection_arn,
        "deleted_at": service.deleted_at,
        "purge_at": service.purge_at,
    }


def _opt(status: ServiceStatus | None) -> str | None:
    return status.value if status is not None else None


def service_from_row(row: Mapping[Any, Any]) -> Service:
    configuration = None
    if row["source_configuration"] is not None:
        configuration = ServiceConfiguration(
            source=row["source_configuration"],
            instance=row["instance_configuration"],
            health_check=row["health_check_configuration"],
            image_identifier=row["image_identifier"],
            image_bucket=row["image_bucket"],
            image_prefix=row["image_prefix"],
            auto_scaling_configuration_arn=row["auto_scaling_configuration_arn"],
            observability_configuration_arn=row["observability_configuration_arn"],
            network=row["network_configuration"],
        )
    before = row["status_before_operation"]
    return Service(
        service_id=row["service_id"],
        account_id=row["account_id"],
        region=row["region"],
        service_name=row["service_name"],
        service_arn=row["service_arn"],
        service_url=row["service_url"],
        status=ServiceStatus(row["status"]),
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        status_message=row["status_message"],
        current_operation_id=row["current_operation_id"],
        status_before_operation=ServiceStatus(before) if before else None,
        connection_arn=row["connection_arn"],
        deleted_at=row["deleted_at"],
        purge_at=row["purge_at"],
        configuration=configuration,
    )
