"""Custom domain associations of services, joined with their certificate records."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, insert, select, tuple_, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ....domain.model import Certificate, CustomDomain, CustomDomainStatus
from ..schema import certificates, custom_domains
from ._keyset import by_name
from .certificates import certificate_from_row


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
        return [custom_domain_from_row(row) for row in rows]

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
        return custom_domain_from_row(row) if row else None

    async def page_for_service(
        self, service_id: str, after: str | None, limit: int
    ) -> list[CustomDomain]:
        query = self._joined().where(custom_domains.c.service_id == service_id)
        query = by_name(query, custom_domains.c.domain_name, after, limit)
        rows = (await self.conn.execute(query)).mappings().all()
        return [custom_domain_from_row(row) for row in rows]

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
        query = _with_certificates(CustomDomainStatus.PENDING_CERTIFICATE_DNS_VALIDATION, limit)
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
        return _joined(await self.conn.execute(query))

    async def binding(
        self, account_id: str | None, limit: int
    ) -> list[tuple[CustomDomain, Certificate]]:
        """Associations whose issued certificate is being bound, oldest first. Rare and
        short-lived (the validation pass binds them right after), so no index of their own."""
        query = _with_certificates(CustomDomainStatus.BINDING_CERTIFICATE, limit)
        if account_id is not None:
            query = query.where(certificates.c.account_id == account_id)
        return _joined(await self.conn.execute(query))

    async def remove_all(self, service_id: str) -> list[str]:
        """Deletes every association of the service; returns their certificate ids."""
        return list(
            (
                await self.conn.execute(
                    delete(custom_domains)
                    .where(custom_domains.c.service_id == service_id)
                    .returning(custom_domains.c.certificate_id)
                )
            ).scalars()
        )


def _with_certificates(status: CustomDomainStatus, limit: int) -> Select[Any]:
    """The associations in `status` joined with their certificate records, in
    (created_at, service_id, domain_name) order."""
    return (
        select(
            custom_domains.c.service_id,
            custom_domains.c.domain_name,
            custom_domains.c.enable_www_subdomain,
            custom_domains.c.status.label("domain_status"),
            custom_domains.c.created_at.label("domain_created_at"),
            certificates,
        )
        .join(certificates, certificates.c.certificate_id == custom_domains.c.certificate_id)
        .where(custom_domains.c.status == status.value)
        .order_by(
            custom_domains.c.created_at,
            custom_domains.c.service_id,
            custom_domains.c.domain_name,
        )
        .limit(limit)
    )


def _joined(result: Any) -> list[tuple[CustomDomain, Certificate]]:
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
            certificate_from_row(row),
        )
        for row in result.mappings().all()
    ]


def custom_domain_from_row(row: RowMapping) -> CustomDomain:
    return CustomDomain(
        service_id=row["service_id"],
        domain_name=row["domain_name"],
        enable_www_subdomain=row["enable_www_subdomain"],
        status=CustomDomainStatus(row["status"]),
        certificate_id=row["certificate_id"],
        created_at=row["created_at"],
        validation_records=row["validation_records"],
    )
