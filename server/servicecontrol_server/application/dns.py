"""Certificate DNS validation: a port that looks validation records up, and the pass that
issues (or fails) the certificates of associations waiting for validation.

This process cannot ask the internet's DNS, so the lookup is pluggable; the default
adapter reads a zone file the operator maintains (adapters/dns/zone_file.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..domain import events
from ..domain.model import (
    Certificate,
    CertificateStatus,
    CustomDomain,
    CustomDomainStatus,
)
from .domain_commands import covered_names
from .ports import DnsValidator, UnitOfWork

log = logging.getLogger(__name__)


@dataclass
class ValidationSummary:
    issued: int = 0
    failed: int = 0
    pending: int = 0
    # Associations whose issued certificate was bound (now ACTIVE).
    bound: int = 0


class DnsValidation:
    """One pass: every association waiting for DNS validation whose records all resolve
    as asked has its certificate ISSUED and goes on to BINDING_CERTIFICATE; one with a
    record pointing elsewhere becomes CREATE_FAILED with its certificate
    VALIDATION_FAILED; the rest wait for the next pass. Then every association in
    BINDING_CERTIFICATE (just validated, or associated with a certificate that was
    issued already) has its certificate bound and becomes ACTIVE, each step in its own
    transaction, as App Runner's own associations go. Associations are read `batch` at a
    time, in a stable order, so that a long backlog is walked through rather than its
    head checked again."""

    def __init__(
        self, uow_factory: Callable[[], UnitOfWork], validator: DnsValidator, batch: int = 500
    ) -> None:
        self.uow = uow_factory
        self.validator = validator
        self.batch = batch

    async def run_once(self, account_id: str | None = None) -> ValidationSummary:
        summary = ValidationSummary()
        after: tuple[datetime, str, str] | None = None
        while True:
            async with self.uow() as uow:
                waiting = await uow.custom_domains.awaiting_validation(
                    account_id, after, self.batch
                )
            # No transaction is open while looking records up: a real resolver may be slow.
            for association, cert in waiting:
                await self._validate(association, cert, summary)
            if len(waiting) < self.batch:
                break
            last = waiting[-1][0]
            after = (last.created_at, last.service_id, last.domain_name)
        while True:
            async with self.uow() as uow:
                binding = await uow.custom_domains.binding(account_id, self.batch)
            bound = 0
            for association, cert in binding:
                if await self._bind(association, cert):
                    bound += 1
            summary.bound += bound
            # A batch none of which could be bound (changed meanwhile) ends the pass.
            if len(binding) < self.batch or bound == 0:
                return summary

    async def _validate(
        self, association: CustomDomain, cert: Certificate, summary: ValidationSummary
    ) -> None:
        outcome, wrong = await self._check(association, cert)
        if outcome is None:
            summary.pending += 1
        elif await self._apply(association, cert, outcome, wrong):
            if outcome is CertificateStatus.ISSUED:
                summary.issued += 1
            else:
                summary.failed += 1

    async def _check(
        self, association: CustomDomain, cert: Certificate
    ) -> tuple[CertificateStatus | None, set[str]]:
        """The outcome (None: not yet) and the names of the records found pointing
        elsewhere."""
        wanted = set(covered_names(association))
        results: list[bool | None] = []
        wrong: set[str] = set()
        for record in cert.validation_records:
            if record.get("domain") not in wanted or record.get("status") == "SUCCESS":
                continue
            try:
                found = await self.validator.check(record["name"], record["value"])
            except Exception:  # noqa: BLE001 - a lookup failure only means "not yet"
                log.warning("DNS validation lookup failed", exc_info=True)
                found = None
            results.append(found)
            if found is False:
                wrong.add(record["name"])
        if wrong:
            return CertificateStatus.VALIDATION_FAILED, wrong
        if all(r is True for r in results):
            return CertificateStatus.ISSUED, wrong
        return None, wrong

    async def _apply(
        self,
        association: CustomDomain,
        cert: Certificate,
        outcome: CertificateStatus,
        wrong: set[str],
    ) -> bool:
        """Writes the outcome unless the association changed since it was read (it was
        disassociated, its service deleted, or its records changed): then the next pass
        looks again."""
        async with self.uow() as uow:
            # The service row first, as every other writer of its domains does.
            service = await uow.services.get(
                cert.account_id, association.service_id, for_update=True
            )
            current = await uow.custom_domains.get(association.service_id, association.domain_name)
            if (
                service is None
                or current is None
                or current.certificate_id != cert.certificate_id
                or current.status is not CustomDomainStatus.PENDING_CERTIFICATE_DNS_VALIDATION
                or current.validation_records != cert.validation_records
            ):
                return False
            wanted = set(covered_names(current))
            records = [dict(r) for r in cert.validation_records]
            if outcome is CertificateStatus.ISSUED:
                for record in records:
                    if record.get("domain") in wanted:
                        record["status"] = "SUCCESS"
                domain_status = CustomDomainStatus.BINDING_CERTIFICATE
            else:
                for record in records:
                    if record["name"] in wrong:
                        record["status"] = "FAILED"
                domain_status = CustomDomainStatus.CREATE_FAILED
            await uow.certificates.set_validation(cert.certificate_id, outcome, records)
            await uow.custom_domains.set_status(
                association.service_id, association.domain_name, domain_status
            )
            uow.record(events.certificate_validated(cert, outcome, service.service_arn))
            if domain_status is CustomDomainStatus.CREATE_FAILED:
                uow.record(
                    events.custom_domain_validated(
                        service, association.domain_name, domain_status, cert
                    )
                )
            await uow.commit()
        return True

    async def _bind(self, association: CustomDomain, cert: Certificate) -> bool:
        """BINDING_CERTIFICATE → ACTIVE, unless the association changed since it was read."""
        async with self.uow() as uow:
            service = await uow.services.get(
                cert.account_id, association.service_id, for_update=True
            )
            current = await uow.custom_domains.get(association.service_id, association.domain_name)
            if (
                service is None
                or current is None
                or current.certificate_id != cert.certificate_id
                or current.status is not CustomDomainStatus.BINDING_CERTIFICATE
            ):
                return False
            await uow.custom_domains.set_status(
                association.service_id, association.domain_name, CustomDomainStatus.ACTIVE
            )
            uow.record(
                events.custom_domain_validated(
                    service, association.domain_name, CustomDomainStatus.ACTIVE, cert
                )
            )
            await uow.commit()
        return True
