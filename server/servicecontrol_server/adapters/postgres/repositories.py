"""Repositories: domain objects in, domain objects out. All SQL of the resources lives
here or in the named queries of jobqueue.py and outbox.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, delete, func, insert, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ...domain.model import (
    Certificate,
    CertificateStatus,
    Connection,
    ConnectionStatus,
    CustomDomain,
    CustomDomainStatus,
    Operation,
    OperationStatus,
    OperationType,
    ProviderType,
    Service,
    ServiceConfiguration,
    ServiceStatus,
)
from . import ttl
from .schema import (
    accounts,
    certificates,
    compute_instances,
    connections,
    custom_domains,
    operations,
    request_ids,
    service_configurations,
    services,
)

# Notified (payload: the operation id) when an operation ends, for WaitOperation.
OPERATIONS_CHANNEL = "servicecontrol_operations"

# A listing position: (created_at, id) of the last item of the previous page.
Cursor = tuple[datetime, str]


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


# The request path of every mutation reads and writes one service row; these two are
# written as SQL once, not built per call, because statement construction cost more than
# the round trip itself.
_SERVICE_COLUMNS = """
    s.service_id, s.account_id, s.region, s.service_name, s.service_arn, s.service_url,
    s.status, s.status_message, s.version, s.current_operation_id::text AS current_operation_id,
    s.status_before_operation, s.connection_arn, s.created_at, s.updated_at, s.deleted_at,
    s.purge_at, c.source_configuration, c.instance_configuration,
    c.health_check_configuration, c.image_identifier, c.image_bucket, c.image_prefix
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


class ServiceRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(
        self, account_id: str, service_id: str, *, for_update: bool = False
    ) -> Service | None:
        query = GET_SERVICE_FOR_UPDATE if for_update else GET_SERVICE
        row = (
            (await self.conn.execute(query, {"account_id": account_id, "service_id": service_id}))
            .mappings()
            .first()
        )
        return _service(row) if row else None

    async def get_by_arn(self, account_id: str, arn: str) -> Service | None:
        service_id = (
            await self.conn.execute(
                select(services.c.service_id).where(
                    services.c.account_id == account_id, services.c.service_arn == arn
                )
            )
        ).scalar_one_or_none()
        return await self.get(account_id, service_id) if service_id else None

    async def live_arn_with_name(self, account_id: str, name: str) -> str | None:
        return (
            await self.conn.execute(
                select(services.c.service_arn).where(
                    services.c.account_id == account_id,
                    services.c.service_name == name,
                    services.c.status != ServiceStatus.DELETED.value,
                )
            )
        ).scalar_one_or_none()

    async def count_live(self, account_id: str) -> int:
        return (
            await self.conn.execute(
                select(func.count()).where(
                    services.c.account_id == account_id,
                    services.c.status != ServiceStatus.DELETED.value,
                )
            )
        ).scalar_one()

    async def list_live(self, account_id: str, after: Cursor | None, limit: int) -> list[Service]:
        query = (
            select(services, service_configurations)
            .outerjoin(
                service_configurations,
                service_configurations.c.service_id == services.c.service_id,
            )
            .where(
                services.c.account_id == account_id,
                services.c.status != ServiceStatus.DELETED.value,
            )
            .order_by(services.c.created_at.desc(), services.c.service_id.desc())
            .limit(limit)
        )
        if after is not None:
            created_at, service_id = after
            query = query.where(
                or_(
                    services.c.created_at < created_at,
                    and_(services.c.created_at == created_at, services.c.service_id < service_id),
                )
            )
        rows = (await self.conn.execute(query)).mappings().all()
        return [_service(row) for row in rows]

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
        row = (
            await self.conn.execute(
                SAVE_SERVICE,
                {
                    "service_id": service.service_id,
                    "status": service.status.value,
                    "status_message": service.status_message,
                    "current_operation_id": service.current_operation_id,
                    "status_before_operation": _opt(service.status_before_operation),
                    "connection_arn": service.connection_arn,
                    "deleted_at": service.deleted_at,
                    "purge_at": service.purge_at,
                },
            )
        ).one()
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

    async def save_configuration(self, service_id: str, config: ServiceConfiguration) -> None:
        values = {
            "source_configuration": config.source,
            "instance_configuration": config.instance,
            "health_check_configuration": config.health_check,
            "image_identifier": config.image_identifier,
            "image_bucket": config.image_bucket,
            "image_prefix": config.image_prefix,
            "updated_at": func.now(),
        }
        await self.conn.execute(
            pg_insert(service_configurations)
            .values(service_id=service_id, **values)
            .on_conflict_do_update(index_elements=["service_id"], set_=values)
        )

    async def delete_configuration(self, service_id: str) -> list[str]:
        """Removes the service configuration records; returns what was removed."""
        removed: list[str] = []
        if (
            await self.conn.execute(
                delete(service_configurations).where(
                    service_configurations.c.service_id == service_id
                )
            )
        ).rowcount:
            removed.append("service_configuration")
        if (
            await self.conn.execute(
                delete(compute_instances).where(compute_instances.c.service_id == service_id)
            )
        ).rowcount:
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


ADD_OPERATION = text(
    """
    INSERT INTO operations
        (operation_id, account_id, service_id, target_arn, type, status, current_step)
    VALUES (CAST(:operation_id AS uuid), :account_id, :service_id, :target_arn, :type,
            :status, :current_step)
    RETURNING started_at, updated_at
    """
)


class OperationRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def add(self, op: Operation) -> Operation:
        row = (
            await self.conn.execute(
                ADD_OPERATION,
                {
                    "operation_id": op.operation_id,
                    "account_id": op.account_id,
                    "service_id": op.service_id,
                    "target_arn": op.target_arn,
                    "type": op.type.value,
                    "status": op.status.value,
                    "current_step": op.current_step,
                },
            )
        ).one()
        op.started_at, op.updated_at = row.started_at, row.updated_at
        return op

    async def get(
        self, account_id: str, operation_id: str, *, for_update: bool = False
    ) -> Operation | None:
        query = select(operations).where(
            operations.c.account_id == account_id, operations.c.operation_id == operation_id
        )
        if for_update:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).mappings().first()
        return _operation(row) if row else None

    async def get_any(self, operation_id: str) -> Operation | None:
        """By id alone: for workers, which act for every account."""
        row = (
            (
                await self.conn.execute(
                    select(operations).where(operations.c.operation_id == operation_id)
                )
            )
            .mappings()
            .first()
        )
        return _operation(row) if row else None

    async def list_for_service(
        self, account_id: str, service_id: str, after: Cursor | None, limit: int
    ) -> list[Operation]:
        query = (
            select(operations)
            .where(operations.c.account_id == account_id, operations.c.service_id == service_id)
            .order_by(operations.c.started_at.desc(), operations.c.operation_id.desc())
            .limit(limit)
        )
        if after is not None:
            started_at, op_id = after
            query = query.where(
                or_(
                    operations.c.started_at < started_at,
                    and_(
                        operations.c.started_at == started_at,
                        operations.c.operation_id < op_id,
                    ),
                )
            )
        rows = (await self.conn.execute(query)).mappings().all()
        return [_operation(row) for row in rows]

    async def update(self, operation_id: str, **values: Any) -> None:
        values["updated_at"] = func.now()
        if values.get("status") in (
            OperationStatus.SUCCEEDED.value,
            OperationStatus.FAILED.value,
            OperationStatus.ROLLBACK_SUCCEEDED.value,
            OperationStatus.ROLLBACK_FAILED.value,
        ):
            values["ended_at"] = func.now()
            values["next_attempt_at"] = None
        await self.conn.execute(
            update(operations).where(operations.c.operation_id == operation_id).values(**values)
        )
        if "ended_at" in values:
            # Wakes WaitOperation callers at commit.
            await self.conn.execute(select(func.pg_notify(OPERATIONS_CHANNEL, operation_id)))


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
        return _connection(row) if row else None

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
        return _connection(row) if row else None

    async def live_arn_with_name(self, account_id: str, name: str) -> str | None:
        return (
            await self.conn.execute(
                select(connections.c.connection_arn).where(
                    connections.c.account_id == account_id,
                    connections.c.connection_name == name,
                    connections.c.status != ConnectionStatus.DELETED.value,
                )
            )
        ).scalar_one_or_none()

    async def count_live(self, account_id: str) -> int:
        return (
            await self.conn.execute(
                select(func.count()).where(
                    connections.c.account_id == account_id,
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
        self, account_id: str, name: str | None, after: Cursor | None, limit: int
    ) -> list[Connection]:
        """Newest first, tombstones included (App Runner lists DELETED connections)."""
        query = (
            select(connections)
            .where(connections.c.account_id == account_id)
            .order_by(connections.c.created_at.desc(), connections.c.connection_id.desc())
            .limit(limit)
        )
        if name:
            query = query.where(connections.c.connection_name == name)
        if after is not None:
            created_at, connection_id = after
            query = query.where(
                or_(
                    connections.c.created_at < created_at,
                    and_(
                        connections.c.created_at == created_at,
                        connections.c.connection_id < connection_id,
                    ),
                )
            )
        rows = (await self.conn.execute(query)).mappings().all()
        return [_connection(row) for row in rows]

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


class CertificateRepository:
    """Certificate records: one per account and domain name, linked to the service the
    domain is associated with, or unlinked and kept until `expires_at`."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    async def get(self, certificate_id: str) -> Certificate | None:
        row = (
            (
                await self.conn.execute(
                    select(certificates).where(certificates.c.certificate_id == certificate_id)
                )
            )
            .mappings()
            .first()
        )
        return _certificate(row) if row else None

    async def get_for_domain(
        self, account_id: str, domain_name: str, *, for_update: bool = False
    ) -> Certificate | None:
        query = select(certificates).where(
            certificates.c.account_id == account_id,
            certificates.c.domain_name == domain_name,
        )
        if for_update:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).mappings().first()
        return _certificate(row) if row else None

    async def insert_if_absent(self, cert: Certificate) -> bool:
        """Inserts the record unless the account already has one for the domain. A
        concurrent uncommitted insert or purge of that domain's record makes this wait
        for it, so the answer is always about committed state."""
        row = (
            await self.conn.execute(
                pg_insert(certificates)
                .values(
                    certificate_id=cert.certificate_id,
                    account_id=cert.account_id,
                    certificate_arn=cert.certificate_arn,
                    domain_name=cert.domain_name,
                    status=cert.status.value,
                    validation_records=cert.validation_records,
                    service_id=cert.service_id,
                    service_arn=cert.service_arn,
                )
                .on_conflict_do_nothing(index_elements=["account_id", "domain_name"])
                .returning(certificates.c.created_at)
            )
        ).first()
        if row is None:
            return False
        cert.created_at = row.created_at
        return True

    async def link(
        self,
        cert: Certificate,
        service_id: str,
        service_arn: str,
        status: CertificateStatus,
        records: list[dict[str, str]],
    ) -> None:
        """Links a retained record to a service again: its retention window ends."""
        await self.conn.execute(
            update(certificates)
            .where(certificates.c.certificate_id == cert.certificate_id)
            .values(
                service_id=service_id,
                service_arn=service_arn,
                status=status.value,
                validation_records=records,
                unlinked_at=None,
                expires_at=None,
            )
        )
        cert.service_id, cert.service_arn = service_id, service_arn
        cert.status, cert.validation_records = status, records
        cert.unlinked_at = cert.expires_at = None

    async def set_validation(
        self, certificate_id: str, status: CertificateStatus, records: list[dict[str, str]]
    ) -> None:
        await self.conn.execute(
            update(certificates)
            .where(certificates.c.certificate_id == certificate_id)
            .values(status=status.value, validation_records=records)
        )

    async def purge_if_expired(self, certificate_id: str) -> Certificate | None:
        """Deletes the record if it is unlinked and its retention has ended, by the same
        rule as the reaper; returns it if it was deleted."""
        row = (
            (
                await self.conn.execute(
                    ttl.PURGE_CERTIFICATE_IF_EXPIRED, {"certificate_id": certificate_id}
                )
            )
            .mappings()
            .first()
        )
        return _certificate(row) if row else None

    async def list_page(
        self, account_id: str, domain_name: str | None, after: str | None, limit: int
    ) -> list[Certificate]:
        """By domain name: (account_id, domain_name) is unique and indexed."""
        query = (
            select(certificates)
            .where(certificates.c.account_id == account_id)
            .order_by(certificates.c.domain_name)
            .limit(limit)
        )
        if domain_name:
            query = query.where(certificates.c.domain_name == domain_name)
        if after is not None:
            query = query.where(certificates.c.domain_name > after)
        rows = (await self.conn.execute(query)).mappings().all()
        return [_certificate(row) for row in rows]


class CustomDomainRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    def _joined(self) -> Select[Any]:
        return select(custom_domains, certificates.c.validation_records).join(
            certificates,
            certificates.c.certificate_id == custom_domains.c.certificate_id,
        )

    async def for_service(self, service_id: str) -> list[CustomDomain]:
        rows = (
            (
                await self.conn.execute(
                    self._joined()
                    .where(custom_domains.c.service_id == service_id)
                    .order_by(custom_domains.c.domain_name)
                )
            )
            .mappings()
            .all()
        )
        return [_custom_domain(row) for row in rows]

    async def get(self, service_id: str, domain_name: str) -> CustomDomain | None:
        row = (
            (
                await self.conn.execute(
                    self._joined().where(
                        custom_domains.c.service_id == service_id,
                        custom_domains.c.domain_name == domain_name,
                    )
                )
            )
            .mappings()
            .first()
        )
        return _custom_domain(row) if row else None

    async def page_for_service(
        self, service_id: str, after: str | None, limit: int
    ) -> list[CustomDomain]:
        query = (
            self._joined()
            .where(custom_domains.c.service_id == service_id)
            .order_by(custom_domains.c.domain_name)
            .limit(limit)
        )
        if after is not None:
            query = query.where(custom_domains.c.domain_name > after)
        rows = (await self.conn.execute(query)).mappings().all()
        return [_custom_domain(row) for row in rows]

    async def count_for_service(self, service_id: str) -> int:
        return (
            await self.conn.execute(
                select(func.count()).where(custom_domains.c.service_id == service_id)
            )
        ).scalar_one()

    async def add(self, domain: CustomDomain) -> CustomDomain:
        row = (
            await self.conn.execute(
                insert(custom_domains)
                .values(
                    service_id=domain.service_id,
                    domain_name=domain.domain_name,
                    enable_www_subdomain=domain.enable_www_subdomain,
                    status=domain.status.value,
                    certificate_id=domain.certificate_id,
                )
                .returning(custom_domains.c.created_at)
            )
        ).one()
        domain.created_at = row.created_at
        return domain

    async def set_status(
        self, service_id: str, domain_name: str, status: CustomDomainStatus
    ) -> None:
        await self.conn.execute(
            update(custom_domains)
            .where(
                custom_domains.c.service_id == service_id,
                custom_domains.c.domain_name == domain_name,
            )
            .values(status=status.value, updated_at=func.now())
        )

    async def remove(self, service_id: str, domain_name: str) -> str | None:
        """Deletes the association; returns its certificate id (None if there was none)."""
        return (
            await self.conn.execute(
                delete(custom_domains)
                .where(
                    custom_domains.c.service_id == service_id,
                    custom_domains.c.domain_name == domain_name,
                )
                .returning(custom_domains.c.certificate_id)
            )
        ).scalar_one_or_none()

    async def awaiting_validation(
        self, account_id: str | None, after: tuple[datetime, str, str] | None, limit: int
    ) -> list[tuple[CustomDomain, Certificate]]:
        """Associations waiting for DNS validation, with their certificate records, in
        (created_at, service_id, domain_name) order after `after`."""
        query = (
            select(
                custom_domains.c.service_id,
                custom_domains.c.domain_name,
                custom_domains.c.enable_www_subdomain,
                custom_domains.c.status.label("domain_status"),
                custom_domains.c.created_at.label("domain_created_at"),
                certificates,
            )
            .join(
                certificates,
                certificates.c.certificate_id == custom_domains.c.certificate_id,
            )
            .where(
                custom_domains.c.status
                == CustomDomainStatus.PENDING_CERTIFICATE_DNS_VALIDATION.value
            )
            .order_by(
                custom_domains.c.created_at,
                custom_domains.c.service_id,
                custom_domains.c.domain_name,
            )
            .limit(limit)
        )
        if account_id is not None:
            query = query.where(certificates.c.account_id == account_id)
        if after is not None:
            query = query.where(
                tuple_(
                    custom_domains.c.created_at,
                    custom_domains.c.service_id,
                    custom_domains.c.domain_name,
                )
                > tuple_(*after)
            )
        rows = (await self.conn.execute(query)).mappings().all()
        return [
            (
                CustomDomain(
                    service_id=row["service_id"],
                    domain_name=row["domain_name"],
                    enable_www_subdomain=row["enable_www_subdomain"],
                    status=CustomDomainStatus(row["domain_status"]),
                    certificate_id=row["certificate_id"],
                    created_at=row["domain_created_at"],
                    validation_records=row["validation_records"],
                ),
                _certificate(row),
            )
            for row in rows
        ]

    async def unlink_all(self, service_id: str, retention_seconds: int) -> list[Certificate]:
        """Unlinks every domain of the service and starts the retention window of each
        domain's certificate record; returns the retained certificates."""
        cert_ids = list(
            (
                await self.conn.execute(
                    delete(custom_domains)
                    .where(custom_domains.c.service_id == service_id)
                    .returning(custom_domains.c.certificate_id)
                )
            ).scalars()
        )
        if not cert_ids:
            return []
        return await self.retain_certificates(cert_ids, retention_seconds)

    async def retain_certificates(
        self, certificate_ids: list[str], retention_seconds: int
    ) -> list[Certificate]:
        rows = (
            (
                await self.conn.execute(
                    update(certificates)
                    .where(certificates.c.certificate_id.in_(certificate_ids))
                    .values(
                        service_id=None,
                        service_arn=None,
                        unlinked_at=func.now(),
                        expires_at=func.now()
                        + text(f"interval '{int(retention_seconds)} seconds'"),
                    )
                    .returning(certificates)
                )
            )
            .mappings()
            .all()
        )
        return sorted((_certificate(row) for row in rows), key=lambda c: c.domain_name)


def _opt(status: ServiceStatus | None) -> str | None:
    return status.value if status is not None else None


def _service(row: RowMapping) -> Service:
    configuration = None
    if row["source_configuration"] is not None:
        configuration = ServiceConfiguration(
            source=row["source_configuration"],
            instance=row["instance_configuration"],
            health_check=row["health_check_configuration"],
            image_identifier=row["image_identifier"],
            image_bucket=row["image_bucket"],
            image_prefix=row["image_prefix"],
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


def _operation(row: RowMapping) -> Operation:
    return Operation(
        operation_id=row["operation_id"],
        account_id=row["account_id"],
        service_id=row["service_id"],
        target_arn=row["target_arn"],
        type=OperationType(row["type"]),
        status=OperationStatus(row["status"]),
        started_at=row["started_at"],
        updated_at=row["updated_at"],
        ended_at=row["ended_at"],
        current_step=row["current_step"],
        attempt=row["attempt"],
        error=row["error"],
        deletion_report=row["deletion_report"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
    )


def _connection(row: RowMapping) -> Connection:
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


def _certificate(row: RowMapping) -> Certificate:
    return Certificate(
        certificate_id=row["certificate_id"],
        account_id=row["account_id"],
        certificate_arn=row["certificate_arn"],
        domain_name=row["domain_name"],
        status=CertificateStatus(row["status"]),
        validation_records=row["validation_records"],
        created_at=row["created_at"],
        service_id=row["service_id"],
        service_arn=row["service_arn"],
        unlinked_at=row["unlinked_at"],
        expires_at=row["expires_at"],
    )


def _custom_domain(row: RowMapping) -> CustomDomain:
    return CustomDomain(
        service_id=row["service_id"],
        domain_name=row["domain_name"],
        enable_www_subdomain=row["enable_www_subdomain"],
        status=CustomDomainStatus(row["status"]),
        certificate_id=row["certificate_id"],
        created_at=row["created_at"],
        validation_records=row["validation_records"],
    )
