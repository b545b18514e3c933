"""The custom domain use cases (application/domain_commands.py) and the certificate DNS
validation pass (application/dns.py) on the fakes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from servicecontrol_server.application.dns import DnsValidation
from servicecontrol_server.domain.errors import (
    CustomDomainAlreadyAssociated,
    CustomDomainNotFound,
    InvalidRequest,
    InvalidState,
    OperationInProgress,
    QuotaExceeded,
)
from servicecontrol_server.domain.model import (
    Certificate,
    CertificateStatus,
    CustomDomainStatus,
    ServiceStatus,
)

from .harness import ACCOUNT, Unit, unit_settings

DOMAIN = "shop.example.com"


def cert_for(unit: Unit, domain: str) -> Certificate:
    [cert] = [c for c in unit.db.tables.certificates.values() if c.domain_name == domain]
    return cert


async def validate(unit: Unit, point_right: bool = True) -> None:
    """Publishes every pending validation record (or wrong ones) and runs a pass."""
    for cert in unit.db.tables.certificates.values():
        for record in cert.validation_records:
            unit.dns.records[record["name"]] = record["value"] if point_right else "elsewhere."
    await DnsValidation(unit.uow, unit.dns).run_once()


async def test_associate_creates_a_certificate_waiting_for_dns_validation() -> None:
    unit = Unit()
    svc = await unit.running_service()
    result = await unit.domains.associate(ACCOUNT, svc.service_arn, DOMAIN.upper(), None)
    domain = result.custom_domain
    assert domain.domain_name == DOMAIN
    assert domain.enable_www_subdomain is True
    # The answer starts where App Runner's does; the association then waits for DNS.
    assert domain.status is CustomDomainStatus.CREATING
    stored = unit.db.tables.custom_domains[(svc.service_id, DOMAIN)]
    assert stored.status is CustomDomainStatus.PENDING_CERTIFICATE_DNS_VALIDATION
    assert (result.dns_target, result.service_arn) == (svc.service_url, svc.service_arn)
    cert = cert_for(unit, DOMAIN)
    assert cert.service_id == svc.service_id
    assert cert.status is CertificateStatus.PENDING_VALIDATION
    assert [r["domain"] for r in cert.validation_records] == [DOMAIN, f"www.{DOMAIN}"]
    assert domain.validation_records == cert.validation_records
    event = unit.db.events[-1]
    assert event.type == "custom_domain.associated"
    assert event.payload["certificateReused"] is False
    assert event.payload["certificateArn"] == cert.certificate_arn


@pytest.mark.parametrize(
    ("domain", "www", "bad"),
    [
        ("", None, {"domain_name"}),
        ("not a domain", None, {"domain_name"}),
        ("*.example.com", True, {"enable_www_subdomain"}),
    ],
)
async def test_associate_refuses_bad_input(domain: str, www: bool | None, bad: set[str]) -> None:
    unit = Unit()
    svc = await unit.running_service()
    commits = unit.db.commits
    with pytest.raises(InvalidRequest) as refused:
        await unit.domains.associate(ACCOUNT, svc.service_arn, domain, www)
    assert {v.field for v in refused.value.violations} == bad
    assert unit.db.commits == commits


async def test_a_wildcard_covers_www_by_itself() -> None:
    unit = Unit()
    svc = await unit.running_service()
    result = await unit.domains.associate(ACCOUNT, svc.service_arn, "*.example.com", None)
    assert result.custom_domain.enable_www_subdomain is False
    assert [r["domain"] for r in result.custom_domain.validation_records] == ["*.example.com"]


async def test_associate_validate_only_writes_nothing() -> None:
    unit = Unit()
    svc = await unit.running_service()
    commits = unit.db.commits
    result = await unit.domains.associate(
        ACCOUNT, svc.service_arn, DOMAIN, False, validate_only=True
    )
    assert result.custom_domain.status is CustomDomainStatus.CREATING
    assert [r["domain"] for r in result.custom_domain.validation_records] == [DOMAIN]
    assert unit.db.commits == commits
    assert not unit.db.tables.certificates and not unit.db.tables.custom_domains


async def test_a_domain_belongs_to_one_service_and_a_service_has_a_quota() -> None:
    unit = Unit()
    one = await unit.running_service("web-one")
    two = await unit.running_service("web-two")
    await unit.domains.associate(ACCOUNT, one.service_arn, DOMAIN, None)
    with pytest.raises(CustomDomainAlreadyAssociated) as taken:
        await unit.domains.associate(ACCOUNT, two.service_arn, DOMAIN, None)
    assert taken.value.metadata["serviceArn"] == one.service_arn
    await unit.domains.associate(ACCOUNT, one.service_arn, "api.example.com", None)
    with pytest.raises(QuotaExceeded) as refused:
        await unit.domains.associate(ACCOUNT, one.service_arn, "www2.example.com", None)
    assert refused.value.reason == "CUSTOM_DOMAIN_QUOTA_EXCEEDED"
    assert len(unit.db.tables.custom_domains) == 2


async def test_domains_change_only_while_the_service_is_running() -> None:
    unit = Unit()
    svc = await unit.service_in(ServiceStatus.PAUSED)
    with pytest.raises(InvalidState):
        await unit.domains.associate(ACCOUNT, svc.service_arn, DOMAIN, None)
    await unit.services.resume_service(ACCOUNT, svc.service_arn)
    with pytest.raises(OperationInProgress):
        await unit.domains.associate(ACCOUNT, svc.service_arn, DOMAIN, None)
    await unit.run_jobs()
    await unit.domains.associate(ACCOUNT, svc.service_arn, DOMAIN, None)


async def test_associate_request_id_replays() -> None:
    unit = Unit()
    svc = await unit.running_service()
    request_id = str(uuid.uuid4())
    first = await unit.domains.associate(ACCOUNT, svc.service_arn, DOMAIN, None, request_id)
    events = len(unit.db.events)
    again = await unit.domains.associate(ACCOUNT, svc.service_arn, DOMAIN, None, request_id)
    assert again.custom_domain.certificate_id == first.custom_domain.certificate_id
    assert len(unit.db.events) == events


async def test_disassociate_retains_the_certificate_and_reassociating_reuses_it() -> None:
    unit = Unit()
    svc = await unit.running_service()
    await unit.domains.associate(ACCOUNT, svc.service_arn, DOMAIN, None)
    await validate(unit)
    issued = cert_for(unit, DOMAIN)
    assert issued.status is CertificateStatus.ISSUED

    unit.clock.advance(10)
    result = await unit.domains.disassociate(ACCOUNT, svc.service_arn, DOMAIN)
    assert result.custom_domain.status is CustomDomainStatus.DELETING
    assert not unit.db.tables.custom_domains
    retained = cert_for(unit, DOMAIN)
    assert retained.service_id is None
    assert retained.expires_at is not None
    assert (retained.expires_at - unit.clock.now()).total_seconds() == (
        unit.settings.certificate_retention_seconds
    )
    event = unit.db.events[-1]
    assert event.type == "custom_domain.disassociated"
    assert event.payload["certificateExpiresAt"] == retained.expires_at.isoformat()
    with pytest.raises(CustomDomainNotFound):
        await unit.domains.disassociate(ACCOUNT, svc.service_arn, DOMAIN)

    again = await unit.domains.associate(ACCOUNT, svc.service_arn, DOMAIN, None)
    # An issued certificate that covers every name needs no validation: the association
    # starts CREATING, is bound by the next pass (BINDING_CERTIFICATE), then ACTIVE.
    assert again.custom_domain.status is CustomDomainStatus.CREATING
    stored = unit.db.tables.custom_domains[(svc.service_id, DOMAIN)]
    assert stored.status is CustomDomainStatus.BINDING_CERTIFICATE
    summary = await DnsValidation(unit.uow, unit.dns).run_once()
    assert (summary.issued, summary.bound) == (0, 1)
    bound = unit.db.tables.custom_domains[(svc.service_id, DOMAIN)]
    assert bound.status is CustomDomainStatus.ACTIVE
    assert again.custom_domain.certificate_id == issued.certificate_id
    relinked = cert_for(unit, DOMAIN)
    assert relinked.service_id == svc.service_id
    assert relinked.expires_at is None and relinked.unlinked_at is None
    associated = [e for e in unit.db.events if e.type == "custom_domain.associated"][-1]
    assert associated.payload["certificateReused"] is True


async def test_an_expired_retained_certificate_is_replaced() -> None:
    unit = Unit()
    svc = await unit.running_service()
    await unit.domains.associate(ACCOUNT, svc.service_arn, DOMAIN, None)
    old = cert_for(unit, DOMAIN)
    await unit.domains.disassociate(ACCOUNT, svc.service_arn, DOMAIN)
    unit.clock.advance(unit.settings.certificate_retention_seconds)
    await unit.domains.associate(ACCOUNT, svc.service_arn, DOMAIN, None)
    new = cert_for(unit, DOMAIN)
    assert new.certificate_id != old.certificate_id
    purged = [e for e in unit.db.events if e.type == "certificate.purged"]
    assert [(e.resource_arn, e.payload["reason"]) for e in purged] == [
        (old.certificate_arn, "replaced")
    ]


async def test_describe_pages_by_name_and_certificates_are_listed() -> None:
    unit = Unit()
    svc = await unit.running_service()
    for name in ("b.example.com", "a.example.com"):
        await unit.domains.associate(ACCOUNT, svc.service_arn, name, False)
    target, page = await unit.domains.describe(ACCOUNT, svc.service_arn, 1, "")
    assert target.dns_target == svc.service_url
    assert [d.domain_name for d in page.items] == ["a.example.com"]
    _, rest = await unit.domains.describe(ACCOUNT, svc.service_arn, 1, page.next_page_token)
    assert [d.domain_name for d in rest.items] == ["b.example.com"]
    assert rest.next_page_token == ""
    certs = await unit.domains.list_certificates(ACCOUNT, "", 10, "")
    assert [c.domain_name for c in certs.items] == ["a.example.com", "b.example.com"]
    one = await unit.domains.list_certificates(ACCOUNT, "B.example.com", 10, "")
    assert [c.domain_name for c in one.items] == ["b.example.com"]


async def test_dns_validation_issues_fails_or_waits() -> None:
    unit = Unit(unit_settings(custom_domains_per_service=3))
    svc = await unit.running_service()
    for name in ("ok.example.com", "wrong.example.com", "later.example.com"):
        await unit.domains.associate(ACCOUNT, svc.service_arn, name, False)
    for name, point in (("ok.example.com", "right"), ("wrong.example.com", "wrong")):
        [record] = cert_for(unit, name).validation_records
        unit.dns.records[record["name"]] = record["value"] if point == "right" else "x."
    events = len(unit.db.events)

    summary = await DnsValidation(unit.uow, unit.dns, batch=1).run_once()

    assert (summary.issued, summary.failed, summary.pending, summary.bound) == (1, 1, 1, 1)
    status = {k[1]: d.status for k, d in unit.db.tables.custom_domains.items()}
    assert status == {
        "ok.example.com": CustomDomainStatus.ACTIVE,
        "wrong.example.com": CustomDomainStatus.CREATE_FAILED,
        "later.example.com": CustomDomainStatus.PENDING_CERTIFICATE_DNS_VALIDATION,
    }
    ok, wrong = cert_for(unit, "ok.example.com"), cert_for(unit, "wrong.example.com")
    assert ok.status is CertificateStatus.ISSUED
    assert ok.validation_records[0]["status"] == "SUCCESS"
    assert wrong.status is CertificateStatus.VALIDATION_FAILED
    assert wrong.validation_records[0]["status"] == "FAILED"
    assert sorted(e.type for e in unit.db.events[events:]) == [
        "certificate.issued",
        "certificate.validation_failed",
        "custom_domain.validated",
        "custom_domain.validated",
    ]


async def test_a_failed_lookup_only_means_not_yet() -> None:
    unit = Unit()
    svc = await unit.running_service()
    await unit.domains.associate(ACCOUNT, svc.service_arn, DOMAIN, None)
    unit.dns.failing = True
    summary = await DnsValidation(unit.uow, unit.dns).run_once()
    assert (summary.issued, summary.failed, summary.pending) == (0, 0, 1)
    unit.dns.failing = False
    await validate(unit)
    assert cert_for(unit, DOMAIN).status is CertificateStatus.ISSUED


class ValidatingOnly(DnsValidation):
    """A pass interrupted between validating a certificate and binding it."""

    async def _bind(self, association: Any, cert: Any) -> bool:
        return False


async def test_an_association_goes_creating_pending_binding_active() -> None:
    unit = Unit()
    svc = await unit.running_service()
    answer = await unit.domains.associate(ACCOUNT, svc.service_arn, DOMAIN, False)
    key = (svc.service_id, DOMAIN)
    seen = [answer.custom_domain.status, unit.db.tables.custom_domains[key].status]
    for record in cert_for(unit, DOMAIN).validation_records:
        unit.dns.records[record["name"]] = record["value"]
    # Validated and bound in separate transactions: a pass that stops between the two
    # leaves the association BINDING_CERTIFICATE, and the next pass binds it.
    assert (await ValidatingOnly(unit.uow, unit.dns).run_once()).issued == 1
    seen.append(unit.db.tables.custom_domains[key].status)
    assert (await DnsValidation(unit.uow, unit.dns).run_once()).bound == 1
    seen.append(unit.db.tables.custom_domains[key].status)
    assert seen == [
        CustomDomainStatus.CREATING,
        CustomDomainStatus.PENDING_CERTIFICATE_DNS_VALIDATION,
        CustomDomainStatus.BINDING_CERTIFICATE,
        CustomDomainStatus.ACTIVE,
    ]
    assert [e.type for e in unit.db.events[-2:]] == [
        "certificate.issued",
        "custom_domain.validated",
    ]
    assert unit.db.events[-1].payload["status"] == "ACTIVE"
