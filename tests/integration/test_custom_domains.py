"""Custom domains and their certificate records: association rules, validation through
the operator's zone file, retention and reuse, and the race with deleting the service."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.adapters.dns.zone_file import ZoneFileValidator
from servicecontrol_server.adapters.postgres.unit_of_work import PostgresUnitOfWork
from servicecontrol_server.application.dns import DnsValidation, ValidationSummary
from tests.support.processes import SERVICECONTROL, environment
from tests.support.rpc import expect_error
from tests.support.server import (
    ACCOUNT,
    OTHER_ACCOUNT,
    Harness,
    harness_settings,
    running_harness,
)

RECORD_NAME = re.compile(r"_[0-9a-f]{32}\.(?P<host>.+)\.")
RECORD_VALUE = re.compile(r"_[0-9a-f]{32}\.[a-z0-9]{10}\.acm-validations\.servicecontrol\.local\.")
PENDING = pb.CustomDomain.PENDING_CERTIFICATE_DNS_VALIDATION
CREATING = pb.CustomDomain.CREATING


async def scalar(h: Harness, sql: str, **params: object) -> object:
    async with h.app.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def counts(h: Harness) -> tuple[object, ...]:
    async with h.app.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "select (select count(*) from certificates), (select count(*) from"
                    " custom_domains), (select count(*) from outbox where type like"
                    " 'custom_domain.%' or type like 'certificate.%')"
                )
            )
        ).one()
    return tuple(row)


async def associate(
    h: Harness, arn: str, domain: str, account: str = ACCOUNT, **kw: Any
) -> api.AssociateCustomDomainResponse:
    return await h.stub.AssociateCustomDomain(
        api.AssociateCustomDomainRequest(service_arn=arn, domain_name=domain, **kw),
        metadata=h.meta(account),
    )


async def disassociate(
    h: Harness, arn: str, domain: str, account: str = ACCOUNT, **kw: Any
) -> api.DisassociateCustomDomainResponse:
    return await h.stub.DisassociateCustomDomain(
        api.DisassociateCustomDomainRequest(service_arn=arn, domain_name=domain, **kw),
        metadata=h.meta(account),
    )


async def describe(h: Harness, arn: str, **kw: Any) -> api.DescribeCustomDomainsResponse:
    return await h.stub.DescribeCustomDomains(
        api.DescribeCustomDomainsRequest(service_arn=arn, **kw), metadata=h.meta()
    )


async def certificates(h: Harness, account: str = ACCOUNT, **kw: Any) -> list[pb.Certificate]:
    response = await h.stub.ListCertificates(
        api.ListCertificatesRequest(**kw), metadata=h.meta(account)
    )
    return list(response.certificates)


class Zone:
    """The operator's zone file, and validation passes that read it."""

    def __init__(self, h: Harness, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self.validation = DnsValidation(
            lambda: PostgresUnitOfWork(h.app.engine), ZoneFileValidator(path)
        )

    def publish(
        self,
        domain: pb.CustomDomain,
        *,
        wrong: Collection[str] = (),
        only: Collection[str] | None = None,
    ) -> None:
        """Adds the domain's records as asked (`wrong`: hosts given another value;
        `only`: just these hosts)."""
        for record in domain.certificate_validation_records:
            host = RECORD_NAME.fullmatch(record.name)
            assert host is not None
            name = host["host"]
            if only is not None and name not in only:
                continue
            value = "_0.elsewhere.example." if name in wrong else record.value
            self.lines.append(f"{record.name} 300 IN CNAME {value}")
        self.path.write_text("\n".join(["; test zone", *self.lines]) + "\n")

    async def validate(self, account: str | None = None) -> ValidationSummary:
        return await self.validation.run_once(account)


@pytest.fixture
def zone(harness: Harness, tmp_path: Path) -> Zone:
    return Zone(harness, tmp_path / "zone.txt")


async def test_associate_returns_pending_with_validation_records(harness: Harness) -> None:
    svc = await harness.running_service("with-domain")
    response = await associate(harness, svc.service_arn, "Shop.Example.com")
    assert response.dns_target == svc.service_url
    assert response.service_arn == svc.service_arn
    domain = response.custom_domain
    assert domain.domain_name == "shop.example.com"
    assert domain.enable_www_subdomain is True
    # Where App Runner starts; the stored association waits for DNS validation.
    assert domain.status == CREATING
    assert (await describe(harness, svc.service_arn)).custom_domains[0].status == PENDING
    hosts = []
    for record in domain.certificate_validation_records:
        match = RECORD_NAME.fullmatch(record.name)
        assert match is not None, record.name
        hosts.append(match["host"])
        assert RECORD_VALUE.fullmatch(record.value), record.value
        assert record.type == "CNAME"
        assert record.status == pb.CertificateValidationRecord.PENDING_VALIDATION
    assert hosts == ["shop.example.com", "www.shop.example.com"]

    [cert] = await certificates(harness)
    assert cert.domain_name == "shop.example.com"
    assert cert.status == pb.Certificate.PENDING_VALIDATION
    assert cert.service_arn == svc.service_arn
    assert re.fullmatch(
        rf"arn:aws:apprunner:us-east-1:{ACCOUNT}:certificate/[0-9a-f]{{32}}", cert.certificate_arn
    )
    assert not cert.HasField("expires_at") and not cert.HasField("unlinked_at")
    assert await counts(harness) == (1, 1, 1)

    bare = await associate(harness, svc.service_arn, "api.example.com", enable_www_subdomain=False)
    assert bare.custom_domain.enable_www_subdomain is False
    assert len(bare.custom_domain.certificate_validation_records) == 1
    wild = await associate(harness, svc.service_arn, "*.example.org")
    assert wild.custom_domain.enable_www_subdomain is False
    # A wildcard's certificate is validated on its base domain.
    [record] = wild.custom_domain.certificate_validation_records
    match = RECORD_NAME.fullmatch(record.name)
    assert match is not None and match["host"] == "example.org"

    described = await describe(harness, svc.service_arn)
    assert described.dns_target == svc.service_url
    assert [d.domain_name for d in described.custom_domains] == [
        "*.example.org",
        "api.example.com",
        "shop.example.com",
    ]
    stored = pb.CustomDomain()
    stored.CopyFrom(domain)
    stored.status = PENDING
    assert described.custom_domains[2] == stored


@pytest.mark.parametrize(
    ("domain", "extra", "field"),
    [
        ("", {}, "domain_name"),
        (".".join(["a" * 63] * 4) + ".com", {}, "domain_name"),
        ("x" * 64 + ".example.com", {}, "domain_name"),
        ("under_score.example.com", {}, "domain_name"),
        ("*.*.example.com", {}, "domain_name"),
        ("shop.*.example.com", {}, "domain_name"),
        ("localhost", {}, "domain_name"),
        ("-bad.example.com", {}, "domain_name"),
        ("shop..example.com", {}, "domain_name"),
        ("*.example.com", {"enable_www_subdomain": True}, "enable_www_subdomain"),
        ("ok.example.com", {"request_id": "not-a-uuid"}, "request_id"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_written(
    harness: Harness, domain: str, extra: dict[str, Any], field: str
) -> None:
    svc = await harness.running_service("strict")
    err = await expect_error(
        associate(harness, svc.service_arn, domain, **extra), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert err.reason == "INVALID_REQUEST" and field in err.field_violations
    if field == "domain_name":
        err = await expect_error(
            disassociate(harness, svc.service_arn, domain), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert field in err.field_violations
    assert await counts(harness) == (0, 0, 0)


async def test_unknown_malformed_and_other_accounts_service_arns(harness: Harness) -> None:
    svc = await harness.running_service("owned")
    unknown = svc.service_arn[:-32] + uuid.uuid4().hex
    foreign = svc.service_arn.replace(ACCOUNT, OTHER_ACCOUNT)
    for arn in (unknown, foreign):
        err = await expect_error(
            associate(harness, arn, "a.example.com"), grpc.StatusCode.NOT_FOUND
        )
        assert err.reason == "SERVICE_NOT_FOUND"
        await expect_error(describe(harness, arn), grpc.StatusCode.NOT_FOUND)
        await expect_error(disassociate(harness, arn, "a.example.com"), grpc.StatusCode.NOT_FOUND)
    await expect_error(
        associate(harness, svc.service_arn, "a.example.com", account=OTHER_ACCOUNT),
        grpc.StatusCode.NOT_FOUND,
    )
    for arn in ("", "arn:aws:apprunner:us-east-1:1:service/x/y"):
        err = await expect_error(
            associate(harness, arn, "a.example.com"), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert "service_arn" in err.field_violations
    assert await counts(harness) == (0, 0, 0)


async def test_a_domain_is_associated_once_per_account(harness: Harness) -> None:
    first, second = await asyncio.gather(
        harness.running_service("first-svc"), harness.running_service("second-svc")
    )
    # Concurrent claims of one domain: exactly one wins, whichever service asks.
    results = await asyncio.gather(
        *(
            associate(harness, svc.service_arn, "contested.example.com")
            for svc in (first, second, first, second)
        ),
        return_exceptions=True,
    )
    won = [r for r in results if isinstance(r, api.AssociateCustomDomainResponse)]
    lost = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(won) == 1 and len(lost) == 3
    assert {r.code() for r in lost} == {grpc.StatusCode.ALREADY_EXISTS}
    owner = won[0].service_arn
    for svc in (first, second):
        err = await expect_error(
            associate(harness, svc.service_arn, "contested.example.com"),
            grpc.StatusCode.ALREADY_EXISTS,
        )
        assert err.reason == "CUSTOM_DOMAIN_ALREADY_ASSOCIATED"
        assert err.metadata == {"domainName": "contested.example.com", "serviceArn": owner}
    assert await counts(harness) == (1, 1, 1)

    # Another account has its own certificate records.
    created = await harness.create("their-svc", account=OTHER_ACCOUNT)
    await harness.wait(created.operation_id, account=OTHER_ACCOUNT)
    theirs = await harness.describe(created.service.service_arn, account=OTHER_ACCOUNT)
    await associate(harness, theirs.service_arn, "contested.example.com", account=OTHER_ACCOUNT)
    assert [c.service_arn for c in await certificates(harness, OTHER_ACCOUNT)] == [
        theirs.service_arn
    ]
    assert [c.service_arn for c in await certificates(harness)] == [owner]


async def test_quota_of_domains_per_service_holds_under_concurrency(harness: Harness) -> None:
    svc = await harness.running_service("busy-domains")
    limit = harness.settings.custom_domains_per_service
    results = await asyncio.gather(
        *(associate(harness, svc.service_arn, f"d{i}.example.com") for i in range(limit + 3)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, api.AssociateCustomDomainResponse) for r in results) == limit
    err = await expect_error(
        associate(harness, svc.service_arn, "extra.example.com"), grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    assert err.reason == "CUSTOM_DOMAIN_QUOTA_EXCEEDED"
    assert err.metadata == {"limit": str(limit), "usage": str(limit)}
    assert err.quota_violations == [f"service {svc.service_arn}"]
    assert await counts(harness) == (limit, limit, limit)


async def test_paused_or_busy_services_refuse_domain_changes(harness: Harness) -> None:
    svc = await harness.running_service("napper")
    await associate(harness, svc.service_arn, "kept.example.com")
    paused = await harness.stub.PauseService(
        api.PauseServiceRequest(service_arn=svc.service_arn), metadata=harness.meta()
    )
    await harness.wait(paused.operation_id)
    before = await counts(harness)
    for call in (
        associate(harness, svc.service_arn, "new.example.com"),
        disassociate(harness, svc.service_arn, "kept.example.com"),
    ):
        err = await expect_error(call, grpc.StatusCode.FAILED_PRECONDITION)
        assert err.reason == "INVALID_STATE"
        assert err.metadata["status"] == "PAUSED" and err.metadata["allowedStatuses"] == "RUNNING"
    assert await counts(harness) == before
    # A paused service keeps its domains.
    assert [d.domain_name for d in (await describe(harness, svc.service_arn)).custom_domains] == [
        "kept.example.com"
    ]


async def test_a_service_with_an_operation_in_progress_refuses_domain_changes(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    async with running_harness(settings, tmp_path, workers=0) as h:
        created = await h.create("still-creating")
        err = await expect_error(
            associate(h, created.service.service_arn, "x.example.com"),
            grpc.StatusCode.FAILED_PRECONDITION,
        )
        assert err.reason == "OPERATION_IN_PROGRESS"
        assert err.metadata["operationId"] == created.operation_id
        assert await counts(h) == (0, 0, 0)


async def test_disassociate_unlinks_and_retains_the_certificate(harness: Harness) -> None:
    svc = await harness.running_service("unlinker")
    linked = (await associate(harness, svc.service_arn, "gone.example.com")).custom_domain
    response = await disassociate(harness, svc.service_arn, "gone.example.com")
    assert response.dns_target == svc.service_url and response.service_arn == svc.service_arn
    assert response.custom_domain.status == pb.CustomDomain.DELETING
    assert list(response.custom_domain.certificate_validation_records) == list(
        linked.certificate_validation_records
    )
    assert (await describe(harness, svc.service_arn)).custom_domains == []
    [cert] = await certificates(harness, domain_name="gone.example.com")
    assert cert.service_arn == ""
    assert cert.expires_at.ToDatetime() - cert.unlinked_at.ToDatetime() == timedelta(
        seconds=harness.settings.certificate_retention_seconds
    )
    assert await counts(harness) == (1, 0, 2)
    err = await expect_error(
        disassociate(harness, svc.service_arn, "gone.example.com"), grpc.StatusCode.NOT_FOUND
    )
    assert err.reason == "CUSTOM_DOMAIN_NOT_FOUND"
    assert err.metadata == {"serviceArn": svc.service_arn, "domainName": "gone.example.com"}
    assert await counts(harness) == (1, 0, 2)


async def test_dns_validation_issues_fails_or_waits(harness: Harness, zone: Zone) -> None:
    svc = await harness.running_service("validated")
    good = (await associate(harness, svc.service_arn, "good.example.com")).custom_domain
    bad = (await associate(harness, svc.service_arn, "bad.example.com")).custom_domain
    half = (await associate(harness, svc.service_arn, "half.example.com")).custom_domain
    await associate(harness, svc.service_arn, "silent.example.com")

    assert await zone.validate() == ValidationSummary(0, 0, 4)  # no zone file yet
    zone.publish(good)
    zone.publish(bad, wrong={"www.bad.example.com"})
    zone.publish(half, only={"half.example.com"})
    assert await zone.validate(OTHER_ACCOUNT) == ValidationSummary(0, 0, 0)
    assert await zone.validate() == ValidationSummary(issued=1, failed=1, pending=2, bound=1)

    domains = {d.domain_name: d for d in (await describe(harness, svc.service_arn)).custom_domains}
    assert domains["good.example.com"].status == pb.CustomDomain.ACTIVE
    assert {r.status for r in domains["good.example.com"].certificate_validation_records} == {
        pb.CertificateValidationRecord.SUCCESS
    }
    failed = domains["bad.example.com"]
    assert failed.status == pb.CustomDomain.CREATE_FAILED
    assert [r.status for r in failed.certificate_validation_records] == [
        pb.CertificateValidationRecord.PENDING_VALIDATION,
        pb.CertificateValidationRecord.FAILED,
    ]
    assert domains["half.example.com"].status == PENDING
    assert domains["silent.example.com"].status == PENDING
    certs = {c.domain_name: c.status for c in await certificates(harness)}
    assert certs == {
        "good.example.com": pb.Certificate.ISSUED,
        "bad.example.com": pb.Certificate.VALIDATION_FAILED,
        "half.example.com": pb.Certificate.PENDING_VALIDATION,
        "silent.example.com": pb.Certificate.PENDING_VALIDATION,
    }
    assert (
        await scalar(
            harness,
            "select string_agg(type, ',' order by type) from outbox"
            " where type like 'certificate.%'",
        )
        == "certificate.issued,certificate.validation_failed"
    )

    # Another pass changes nothing that was decided.
    assert await zone.validate() == ValidationSummary(0, 0, 2)


async def test_one_pass_walks_the_whole_backlog_in_batches(harness: Harness, zone: Zone) -> None:
    svc = await harness.running_service("backlog")
    for i in range(5):
        domain = await associate(
            harness, svc.service_arn, f"b{i}.example.com", enable_www_subdomain=False
        )
        if i != 2:
            zone.publish(domain.custom_domain)
    zone.validation.batch = 2
    assert await zone.validate() == ValidationSummary(issued=4, failed=0, pending=1, bound=4)


async def test_cli_validate_runs_one_pass(harness: Harness, zone: Zone) -> None:
    svc = await harness.running_service("cli-validated")
    good = (await associate(harness, svc.service_arn, "ok.example.com")).custom_domain
    wrong = (await associate(harness, svc.service_arn, "ko.example.com")).custom_domain
    await associate(harness, svc.service_arn, "later.example.com")
    zone.publish(good)
    zone.publish(wrong, wrong={"ko.example.com"})
    env = environment(harness.settings, SERVICECONTROL_DNS_ZONE_FILE=str(zone.path))
    proc = await asyncio.create_subprocess_exec(
        SERVICECONTROL,
        "domains",
        "validate",
        "--account",
        ACCOUNT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "issued 1, failed 1, pending 1"
    statuses = {
        d.domain_name: d.status for d in (await describe(harness, svc.service_arn)).custom_domains
    }
    assert statuses == {
        "ok.example.com": pb.CustomDomain.ACTIVE,
        "ko.example.com": pb.CustomDomain.CREATE_FAILED,
        "later.example.com": PENDING,
    }


async def test_reassociating_reuses_the_retained_certificate(harness: Harness, zone: Zone) -> None:
    first, second = await asyncio.gather(
        harness.running_service("first-home"), harness.running_service("second-home")
    )
    linked = (
        await associate(
            harness, first.service_arn, "moving.example.com", enable_www_subdomain=False
        )
    ).custom_domain
    zone.publish(linked)
    assert (await zone.validate()).issued == 1
    [issued] = await certificates(harness)
    await disassociate(harness, first.service_arn, "moving.example.com")

    # Within the retention window: the issued record is reused, no validation needed.
    preview = await associate(
        harness,
        second.service_arn,
        "moving.example.com",
        enable_www_subdomain=False,
        validate_only=True,
    )
    assert preview.custom_domain.status == CREATING
    assert (await certificates(harness))[0].service_arn == ""
    moved = await associate(
        harness, second.service_arn, "moving.example.com", enable_www_subdomain=False
    )
    assert moved.custom_domain.status == CREATING
    # Bound by the next pass, with no validation to wait for.
    assert (await describe(harness, second.service_arn)).custom_domains[0].status == (
        pb.CustomDomain.BINDING_CERTIFICATE
    )
    assert (await zone.validate()).bound == 1
    assert (await describe(harness, second.service_arn)).custom_domains[0].status == (
        pb.CustomDomain.ACTIVE
    )
    [record] = moved.custom_domain.certificate_validation_records
    assert record.name == linked.certificate_validation_records[0].name
    assert record.status == pb.CertificateValidationRecord.SUCCESS
    [reused] = await certificates(harness)
    assert reused.certificate_arn == issued.certificate_arn
    assert reused.status == pb.Certificate.ISSUED
    assert reused.service_arn == second.service_arn
    assert not reused.HasField("expires_at") and not reused.HasField("unlinked_at")
    assert (
        await scalar(
            harness,
            "select payload->>'certificateReused' from outbox"
            " where type='custom_domain.associated' order by seq desc limit 1",
        )
        == "true"
    )

    # Asking for www as well: the record covers the domain already, www needs validating.
    await disassociate(harness, second.service_arn, "moving.example.com")
    widened = (await associate(harness, first.service_arn, "moving.example.com")).custom_domain
    assert widened.status == CREATING
    assert [r.status for r in widened.certificate_validation_records] == [
        pb.CertificateValidationRecord.SUCCESS,
        pb.CertificateValidationRecord.PENDING_VALIDATION,
    ]
    [again] = await certificates(harness)
    assert again.certificate_arn == issued.certificate_arn
    assert again.status == pb.Certificate.PENDING_VALIDATION
    zone.publish(widened, only={"www.moving.example.com"})
    assert (await zone.validate()).issued == 1
    assert (await describe(harness, first.service_arn)).custom_domains[0].status == (
        pb.CustomDomain.ACTIVE
    )


async def test_a_failed_certificate_is_retried_when_reassociated(
    harness: Harness, zone: Zone
) -> None:
    svc = await harness.running_service("retrying")
    domain = (
        await associate(harness, svc.service_arn, "typo.example.com", enable_www_subdomain=False)
    ).custom_domain
    zone.publish(domain, wrong={"typo.example.com"})
    assert (await zone.validate()).failed == 1
    await disassociate(harness, svc.service_arn, "typo.example.com")
    again = (
        await associate(harness, svc.service_arn, "typo.example.com", enable_www_subdomain=False)
    ).custom_domain
    assert again.status == CREATING
    # Same records, so fixing the DNS entry is all it takes.
    assert [r.name for r in again.certificate_validation_records] == [
        r.name for r in domain.certificate_validation_records
    ]
    zone.lines.clear()
    zone.publish(domain)
    assert (await zone.validate()).issued == 1


async def test_validation_ignores_an_association_that_changed_meanwhile(
    harness: Harness,
) -> None:
    svc = await harness.running_service("fickle")
    await associate(harness, svc.service_arn, "fickle.example.com", enable_www_subdomain=False)

    class Meddling:
        """Answers yes, but the domain is disassociated while it looks the record up."""

        async def check(self, record_name: str, record_value: str) -> bool | None:
            await disassociate(harness, svc.service_arn, "fickle.example.com")
            return True

    validation = DnsValidation(lambda: PostgresUnitOfWork(harness.app.engine), Meddling())
    assert await validation.run_once() == ValidationSummary(0, 0, 0)
    [retained] = await certificates(harness)
    assert retained.status == pb.Certificate.PENDING_VALIDATION and retained.service_arn == ""
    assert await scalar(harness, "select count(*) from outbox where type like 'certificate.%'") == 0


async def test_describe_and_list_certificates_paging(harness: Harness) -> None:
    svc = await harness.running_service("paged")
    names = [f"p{i}.example.com" for i in range(5)]
    for name in reversed(names):
        await associate(harness, svc.service_arn, name)

    async def collect(
        call: Callable[[str], Awaitable[tuple[list[str], str]]],
    ) -> tuple[list[str], int]:
        seen: list[str] = []
        token, pages = "", 0
        while True:
            items, token = await call(token)
            seen += items
            pages += 1
            if not token:
                return seen, pages

    async def domains_page(token: str) -> tuple[list[str], str]:
        page = await describe(harness, svc.service_arn, page_size=2, page_token=token)
        return [d.domain_name for d in page.custom_domains], page.next_page_token

    async def certs_page(token: str) -> tuple[list[str], str]:
        page = await harness.stub.ListCertificates(
            api.ListCertificatesRequest(page_size=3, page_token=token), metadata=harness.meta()
        )
        return [c.domain_name for c in page.certificates], page.next_page_token

    assert await collect(domains_page) == (names, 3)
    assert await collect(certs_page) == (names, 2)
    assert len((await describe(harness, svc.service_arn, page_size=0)).custom_domains) == 5
    assert len((await describe(harness, svc.service_arn, page_size=50)).custom_domains) == 5
    one = await describe(harness, svc.service_arn, page_size=1)
    other = await harness.running_service("other-paged")
    err = await expect_error(
        describe(harness, other.service_arn, page_token=one.next_page_token),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert err.reason == "INVALID_PAGE_TOKEN"
    assert [c.domain_name for c in await certificates(harness, domain_name="P3.example.com")] == [
        "p3.example.com"
    ]
    assert await certificates(harness, OTHER_ACCOUNT) == []
    err = await expect_error(
        certificates(harness, domain_name="bad_name"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "domain_name" in err.field_violations


async def test_request_id_and_validate_only(harness: Harness) -> None:
    svc = await harness.running_service("careful")
    preview = await associate(harness, svc.service_arn, "preview.example.com", validate_only=True)
    assert preview.custom_domain.status == CREATING
    assert len(preview.custom_domain.certificate_validation_records) == 2
    assert await counts(harness) == (0, 0, 0)

    rid = str(uuid.uuid4())
    first = await associate(harness, svc.service_arn, "once.example.com", request_id=rid)
    again = await associate(harness, svc.service_arn, "once.example.com", request_id=rid)
    assert again.custom_domain == first.custom_domain
    err = await expect_error(
        associate(harness, svc.service_arn, "twice.example.com", request_id=rid),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert err.reason == "REQUEST_ID_REUSED"
    assert await counts(harness) == (1, 1, 1)

    kept = await disassociate(harness, svc.service_arn, "once.example.com", validate_only=True)
    assert kept.custom_domain.status == pb.CustomDomain.DELETING
    assert await counts(harness) == (1, 1, 1)
    rid = str(uuid.uuid4())
    gone = await disassociate(harness, svc.service_arn, "once.example.com", request_id=rid)
    replayed = await disassociate(harness, svc.service_arn, "once.example.com", request_id=rid)
    assert replayed.custom_domain == gone.custom_domain
    assert await counts(harness) == (1, 0, 2)


async def test_deleting_a_service_while_domains_are_associated(harness: Harness) -> None:
    rounds = 8
    services = await asyncio.gather(
        *(harness.running_service(f"doomed-{i}") for i in range(rounds))
    )

    async def race(i: int, svc: pb.Service) -> tuple[Any, Any]:
        def associating() -> Awaitable[Any]:
            return associate(harness, svc.service_arn, f"{svc.service_name}.example.com")

        def deleting() -> Awaitable[Any]:
            return harness.stub.DeleteService(
                api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=harness.meta()
            )

        # Half the rounds send the delete first.
        if i % 2:
            deleted, associated = await asyncio.gather(
                deleting(), associating(), return_exceptions=True
            )
        else:
            associated, deleted = await asyncio.gather(
                associating(), deleting(), return_exceptions=True
            )
        return associated, deleted

    outcomes = await asyncio.gather(*(race(i, svc) for i, svc in enumerate(services)))
    for svc, (associated, deleted) in zip(services, outcomes, strict=True):
        assert isinstance(deleted, api.DeleteServiceResponse), deleted
        op = await harness.wait(deleted.operation_id)
        assert op.status == pb.Operation.SUCCEEDED
        domain = f"{svc.service_name}.example.com"
        if isinstance(associated, api.AssociateCustomDomainResponse):
            assert list(op.deletion_report.unlinked_domain_names) == [domain]
            [cert] = await certificates(harness, domain_name=domain)
            assert cert.service_arn == "" and cert.HasField("expires_at")
        else:
            assert isinstance(associated, grpc.aio.AioRpcError)
            assert associated.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert list(op.deletion_report.unlinked_domain_names) == []
            assert await certificates(harness, domain_name=domain) == []
    assert (
        await scalar(
            harness,
            "select count(*) from custom_domains d join services s using (service_id)"
            " where s.status = 'DELETED'",
        )
        == 0
    )
    assert (
        await scalar(
            harness,
            "select count(*) from certificates c join services s using (service_id)"
            " where s.status = 'DELETED'",
        )
        == 0
    )
    assert await scalar(harness, "select count(*) from custom_domains") == 0
