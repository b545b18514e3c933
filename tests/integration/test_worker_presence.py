"""An operation waiting with no job worker alive says so; once a worker is alive it is
claimed and the explanation is gone."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.application.workers import NO_WORKER
from tests.support.server import harness_settings, running_harness
from tests.support.waiting import wait_until


async def test_pending_operation_says_no_worker_is_alive(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    async with running_harness(settings, tmp_path, workers=0) as h:
        h.push_image()
        assert await h.app.presence.live_workers() == 0
        created = await h.create("lonely")

        described = await h.stub.DescribeOperation(
            api.DescribeOperationRequest(operation_id=created.operation_id), metadata=h.meta()
        )
        assert described.operation.status == pb.Operation.PENDING
        assert described.operation.status_message == NO_WORKER
        assert described.operation.current_step == "queued"
        listed = await h.stub.ListOperations(
            api.ListOperationsRequest(service_arn=created.service.service_arn), metadata=h.meta()
        )
        assert [o.status_message for o in listed.operations] == [NO_WORKER]
        waited = await h.wait(created.operation_id, timeout=1)
        assert waited.status_message == NO_WORKER

        stop = asyncio.Event()
        tasks = h.app.background_tasks(stop, workers=1, role="late")
        try:
            await wait_until(lambda: _live(h), timeout=10)
            op = await h.wait(created.operation_id)
            assert op.status == pb.Operation.SUCCEEDED
            assert op.status_message == ""
        finally:
            stop.set()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 15)
        await wait_until(lambda: _none(h), timeout=10)


async def _live(h: Any) -> bool:
    return bool(await h.app.presence.live_workers() == 1)


async def _none(h: Any) -> bool:
    return bool(await h.app.presence.live_workers() == 0)
