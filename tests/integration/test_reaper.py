"""The TTL reaper: each kind of record on both sides of its expiry, bounded batches,
concurrent reapers, the race with re-associating a domain, and the loop in the server.

Time moves only by rewriting the records' timestamps relative to the database clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.adapters.dns.zone_file import ZoneFileValidator
from servicecontrol_server.adapters.postgres.unit_of_work import PostgresUnitOfWork
from servicecontrol_server.application.dns import DnsValidation
from servicecontrol_server.application.reaper import Reaper
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, Harness, harness_settings, running_harness
from tests.support.waiting import wait_until

TABLES = (
    "accounts",
    "services",
    "service_configurations",
    "compute_instances",
    "operations",
    "request_ids",
    "jobs",
    "connections",
    "certificates",
    "custom_domains",
)
NOTHING = {
    "certificates": 0,
    "connections": 0,
    "vpc_connectors": 0,
    "vpc_ingress_connections": 0,
    "services": 0,
    "operations": 0,
    "events": 0,
    "request_ids": 0,
    "jobs": 0,
}


@pytest.fixture
async def h(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    """A harness whose own reaper passes once at start and then not again in a test."""
    settings = harness_settings(database_url, s3_server, tmp_path, reaper_interval_seconds=3600)
    async with running_harness(settings, tmp_path) as harness:
        harness.push_image()
        yield harness


async def execute(h: Harness, sql: str, **params: object) -> None:
    async with h.app.engine.begin() as conn:
        await conn.execute(text(sql), params)


async def scalar(h: Harness, sql: str, **params: object) -> Any:
    async with h.app.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def column(h: Harness, sql: str, **params: object) -> list[Any]:
    async with h.app.engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).scalars())


async def fingerprint(h: Harness) -> dict[str, str]:
    """Every row of every table but the outbox (the relay keeps writing to it)."""
    out = {}
    async with h.app.engine.connect() as conn:
        for table in TABLES:
            out[table] = (
                await conn.execute(
                    text(
                        f"select md5(coalesce(string_agg(t::text, '|' order by t::text), ''))"
                        f" from {table} t"
                    )
                )
            ).scalar_one()
    return out


def unchanged_except(before: dict[str, str], after: dict[str, str], *tables: str) -> None:
    assert {k: v for k, v in after.items() if k not in tables} == {
        k: v for k, v in before.items() if k not in tables
    }


async def events(h: Harness, kind: str) -> list[str]:
    return await column(h, "select resource_arn from outbox where type = :t order by seq", t=kind)


async def retained_certificate(h: Harness, svc: pb.Service, domain: str) -> str:
    """Associates and disassociates `domain`; returns its certificate id."""
    await h.stub.AssociateCustomDomain(
        api.AssociateCustomDomainRequest(
            service_arn=svc.service_arn, domain_name=domain, enable_www_subdomain=False
        ),
        metadata=h.meta(),
    )
    await h.stub.DisassociateCustomDomain(
        api.DisassociateCustomDomainRequest(service_arn=svc.service_arn, domain_name=domain),
        metadata=h.meta(),
    )
    return str(
        await scalar(h, "select certificate_id from certificates where domain_name=:d", d=domain)
    )


async def test_certificates_are_purged_once_expired_and_not_before(h: Harness) -> None:
    svc = await h.running_service("cert-owner")
    soon = await retained_certificate(h, svc, "soon.example.com")
    late = await retained_certificate(h, svc, "late.example.com")
    await h.stub.AssociateCustomDomain(
        api.AssociateCustomDomainRequest(
            service_arn=svc.service_arn, domain_name="live.example.com"
        ),
        metadata=h.meta(),
    )
    reaper = Reaper(h.app.uow, h.settings)
    assert await reaper.reap_once() == NOTHING

    await execute(
        h,
        "update certificates set expires_at = now() + interval '1 second'"
        " where certificate_id = :c",
        c=soon,
    )
    before = await fingerprint(h)
    assert await reaper.reap_once() == NOTHING
    assert await fingerprint(h) == before

    await execute(
        h,
        "update certificates set expires_at = now() - interval '1 second'"
        " where certificate_id = :c",
        c=soon,
    )
    before = await fingerprint(h)
    assert await reaper.reap_once() == {**NOTHING, "certificates": 1}
    after = await fingerprint(h)
    unchanged_except(before, after, "certificates")
    assert sorted(await column(h, "select domain_name from certificates")) == [
        "late.example.com",
        "live.example.com",
    ]
    assert late in await column(h, "select certificate_id from certificates")
    assert await events(h, "certificate.purged") == [
        f"arn:aws:apprunner:us-east-1:{ACCOUNT}:certificate/{soon}"
    ]
    listed = await h.stub.ListCertificates(api.ListCertificatesRequest(), metadata=h.meta())
    assert [c.domain_name for c in listed.certificates] == ["late.example.com", "live.example.com"]

    # Just expired goes too; a linked record never expires, whatever its timestamps say.
    await execute(h, "update certificates set expires_at = now() where certificate_id = :c", c=late)
    await execute(
        h,
        "update certificates set expires_at = now() - interval '1 day'"
        " where domain_name = 'live.example.com'",
    )
    assert await reaper.reap_once() == {**NOTHING, "certificates": 1}
    assert await column(h, "select domain_name from certificates") == ["live.example.com"]


async def test_connection_tombstones_are_purged_at_purge_at(h: Harness) -> None:
    made = []
    for name in ("conn-live", "conn-soon", "conn-gone"):
        response = await h.stub.CreateConnection(
            api.CreateConnectionRequest(connection_name=name, provider_type=pb.Connection.GITHUB),
            metadata=h.meta(),
        )
        made.append(response.connection.connection_arn)
    for arn in made[1:]:
        await h.stub.DeleteConnection(
            api.DeleteConnectionRequest(connection_arn=arn), metadata=h.meta()
        )
    await execute(
        h,
        "update connections set purge_at = now() + interval '1 second' where connection_arn = :a",
        a=made[1],
    )
    await execute(
        h,
        "update connections set purge_at = now() - interval '1 second' where connection_arn = :a",
        a=made[2],
    )
    # A live connection is never purged, whatever its timestamps say.
    await execute(
        h,
        "update connections set purge_at = now() - interval '1 day' where connection_arn = :a",
        a=made[0],
    )
    before = await fingerprint(h)
    assert await Reaper(h.app.uow, h.settings).reap_once() == {**NOTHING, "connections": 1}
    unchanged_except(before, await fingerprint(h), "connections")
    assert await column(h, "select connection_arn from connections order by connection_name") == [
        made[0],
        made[1],
    ]
    assert await events(h, "connection.purged") == [made[2]]
    listed = await h.stub.ListConnections(api.ListConnectionsRequest(), metadata=h.meta())
    assert {c.connection_name for c in listed.connections} == {"conn-live", "conn-soon"}


async def test_service_tombstones_are_purged_with_their_operations(h: Harness) -> None:
    kept, purged, alive = await asyncio.gather(
        h.running_service("tomb-kept"),
        h.running_service("tomb-purged"),
        h.running_service("still-alive"),
    )
    for svc in (kept, purged):
        deleting = await h.stub.DeleteService(
            api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=h.meta()
        )
        await h.wait(deleting.operation_id)
    for svc in (purged, alive):
        # A failed job of an earlier operation, left for inspection.
        await execute(
            h,
            "insert into jobs (kind, service_id, account_id, state, max_attempts)"
            " values ('pause_service', :s, :a, 'failed', 1)",
            s=svc.service_id,
            a=ACCOUNT,
        )
    await execute(
        h,
        "update services set purge_at = now() + interval '1 second' where service_id = :s",
        s=kept.service_id,
    )
    await execute(
        h,
        "update services set purge_at = now() - interval '1 second' where service_id = :s",
        s=purged.service_id,
    )
    before = await fingerprint(h)
    counts = await Reaper(h.app.uow, h.settings).reap_once()
    assert counts == {**NOTHING, "services": 1, "operations": 2, "jobs": 1}
    unchanged_except(before, await fingerprint(h), "services", "operations", "jobs")
    assert sorted(await column(h, "select service_name from services")) == [
        "still-alive",
        "tomb-kept",
    ]
    assert (
        await scalar(
            h, "select count(*) from operations where service_id = :s", s=purged.service_id
        )
        == 0
    )
    assert (
        await scalar(h, "select count(*) from operations where service_id = :s", s=kept.service_id)
        == 2
    )
    assert await column(h, "select service_id from jobs") == [alive.service_id]
    assert await events(h, "service.purged") == [purged.service_arn]
    err = await expect_error(h.describe(purged.service_arn), grpc.StatusCode.NOT_FOUND)
    assert err.reason == "SERVICE_NOT_FOUND"
    assert (await h.describe(kept.service_arn)).status == pb.Service.DELETED


async def test_operations_events_and_request_ids_older_than_their_retention(h: Harness) -> None:
    s = h.settings
    first = await h.create("aged-one", request_id=str(uuid.uuid4()))
    second = await h.create("aged-two", request_id=str(uuid.uuid4()))
    for created in (first, second):
        await h.wait(created.operation_id)
    await wait_until(lambda: scalar(h, "select count(*) = 0 from outbox where position is null"))
    # An operation still running has no ended_at and is never a candidate, however old.
    active = str(uuid.uuid4())
    await execute(
        h,
        "insert into operations (operation_id, account_id, service_id, target_arn, type, status,"
        " started_at) values (cast(:o as uuid), :a, :s, :arn, 'PAUSE_SERVICE', 'IN_PROGRESS',"
        " now() - interval '400 days')",
        o=active,
        a=ACCOUNT,
        s=first.service.service_id,
        arn=first.service.service_arn,
    )

    async def age(table: str, column_name: str, key: str, value: str, seconds: int) -> None:
        await execute(
            h,
            f"update {table} set {column_name} = now() - make_interval(secs => :secs)"
            f" where {key} = :v",
            secs=seconds,
            v=value,
        )

    op_ret, rid_ret, ev_ret = (
        s.operation_retention_seconds,
        s.request_id_retention_seconds,
        s.event_retention_seconds,
    )
    await age("operations", "ended_at", "operation_id", first.operation_id, op_ret - 1)
    await age("operations", "ended_at", "operation_id", second.operation_id, op_ret + 1)
    rids = await column(h, "select request_id from request_ids order by created_at")
    await age("request_ids", "created_at", "request_id", rids[0], rid_ret - 1)
    await age("request_ids", "created_at", "request_id", rids[1], rid_ret + 1)
    event_ids = await column(h, "select event_id::text from outbox order by seq limit 2")
    await age("outbox", "delivered_at", "event_id::text", event_ids[0], ev_ret - 1)
    await age("outbox", "delivered_at", "event_id::text", event_ids[1], ev_ret + 1)
    before = await fingerprint(h)
    outbox_before = await column(h, "select event_id::text from outbox")

    counts = await Reaper(h.app.uow, h.settings).reap_once()
    assert counts == {**NOTHING, "operations": 1, "events": 1, "request_ids": 1}
    unchanged_except(before, await fingerprint(h), "operations", "request_ids")
    assert set(await column(h, "select operation_id::text from operations")) == {
        first.operation_id,
        active,
    }
    assert await column(h, "select request_id from request_ids") == [rids[0]]
    assert set(await column(h, "select event_id::text from outbox")) == (
        set(outbox_before) - {event_ids[1]}
    )


async def test_orphaned_failed_jobs_are_purged(h: Harness) -> None:
    svc = await h.running_service("has-jobs")
    for service_id, state in (
        (svc.service_id, "failed"),
        ("0" * 32, "failed"),
        (None, "failed"),
        ("1" * 32, "queued"),
    ):
        await execute(
            h,
            "insert into jobs (kind, service_id, state, max_attempts, run_at)"
            " values ('pause_service', :s, :st, 1, now() + interval '1 day')",
            s=service_id,
            st=state,
        )
    assert await Reaper(h.app.uow, h.settings).reap_once() == {**NOTHING, "jobs": 1}
    assert await scalar(h, "select count(*) from jobs where service_id = :s", s="0" * 32) == 0
    assert await scalar(h, "select count(*) from jobs") == 3


async def test_batches_and_concurrent_reapers_never_double_count(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(
        database_url, s3_server, tmp_path, reaper_interval_seconds=3600, reaper_batch_size=3
    )
    async with running_harness(settings, tmp_path, workers=0) as h:
        await execute(
            h, "insert into accounts (account_id) values (:a) on conflict do nothing", a=ACCOUNT
        )
        for i in range(20):
            cert_id = uuid.uuid4().hex
            await execute(
                h,
                "insert into certificates (certificate_id, account_id, certificate_arn,"
                " domain_name, status, unlinked_at, expires_at) values (:c, :a, :arn, :d, 'ISSUED',"
                " now() - interval '8 days', now() - interval '1 day')",
                c=cert_id,
                a=ACCOUNT,
                d=f"bulk{i}.example.com",
                arn=f"arn:aws:apprunner:us-east-1:{ACCOUNT}:certificate/{cert_id}",
            )
        single = Reaper(h.app.uow, settings)
        # One reaper loops over batches of 3 until none is left.
        await execute(
            h,
            "update certificates set expires_at = now() + interval '1 day'"
            " where domain_name like 'bulk1%'",
        )
        assert (await single.reap_once())["certificates"] == 9
        await execute(h, "update certificates set expires_at = now() - interval '1 day'")
        reapers = [Reaper(h.app.uow, settings) for _ in range(4)]
        results = await asyncio.gather(*(r.reap_once() for r in reapers))
        assert sum(r["certificates"] for r in results) == 11
        assert await scalar(h, "select count(*) from certificates") == 0
        purged = await events(h, "certificate.purged")
        assert len(purged) == len(set(purged)) == 20


async def domain_status(h: Harness, service_arn: str, domain_name: str) -> int:
    """The association's status as DescribeCustomDomains shows it."""
    described = await h.stub.DescribeCustomDomains(
        api.DescribeCustomDomainsRequest(service_arn=service_arn), metadata=h.meta()
    )
    [domain] = [d for d in described.custom_domains if d.domain_name == domain_name]
    return int(domain.status)


async def test_reassociating_a_domain_while_the_reaper_runs(h: Harness, tmp_path: Path) -> None:
    svc = await h.running_service("racing-reaper")
    arn = svc.service_arn
    zone = tmp_path / "zone.txt"
    validation = DnsValidation(lambda: PostgresUnitOfWork(h.app.engine), ZoneFileValidator(zone))
    first = await h.stub.AssociateCustomDomain(
        api.AssociateCustomDomainRequest(
            service_arn=arn, domain_name="race.example.com", enable_www_subdomain=False
        ),
        metadata=h.meta(),
    )
    [record] = first.custom_domain.certificate_validation_records
    zone.write_text(f"{record.name} CNAME {record.value}\n")
    assert (await validation.run_once()).issued == 1
    reaper = Reaper(h.app.uow, h.settings)

    async def disassociate() -> str:
        await h.stub.DisassociateCustomDomain(
            api.DisassociateCustomDomainRequest(service_arn=arn, domain_name="race.example.com"),
            metadata=h.meta(),
        )
        return str(await scalar(h, "select certificate_arn from certificates"))

    async def associate() -> api.AssociateCustomDomainResponse:
        return await h.stub.AssociateCustomDomain(
            api.AssociateCustomDomainRequest(
                service_arn=arn, domain_name="race.example.com", enable_www_subdomain=False
            ),
            metadata=h.meta(),
        )

    for round_ in range(12):
        old = await disassociate()
        expired = round_ % 3 != 0
        shift = "- interval '1 second'" if expired else "+ interval '1 hour'"
        await execute(h, f"update certificates set expires_at = now() {shift}")
        purged_before = len(await events(h, "certificate.purged"))
        if round_ % 2:
            reaped, associated = await asyncio.gather(reaper.reap_once(), associate())
        else:
            associated, reaped = await asyncio.gather(associate(), reaper.reap_once())
        row = await column(
            h, "select certificate_arn || ' ' || status || ' ' || service_id from certificates"
        )
        assert len(row) == 1
        cert_arn, status, linked_to = row[0].split()
        assert linked_to == svc.service_id
        assert (
            await scalar(
                h,
                "select count(*) from custom_domains d join certificates c using (certificate_id)"
                " where d.service_id = :s and c.certificate_arn = :c",
                s=svc.service_id,
                c=cert_arn,
            )
            == 1
        )
        purged_now = await events(h, "certificate.purged")
        if expired:
            # Purged (by the reaper or by the association itself) and replaced.
            assert cert_arn != old and status == "PENDING_VALIDATION"
            # Answered as App Runner answers (creating); waiting for its DNS records.
            assert associated.custom_domain.status == pb.CustomDomain.CREATING
            assert await domain_status(h, arn, "race.example.com") == (
                pb.CustomDomain.PENDING_CERTIFICATE_DNS_VALIDATION
            )
            assert purged_now[purged_before:] == [old]
            assert reaped["certificates"] in (0, 1)
            # Validated again, so that the next rounds start from an issued record.
            [record] = associated.custom_domain.certificate_validation_records
            zone.write_text(f"{record.name} CNAME {record.value}\n")
            assert (await validation.run_once()).issued == 1
        else:
            assert cert_arn == old and status == "ISSUED"
            # The certificate is issued: the association waits only to be bound.
            assert associated.custom_domain.status == pb.CustomDomain.CREATING
            assert await domain_status(h, arn, "race.example.com") == (
                pb.CustomDomain.BINDING_CERTIFICATE
            )
            assert reaped == NOTHING and len(purged_now) == purged_before


async def test_an_expired_record_is_replaced_even_before_the_reaper_comes(h: Harness) -> None:
    svc = await h.running_service("no-reaper-yet")
    old = await retained_certificate(h, svc, "stale.example.com")
    await execute(h, "update certificates set expires_at = now() - interval '1 second'")
    response = await h.stub.AssociateCustomDomain(
        api.AssociateCustomDomainRequest(
            service_arn=svc.service_arn, domain_name="stale.example.com"
        ),
        metadata=h.meta(),
    )
    assert response.custom_domain.status == pb.CustomDomain.CREATING
    assert await domain_status(h, svc.service_arn, "stale.example.com") == (
        pb.CustomDomain.PENDING_CERTIFICATE_DNS_VALIDATION
    )
    fresh = await column(h, "select certificate_id from certificates")
    assert len(fresh) == 1 and fresh[0] != old
    assert await column(
        h, "select payload->>'reason' from outbox where type = 'certificate.purged'"
    ) == ["replaced"]
    assert await Reaper(h.app.uow, h.settings).reap_once() == NOTHING


async def test_a_reaper_skips_records_another_transaction_holds(h: Harness) -> None:
    svc = await h.running_service("held-record")
    held = await retained_certificate(h, svc, "held.example.com")
    free = await retained_certificate(h, svc, "free.example.com")
    await execute(h, "update certificates set expires_at = now() - interval '1 second'")
    reaper = Reaper(h.app.uow, h.settings)
    async with h.app.engine.connect() as conn:
        # What an association of the domain holds while it links the record again.
        await conn.execute(
            text("select 1 from certificates where certificate_id = :c for update"), {"c": held}
        )
        counts = await asyncio.wait_for(reaper.reap_once(), 5)
        assert counts == {**NOTHING, "certificates": 1}
        await conn.rollback()
    assert await column(h, "select certificate_id from certificates") == [held]
    assert free not in await column(h, "select certificate_id from certificates")
    assert (await reaper.reap_once())["certificates"] == 1


async def test_the_server_reaps_and_validates_on_its_own(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    zone = tmp_path / "zone.txt"
    settings = harness_settings(
        database_url, s3_server, tmp_path, reaper_interval_seconds=0.1, dns_zone_file=zone
    )
    async with running_harness(settings, tmp_path) as h:
        h.push_image()
        svc = await h.running_service("self-tending")
        expiring = await retained_certificate(h, svc, "old.example.com")
        response = await h.stub.AssociateCustomDomain(
            api.AssociateCustomDomainRequest(
                service_arn=svc.service_arn,
                domain_name="new.example.com",
                enable_www_subdomain=False,
            ),
            metadata=h.meta(),
        )
        [record] = response.custom_domain.certificate_validation_records
        zone.write_text(f"{record.name} CNAME {record.value}\n")
        await execute(
            h, "update certificates set expires_at = now() where certificate_id = :c", c=expiring
        )

        async def settled() -> bool:
            statuses = await column(h, "select status from custom_domains")
            return (
                statuses == ["ACTIVE"] and await scalar(h, "select count(*) from certificates") == 1
            )

        await wait_until(settled, timeout=10)


async def test_run_waits_on_the_stop_event_between_passes(h: Harness) -> None:
    passes: list[dict[str, int]] = []

    class Counting(Reaper):
        async def reap_once(self) -> dict[str, int]:
            passes.append(await super().reap_once())
            return passes[-1]

    stop = asyncio.Event()
    task = asyncio.create_task(Counting(h.app.uow, h.settings).run(stop))
    await wait_until(lambda: len(passes) == 1)
    # The interval is an hour: only a wait on the event can end the loop this soon.
    stop.set()
    await asyncio.wait_for(task, 5)
    assert passes == [NOTHING]
