"""The TTL reaper (application/reaper.py) against the fake clock, and the event stream's
cursor rules (application/events.py)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest

from servicecontrol_server.application.events import MAX_POSITION, EventQueries, parse_cursor
from servicecontrol_server.application.reaper import Reaper
from servicecontrol_server.domain import events
from servicecontrol_server.domain.errors import InvalidRequest
from servicecontrol_server.domain.model import ServiceStatus
from tests.support.waiting import wait_until

from .fakes import FakeEventFeed
from .harness import ACCOUNT, OTHER_ACCOUNT, Unit, unit_settings

ZERO = {
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


async def test_reaper_purges_only_what_is_due() -> None:
    unit = Unit()
    s = unit.settings
    reaper = Reaper(unit.uow, s)
    # A deleted service with a retained certificate, a failed delete before it, and an
    # ended operation per step; a deleted connection.
    svc = await unit.running_service()
    await unit.domains.associate(ACCOUNT, svc.service_arn, "shop.example.com", None)
    unit.store.failing.add("delete_objects")
    await unit.services.delete_service(ACCOUNT, svc.service_arn)
    await unit.run_jobs()
    unit.store.failing.clear()
    assert unit.db.service(svc.service_id).status is ServiceStatus.DELETE_FAILED
    # (The retries moved the clock on: everything below happens at one instant.)
    live = await unit.running_service("web-live")
    await unit.services.delete_service(ACCOUNT, svc.service_arn, request_id=str(uuid.uuid4()))
    await unit.run_jobs()
    connection = await unit.connections.create_connection(ACCOUNT, "github", "GITHUB")
    await unit.connections.delete_connection(ACCOUNT, connection.connection_arn)
    unit.db.relay()
    assert await reaper.reap_once() == ZERO

    # Request ids go first (a day); exactly at their age they are kept.
    unit.clock.advance(s.request_id_retention_seconds)
    assert await reaper.reap_once() == ZERO
    unit.clock.advance(1)
    assert await reaper.reap_once() == {**ZERO, "request_ids": 1}
    assert not unit.db.tables.request_ids

    # Certificates (a week): the expiry instant itself is expired. Delivered events (a
    # week too) are an age: exactly a week old, they are kept.
    unit.clock.advance(s.certificate_retention_seconds - s.request_id_retention_seconds - 2)
    assert await reaper.reap_once() == ZERO
    unit.clock.advance(1)
    assert await reaper.reap_once() == {**ZERO, "certificates": 1}
    assert not unit.db.tables.certificates
    purged = unit.db.events[-1]
    assert purged.type == "certificate.purged"
    assert purged.payload == {"domainName": "shop.example.com", "reason": "expired"}
    unit.clock.advance(1)
    delivered = len(unit.db.relayed_events())
    assert await reaper.reap_once() == {**ZERO, "events": delivered}
    assert unit.db.relayed_events() == []

    # Tombstones (30 days, an instant): the deleted service goes with its operations; the
    # live service's ended operation (30 days, an age) a second later.
    unit.clock.advance(s.service_tombstone_retention_seconds - s.certificate_retention_seconds - 1)
    events_before = len(unit.db.events)
    counts = await reaper.reap_once()
    svc_operations = 3  # create, the failed delete, the delete
    assert counts == {**ZERO, "services": 1, "connections": 1, "operations": svc_operations}
    assert set(unit.db.tables.services) == {live.service_id}
    assert unit.db.tables.connections == {}
    assert [o.service_id for o in unit.db.tables.operations.values()] == [live.service_id]
    assert [e.type for e in unit.db.events[events_before:]] == [
        "connection.purged",
        "service.purged",
    ]
    assert unit.db.events[-1].payload == {
        "serviceName": svc.service_name,
        "serviceId": svc.service_id,
    }
    unit.clock.advance(1)
    assert await reaper.reap_once() == {**ZERO, "operations": 1}
    assert unit.db.tables.operations == {}
    assert unit.db.service(live.service_id).status is ServiceStatus.RUNNING


async def test_reaper_works_in_batches_until_a_short_one() -> None:
    unit = Unit(settings=unit_settings(reaper_batch_size=2, connection_quota=5))
    for i in range(5):
        await unit.connections.create_connection(
            ACCOUNT if i < 2 else OTHER_ACCOUNT, f"conn-{i}", "GITHUB"
        )
    for connection in list(unit.db.tables.connections.values()):
        await unit.connections.delete_connection(connection.account_id, connection.connection_arn)
    unit.clock.advance(unit.settings.connection_tombstone_retention_seconds)
    commits = unit.db.commits
    counts = await Reaper(unit.uow, unit.settings).reap_once()
    assert counts["connections"] == 5
    # Batches of 2, 2 and 1 for connections; one empty batch for every other purge.
    assert unit.db.commits - commits == 3 + 8
    purged = [e for e in unit.db.events if e.type == "connection.purged"]
    assert len(purged) == 5


async def test_reaper_purges_failed_jobs_of_services_that_are_gone() -> None:
    unit = Unit()
    unit.push_image()
    svc = await unit.service_in(ServiceStatus.CREATE_FAILED)
    [failed] = unit.db.tables.jobs.values()
    assert failed.state == "failed"
    counts = await Reaper(unit.uow, unit.settings).reap_once()
    assert counts["jobs"] == 0
    # The service goes (as the tombstone purge does, outside this reaper's view).
    del unit.db.tables.services[svc.service_id]
    counts = await Reaper(unit.uow, unit.settings).reap_once()
    assert counts["jobs"] == 1
    assert unit.db.tables.jobs == {}


async def test_reaper_loop_survives_a_database_outage_and_stops() -> None:
    unit = Unit(settings=unit_settings(reaper_interval_seconds=0.01))
    unit.db.down = True
    stop = asyncio.Event()
    reaper = Reaper(unit.uow, unit.settings)
    task = asyncio.create_task(reaper.run(stop))
    # Passes keep coming while every one of them fails.
    await wait_until(lambda: len(unit.uow.made) >= 3, timeout=5)
    assert not task.done()
    assert not any(uow.committed for uow in unit.uow.made)
    unit.db.down = False
    connection = await unit.connections.create_connection(ACCOUNT, "github", "GITHUB")
    await unit.connections.delete_connection(ACCOUNT, connection.connection_arn)
    unit.clock.advance(unit.settings.connection_tombstone_retention_seconds)
    await wait_until(lambda: not unit.db.tables.connections, timeout=5)
    stop.set()
    await asyncio.wait_for(task, 5)


# ----- the event stream -----


@pytest.mark.parametrize("cursor", ["", "0", "1", str(MAX_POSITION)])
def test_parse_cursor_accepts_positions(cursor: str) -> None:
    assert parse_cursor(cursor) == (int(cursor) if cursor else 0)


@pytest.mark.parametrize("cursor", ["-1", "abc", "1.5", " 1", "١", str(MAX_POSITION + 1)])
def test_parse_cursor_refuses_anything_else(cursor: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        parse_cursor(cursor)
    assert [v.field for v in refused.value.violations] == ["cursor"]


async def test_watch_checks_the_request_before_streaming() -> None:
    unit = Unit()
    feed = FakeEventFeed(unit.db)
    queries = EventQueries(feed)
    with pytest.raises(InvalidRequest):
        queries.watch(ACCOUNT, "x")
    with pytest.raises(InvalidRequest) as refused:
        queries.watch(ACCOUNT, "", "not-an-arn")
    assert [v.field for v in refused.value.violations] == ["resource_arn"]
    assert feed.follows == []


async def test_watch_streams_the_accounts_events_after_the_cursor() -> None:
    unit = Unit()
    one = await unit.connections.create_connection(ACCOUNT, "conn-one", "GITHUB")
    await unit.connections.create_connection(OTHER_ACCOUNT, "conn-other", "GITHUB")
    await unit.connections.create_connection(ACCOUNT, "conn-two", "GITHUB")
    await unit.connections.delete_connection(ACCOUNT, one.connection_arn)
    unit.db.relay()
    queries = EventQueries(FakeEventFeed(unit.db))

    async def first(n: int, cursor: str, arn: str = "") -> list[tuple[int, str]]:
        got: list[tuple[int, str]] = []
        async with contextlib.aclosing(queries.watch(ACCOUNT, cursor, arn)) as stream:
            async for record in stream:
                got.append((record.position, record.type))
                if len(got) == n:
                    break
        return got

    everything = await first(3, "")
    assert everything == [
        (1, "connection.created"),
        (3, "connection.created"),
        (4, "connection.deleted"),
    ]
    assert await first(1, "3") == [(4, "connection.deleted")]
    assert await first(2, "", one.connection_arn) == [
        (1, "connection.created"),
        (4, "connection.deleted"),
    ]

    # Then live: an event relayed later arrives on an open stream.
    stream = queries.watch(ACCOUNT, "4")
    waiting = asyncio.ensure_future(anext(stream))
    await asyncio.sleep(0)
    assert not waiting.done()
    await unit.connections.create_connection(ACCOUNT, "conn-three", "GITHUB")
    unit.db.relay()
    record = await asyncio.wait_for(waiting, 5)
    assert (record.position, record.type) == (5, "connection.created")
    await stream.aclose()


def test_the_catalogue_types_are_the_stream_vocabulary() -> None:
    assert {t.value for t in events.EventType} >= {
        "service.create_requested",
        "service.purged",
        "connection.purged",
        "certificate.purged",
    }
