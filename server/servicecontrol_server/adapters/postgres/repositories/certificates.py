"""Certificate records: linked to a service's custom domain, or retained after it."""

from __future__ import annotations

from sqlalchemy import func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from ....domain.model import Certificate, CertificateStatus
from .. import ttl
from ..schema import certificates
from ._keyset import by_name


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
        return certificate_from_row(row) if row else None

    async def get_for_domain(
        self, account_id: str, region: str, domain_name: str, *, for_update: bool = False
    ) -> Certificate | None:
        query = select(certificates).where(
            certificates.c.account_id == account_id,
            certificates.c.region == region,
            certificates.c.domain_name == domain_name,
        )
        if for_update:
            query = query.with_for_update()
        row = (await self.conn.execute(query)).mappings().first()
        return certificate_from_row(row) if row else None

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
                .on_conflict_do_nothing(index_elements=["account_id", "region", "domain_name"])
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
        return certificate_from_row(row) if row else None

    async def list_page(
        self, account_id: str, region: str, domain_name: str | None, after: str | None, limit: int
    ) -> list[Certificate]:
        """By domain name: (account_id, region, domain_name) is unique and indexed."""
        query = select(certificates).where(
            certificates.c.account_id == account_id, certificates.c.region == region
        )
        if domain_name:
            query = query.where(certificates.c.domain_name == domain_name)
        query = by_name(query, certificates.c.domain_name, after, limit)
        rows = (await self.conn.execute(query)).mappings().all()
        return [certificate_from_row(row) for row in rows]

    async def retain(self, certificate_ids: list[str], retention_seconds: int) -> list[Certificate]:
        """Unlinks the records from their service and starts their retention window."""
        if not certificate_ids:
            return []
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
        return sorted((certificate_from_row(row) for row in rows), key=lambda c: c.domain_name)


def certificate_from_row(row: RowMapping) -> Certificate:
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
