"""The custom domain use cases: associate, disassociate, describe, and the account's
certificate records.

Each association has a certificate record, one per account and domain name. Unlinking a
domain (disassociating it, or deleting its service) keeps the record for the retention
window; associating the domain again within it reuses the record, so an issued
certificate makes the new association ACTIVE at once, without DNS validation."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from ..domain import events, names
from ..domain.errors import (
    BackendUnavailable,
    CustomDomainAlreadyAssociated,
    CustomDomainNotFound,
    FieldViolation,
    InvalidPageToken,
    InvalidRequest,
    InvalidState,
    OperationInProgress,
    QuotaExceeded,
    ServiceNotFound,
)
from ..domain.model import (
    Certificate,
    CertificateStatus,
    CustomDomain,
    CustomDomainStatus,
    Service,
    ServiceStatus,
)
from ..settings import Settings
from .arns import owned_resource_id
from .idempotency import fingerprint as request_fingerprint
from .idempotency import first_result, request_id_violations
from .pagination import PageTokens
from .pagination import page_size as bounded_page_size
from .ports import UnitOfWork
from .regions import request_region
from .results import Page

MAX_DOMAINS_PAGE = 5
MAX_CERTIFICATES_PAGE = 100
VALIDATION_DOMAIN = "acm-validations.servicecontrol.local"
# A linked record can only be claimed by one association; a retained one may be purged
# by a reaper between our insert attempt and our lock, which is worth a few retries.
CLAIM_ATTEMPTS = 5
DOMAIN_RULE = (
    "1-255 characters: dot-separated labels of letters, digits and inner hyphens, "
    "optionally starting with `*.`"
)


@dataclass
class DomainResult:
    dns_target: str
    service_arn: str
    custom_domain: CustomDomain


@dataclass
class ServiceTarget:
    """What DescribeCustomDomains says about the service besides its domains."""

    dns_target: str
    service_arn: str


class DomainCommands:
    def __init__(self, uow_factory: Callable[[], UnitOfWork], settings: Settings) -> None:
        self.uow = uow_factory
        self.settings = settings
        self.tokens = PageTokens(settings.page_token_key)

    # ----- queries -----

    async def describe(
        self, account_id: str, service_arn: str, page_size: int, page_token: str
    ) -> tuple[ServiceTarget, Page]:
        service_id = self._service_id(account_id, service_arn, [])
        limit = bounded_page_size(page_size, MAX_DOMAINS_PAGE)
        filters = {"account": account_id, "service": service_arn}
        after = _name_position(self.tokens.decode(page_token, "custom_domains", filters))
        async with self.uow() as uow:
            service = await uow.services.get(account_id, service_id)
            if service is None or service.service_arn != service_arn:
                raise _service_not_found(service_arn)
            items = await uow.custom_domains.page_for_service(service_id, after, limit + 1)
        next_token = ""
        if len(items) > limit:
            items = items[:limit]
            next_token = self.tokens.encode("custom_domains", filters, [items[-1].domain_name])
        return (
            ServiceTarget(service.service_url, service.service_arn),
            Page([_shown(d) for d in items], next_token),
        )

    async def list_certificates(
        self, account_id: str, domain_name: str, page_size: int, page_token: str
    ) -> Page:
        domain = domain_name.lower()
        if domain and not names.is_domain_name(domain):
            raise InvalidRequest([FieldViolation("domain_name", DOMAIN_RULE)])
        limit = bounded_page_size(page_size, MAX_CERTIFICATES_PAGE)
        region = request_region(self.settings)
        filters = {"account": account_id, "region": region, "domain": domain}
        after = _name_position(self.tokens.decode(page_token, "certificates", filters))
        async with self.uow() as uow:
            items = await uow.certificates.list_page(
                account_id, region, domain or None, after, limit + 1
            )
        next_token = ""
        if len(items) > limit:
            items = items[:limit]
            next_token = self.tokens.encode("certificates", filters, [items[-1].domain_name])
        return Page(items, next_token)

    # ----- mutations -----

    async def associate(
        self,
        account_id: str,
        service_arn: str,
        domain_name: str,
        enable_www: bool | None,
        request_id: str = "",
        validate_only: bool = False,
    ) -> DomainResult:
        domain = domain_name.lower()
        violations = _domain_violations(domain) + request_id_violations(request_id)
        wildcard = domain.startswith("*.")
        if enable_www is None:
            # The default (true) cannot apply to a wildcard, which covers www already.
            enable_www = not wildcard
        elif enable_www and wildcard:
            violations.append(
                FieldViolation("enable_www_subdomain", "cannot be true for a wildcard domain name")
            )
        service_id = self._service_id(account_id, service_arn, violations)
        fingerprint = request_fingerprint("AssociateCustomDomain", service_arn, domain, enable_www)
        async with self.uow() as uow:
            if await self._replay(uow, account_id, request_id, fingerprint, domain):
                return await self._replayed_association(uow, account_id, service_id, domain)
            service = await self._locked_service(uow, account_id, service_id, service_arn)
            linked = await uow.certificates.get_for_domain(account_id, service.region, domain)
            if linked is not None and linked.service_id is not None:
                raise _already_associated(domain, linked.service_arn or "")
            usage = await uow.custom_domains.count_for_service(service_id)
            if usage >= self.settings.custom_domains_per_service:
                raise QuotaExceeded(
                    "CUSTOM_DOMAIN_QUOTA_EXCEEDED",
                    "custom domains",
                    self.settings.custom_domains_per_service,
                    usage,
                    f"service {service_arn}",
                )
            wanted = _covered_names(domain, enable_www)
            if validate_only:
                return await self._preview(uow, service, domain, enable_www, linked)
            cert, reused = await self._claim_certificate(uow, service, domain, wanted)
            status = _association_status(cert.status)
            association = await uow.custom_domains.add(
                CustomDomain(
                    service_id=service_id,
                    domain_name=domain,
                    enable_www_subdomain=enable_www,
                    status=status,
                    certificate_id=cert.certificate_id,
                    created_at=cert.created_at,
                    validation_records=cert.validation_records,
                )
            )
            uow.record(
                events.custom_domain_associated(service, domain, enable_www, status, cert, reused)
            )
            await uow.commit()
        return DomainResult(service.service_url, service.service_arn, _creating(association))

    async def disassociate(
        self,
        account_id: str,
        service_arn: str,
        domain_name: str,
        request_id: str = "",
        validate_only: bool = False,
    ) -> DomainResult:
        domain = domain_name.lower()
        violations = _domain_violations(domain) + request_id_violations(request_id)
        service_id = self._service_id(account_id, service_arn, violations)
        fingerprint = request_fingerprint("DisassociateCustomDomain", service_arn, domain)
        async with self.uow() as uow:
            if await self._replay(uow, account_id, request_id, fingerprint, domain):
                return await self._replayed_disassociation(uow, account_id, service_id, domain)
            service = await self._locked_service(uow, account_id, service_id, service_arn)
            association = await uow.custom_domains.get(service_id, domain)
            if association is None:
                raise CustomDomainNotFound(
                    f"Domain {domain} is not associated with service {service_arn}.",
                    {"serviceArn": service_arn, "domainName": domain},
                )
            association.status = CustomDomainStatus.DELETING
            if validate_only:
                return DomainResult(service.service_url, service.service_arn, _shown(association))
            await uow.custom_domains.remove(service_id, domain)
            [cert] = await uow.certificates.retain(
                [association.certificate_id], self.settings.certificate_retention_seconds
            )
            uow.record(events.custom_domain_disassociated(service, domain, cert))
            await uow.commit()
        return DomainResult(service.service_url, service.service_arn, _shown(association))

    # ----- internals -----

    async def _preview(
        self,
        uow: UnitOfWork,
        service: Service,
        domain: str,
        enable_www: bool,
        retained: Certificate | None,
    ) -> DomainResult:
        """What associating would return, writing nothing."""
        now = await uow.now()
        wanted = _covered_names(domain, enable_www)
        if retained is not None and retained.expires_at is not None and retained.expires_at > now:
            cert_status, records = _revalidated(retained, wanted)
        else:
            fresh = _fresh_certificate(service.region, service.account_id, domain, wanted, service)
            cert_status, records = fresh.status, fresh.validation_records
        association = CustomDomain(
            service_id=service.service_id,
            domain_name=domain,
            enable_www_subdomain=enable_www,
            status=_association_status(cert_status),
            certificate_id=retained.certificate_id if retained else "",
            created_at=now,
            validation_records=records,
        )
        return DomainResult(service.service_url, service.service_arn, _creating(association))

    async def _locked_service(
        self, uow: UnitOfWork, account_id: str, service_id: str, service_arn: str
    ) -> Service:
        """The service, locked until commit: a delete, pause or update of it waits for
        this transaction (and this one for theirs), so a domain is never linked to a
        service that another transaction is taking away."""
        service = await uow.services.get(account_id, service_id, for_update=True)
        if service is None or service.service_arn != service_arn:
            raise _service_not_found(service_arn)
        _check_domains_changeable(service)
        return service

    async def _claim_certificate(
        self, uow: UnitOfWork, service: Service, domain: str, wanted: list[str]
    ) -> tuple[Certificate, bool]:
        """The domain's certificate record, linked to `service`, and whether it was
        reused. A record retained from an earlier association is reused; one past its
        retention is purged here and replaced, exactly as if the reaper had come first."""
        account_id = service.account_id
        for _ in range(CLAIM_ATTEMPTS):
            fresh = _fresh_certificate(service.region, account_id, domain, wanted, service)
            if await uow.certificates.insert_if_absent(fresh):
                return fresh, False
            existing = await uow.certificates.get_for_domain(
                account_id, service.region, domain, for_update=True
            )
            if existing is None:
                continue  # purged since the insert found it
            if existing.service_id is not None:
                raise _already_associated(domain, existing.service_arn or "")
            purged = await uow.certificates.purge_if_expired(existing.certificate_id)
            if purged is not None:
                uow.record(
                    events.certificate_purged(
                        purged.account_id, purged.certificate_arn, purged.domain_name, "replaced"
                    )
                )
                continue
            status, records = _revalidated(existing, wanted)
            await uow.certificates.link(
                existing, service.service_id, service.service_arn, status, records
            )
            return existing, True
        raise BackendUnavailable(f"The certificate record of {domain} kept changing; try again.")

    async def _replay(
        self, uow: UnitOfWork, account_id: str, request_id: str, fingerprint: str, domain: str
    ) -> bool:
        """True when `request_id` was already used for this very request."""
        first = await first_result(
            uow, account_id, request_id, fingerprint, "custom_domain", domain
        )
        return first is not None

    async def _replayed_association(
        self, uow: UnitOfWork, account_id: str, service_id: str, domain: str
    ) -> DomainResult:
        service = await uow.services.get(account_id, service_id)
        association = await uow.custom_domains.get(service_id, domain)
        if service is None or association is None:
            raise CustomDomainNotFound(
                f"Domain {domain} is no longer associated.",
                {"serviceArn": service.service_arn if service else "", "domainName": domain},
            )
        # The same answer as the first time.
        return DomainResult(service.service_url, service.service_arn, _creating(association))

    async def _replayed_disassociation(
        self, uow: UnitOfWork, account_id: str, service_id: str, domain: str
    ) -> DomainResult:
        service = await uow.services.get(account_id, service_id)
        if service is None:
            raise _service_not_found("")
        cert = await uow.certificates.get_for_domain(account_id, service.region, domain)
        records = cert.validation_records if cert else []
        www = any(r.get("domain") == f"www.{domain}" for r in records)
        association = CustomDomain(
            service_id=service_id,
            domain_name=domain,
            enable_www_subdomain=www,
            status=CustomDomainStatus.DELETING,
            certificate_id=cert.certificate_id if cert else "",
            created_at=cert.created_at if cert else await uow.now(),
            validation_records=records,
        )
        return DomainResult(service.service_url, service.service_arn, _shown(association))

    def _service_id(
        self, account_id: str, service_arn: str, violations: list[FieldViolation]
    ) -> str:
        return owned_resource_id(
            service_arn,
            kind="service",
            field="service_arn",
            account_id=account_id,
            region=request_region(self.settings),
            not_found=_service_not_found,
            violations=violations,
        )


def covered_names(association: CustomDomain) -> list[str]:
    """The host names an association's certificate must cover."""
    return _covered_names(association.domain_name, association.enable_www_subdomain)


def _covered_names(domain: str, www: bool) -> list[str]:
    return [domain, f"www.{domain}"] if www else [domain]


def _check_domains_changeable(service: Service) -> None:
    """Domains change only on a RUNNING service: a paused one refuses domain changes,
    like any other change, and one with an operation in progress must wait for it."""
    if service.status is ServiceStatus.OPERATION_IN_PROGRESS and service.current_operation_id:
        raise OperationInProgress(
            f"Service {service.service_arn} has operation {service.current_operation_id} "
            "in progress.",
            {"serviceArn": service.service_arn, "operationId": service.current_operation_id},
        )
    if service.status is not ServiceStatus.RUNNING:
        raise InvalidState(
            f"Service {service.service_arn} is {service.status.value}; custom domains "
            "change only while it is RUNNING.",
            {
                "serviceArn": service.service_arn,
                "status": service.status.value,
                "allowedStatuses": ServiceStatus.RUNNING.value,
            },
        )


def _domain_violations(domain: str) -> list[FieldViolation]:
    if not domain:
        return [FieldViolation("domain_name", "required")]
    if not names.is_domain_name(domain):
        return [FieldViolation("domain_name", DOMAIN_RULE)]
    return []


def _validation_record(host: str) -> dict[str, str]:
    # A wildcard's certificate is validated on its base domain, as ACM does.
    base = host.removeprefix("*.")
    return {
        "domain": host,
        "name": f"_{secrets.token_hex(16)}.{base}.",
        "type": "CNAME",
        "value": f"_{secrets.token_hex(16)}.{names.new_url_label()}.{VALIDATION_DOMAIN}.",
        "status": "PENDING_VALIDATION",
    }


def _fresh_certificate(
    region: str, account_id: str, domain: str, wanted: list[str], service: Service
) -> Certificate:
    certificate_id = names.new_resource_id()
    return Certificate(
        certificate_id=certificate_id,
        account_id=account_id,
        certificate_arn=names.certificate_arn(region, account_id, certificate_id),
        domain_name=domain,
        status=CertificateStatus.PENDING_VALIDATION,
        validation_records=[_validation_record(host) for host in wanted],
        created_at=service.updated_at,
        service_id=service.service_id,
        service_arn=service.service_arn,
    )


def _revalidated(
    cert: Certificate, wanted: list[str]
) -> tuple[CertificateStatus, list[dict[str, str]]]:
    """A reused record's status and records for a new association: an issued record that
    already covers every wanted name stays issued; a name it lacks (www, newly enabled)
    gets a record to validate; a failed validation is tried again with the same records,
    so that fixing the DNS entry is enough."""
    records = [dict(r) for r in cert.validation_records]
    have = {r.get("domain") for r in records}
    records += [_validation_record(host) for host in wanted if host not in have]
    for record in records:
        if record.get("status") == "FAILED":
            record["status"] = "PENDING_VALIDATION"
    relevant = [r for r in records if r.get("domain") in wanted]
    if cert.status is CertificateStatus.ISSUED and all(
        r.get("status") == "SUCCESS" for r in relevant
    ):
        return CertificateStatus.ISSUED, records
    return CertificateStatus.PENDING_VALIDATION, records


def _association_status(cert_status: CertificateStatus) -> CustomDomainStatus:
    """An issued certificate goes on to be bound (by the next validation pass); any
    other waits for DNS validation."""
    if cert_status is CertificateStatus.ISSUED:
        return CustomDomainStatus.BINDING_CERTIFICATE
    return CustomDomainStatus.PENDING_CERTIFICATE_DNS_VALIDATION


def _creating(association: CustomDomain) -> CustomDomain:
    """What associating answers: the new association CREATING, where App Runner's start
    (clients such as Terraform wait for it to leave that state)."""
    return dataclasses.replace(_shown(association), status=CustomDomainStatus.CREATING)


def _shown(association: CustomDomain) -> CustomDomain:
    """The association with only the validation records of the names it covers."""
    wanted = set(covered_names(association))
    association.validation_records = [
        r for r in association.validation_records if r.get("domain") in wanted
    ]
    return association


def _name_position(position: list[object] | None) -> str | None:
    if position is None:
        return None
    if len(position) != 1 or not isinstance(position[0], str):
        raise InvalidPageToken("page_token is not valid.")
    return position[0]


def _service_not_found(service_arn: str) -> ServiceNotFound:
    return ServiceNotFound(f"Service {service_arn} not found.", {"serviceArn": service_arn})


def _already_associated(domain: str, service_arn: str) -> CustomDomainAlreadyAssociated:
    return CustomDomainAlreadyAssociated(
        f"Domain {domain} is already associated with service {service_arn}.",
        {"domainName": domain, "serviceArn": service_arn},
    )
