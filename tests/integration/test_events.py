"""WatchEvents: the outbox as a resumable, account-scoped stream."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from tests.support.rpc import expect_error
from tests.support.server import OTHER_ACCOUNT, Harness


async def take(
    h: Harness, n: int, cursor: str = "", account: str | None = None, resource_arn: str = ""
) -> list[pb.Event]:
    """Reads n events from a fresh stream, then disconnects."""
    call = h.stub.WatchEvents(
        api.WatchEventsRequest(cursor=cursor, resource_arn=resource_arn),
        metadata=h.meta(account) if account else h.meta(),
    )
    out: list[pb.Event] = []
    try:
        async for response in call:
            out.append(response.event)
            if len(out) == n:
                break
    finally:
        call.cancel()
    return out


async def lifecycle(h: Harness, name: str) -> str:
    svc = await h.running_service(name)
    paused = await h.stub.PauseService(
        api.PauseServiceRequest(service_arn=svc.service_arn), metadata=h.meta()
    )
    await h.wait(paused.operation_id)
    resumed = await h.stub.ResumeService(
        api.ResumeServiceRequest(service_arn=svc.service_arn), metadata=h.meta()
    )
    await h.wait(resumed.operation_id)
    deleted = await h.stub.DeleteService(
        api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=h.meta()
    )
    await h.wait(deleted.operation_id)
    return svc.service_arn


EXPECTED = [
    "service.create_requested",
    "service.created",
    "service.pause_requested",
    "service.paused",
    "service.resume_requested",
    "service.resumed",
    "service.delete_requested",
    "service.deleted",
]


async def test_resume_from_cursor_sees_every_event_once_in_order(harness: Harness) -> None:
    arns = await asyncio.gather(lifecycle(harness, "stream-one"), lifecycle(harness, "stream-two"))
    first = await asyncio.wait_for(take(harness, 5), 20)
    # Reconnect after the last cursor seen; events that happen meanwhile are not lost.
    arns = list(arns) + [await lifecycle(harness, "stream-three")]
    rest = await asyncio.wait_for(take(harness, 3 * len(EXPECTED) - 5, cursor=first[-1].cursor), 20)
    events = first + rest
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids)) == 3 * len(EXPECTED)
    positions = [int(e.cursor) for e in events]
    assert positions == sorted(positions)
    for arn in arns:
        assert [e.type for e in events if e.resource_arn == arn] == EXPECTED
    deleted = next(e for e in events if e.type == "service.deleted")
    assert deleted.payload["status"] == "DELETED"
    assert deleted.payload["report"]["image_objects"] > 0


async def test_stream_follows_new_events_live(harness: Harness) -> None:
    collector = asyncio.create_task(take(harness, len(EXPECTED)))
    arn = await lifecycle(harness, "live-one")
    events = await asyncio.wait_for(collector, 20)
    assert [e.type for e in events] == EXPECTED and {e.resource_arn for e in events} == {arn}


async def test_streams_are_account_scoped_and_filterable(harness: Harness) -> None:
    mine = await harness.running_service("scoped-one")
    other = await harness.create("scoped-two", account=OTHER_ACCOUNT)
    await harness.wait(other.operation_id, account=OTHER_ACCOUNT)
    seen = await asyncio.wait_for(take(harness, 2, account=OTHER_ACCOUNT), 20)
    assert {e.resource_arn for e in seen} == {other.service.service_arn}
    assert {e.account_id for e in seen} == {OTHER_ACCOUNT}
    filtered = await asyncio.wait_for(take(harness, 2, resource_arn=mine.service_arn), 20)
    assert {e.resource_arn for e in filtered} == {mine.service_arn}


async def test_bad_cursor_is_refused(harness: Harness) -> None:
    async def first_event() -> Any:
        return await take(harness, 1, cursor="not-a-cursor")

    err = await expect_error(first_event(), grpc.StatusCode.INVALID_ARGUMENT)
    assert "cursor" in err.field_violations
