"""Worker processes killed with SIGKILL mid-delete, and several processes sharing one
database: every delete completes, nothing is left behind, no step has effect twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from tests.support.processes import worker_process
from tests.support.server import Harness, harness_settings, running_harness

pytestmark = pytest.mark.slow

CRASH_POINTS = [
    "delete:after_stop_compute",
    "delete:before_batch",
    "delete:between_batches",
    "delete_service:before_commit",
]


async def scalar(h: Harness, sql: str, **params: Any) -> Any:
    async with h.app.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


@pytest.mark.parametrize("crash_at", CRASH_POINTS)
async def test_sigkill_mid_delete_another_worker_finishes(
    database_url: str, s3_server: Any, tmp_path: Path, crash_at: str
) -> None:
    settings = harness_settings(
        database_url,
        s3_server,
        tmp_path,
        job_lease_seconds=2.0,
        job_heartbeat_seconds=0.5,
        job_poll_seconds=0.2,
    )
    async with running_harness(settings, tmp_path, workers=0) as h:
        h.push_image(layers=3)
        async with worker_process(
            settings, tmp_path / "a.log", SERVICECONTROL_CRASH_AT=crash_at
        ) as a:
            svc = await h.running_service("crash-test")
            copy = [
                o
                for o in h.app.store.list_objects(
                    settings.image_bucket, f"services/{svc.service_id}/"
                )
            ]
            deleted = await h.stub.DeleteService(
                api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=h.meta()
            )
            # The armed worker dies at the crash point, as a kill -9 would leave it.
            assert await asyncio.wait_for(a.wait(), 30) == -9
        before = await h.describe(svc.service_arn)
        assert before.status == pb.Service.OPERATION_IN_PROGRESS
        async with worker_process(settings, tmp_path / "b.log"):
            op = await h.wait(deleted.operation_id, timeout=30)
        assert op.status == pb.Operation.SUCCEEDED, op
        assert op.attempt == 2
        assert (await h.describe(svc.service_arn)).status == pb.Service.DELETED
        assert (
            list(h.app.store.list_objects(settings.image_bucket, f"services/{svc.service_id}/"))
            == []
        )
        # The report counts what the first attempt found, not what the second had left.
        assert op.deletion_report.image_objects == len(copy)
        assert op.deletion_report.image_bytes == sum(o.size for o in copy)
        # Compute was stopped once: the retry's stop found it stopped already.
        assert await scalar(h, "select count(*) from compute_instances") == 0
        assert (
            await scalar(
                h,
                "select count(*) from outbox where type = 'service.deleted' and resource_arn = :a",
                a=svc.service_arn,
            )
            == 1
        )
        assert await scalar(h, "select count(*) from jobs") == 0


async def test_two_servers_and_workers_share_one_database(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    """An in-process server with workers and two worker processes: 12 services created
    and deleted, every job run exactly once."""
    settings = harness_settings(database_url, s3_server, tmp_path)
    async with running_harness(settings, tmp_path, workers=2) as h:
        h.push_image()
        async with (
            worker_process(settings, tmp_path / "w1.log"),
            worker_process(settings, tmp_path / "w2.log"),
        ):
            created = await asyncio.gather(*(h.create(f"shared-{i:02d}") for i in range(12)))
            ops = await asyncio.gather(*(h.wait(c.operation_id) for c in created))
            assert {o.status for o in ops} == {pb.Operation.SUCCEEDED}
            deletes = await asyncio.gather(
                *(
                    h.stub.DeleteService(
                        api.DeleteServiceRequest(service_arn=c.service.service_arn),
                        metadata=h.meta(),
                    )
                    for c in created
                )
            )
            done = await asyncio.gather(*(h.wait(d.operation_id) for d in deletes))
            assert {o.status for o in done} == {pb.Operation.SUCCEEDED}
        assert {o.attempt for o in ops + done} == {1}
        assert await scalar(h, "select count(*) from services where status = 'DELETED'") == 12
        assert await scalar(h, "select count(*) from outbox where type = 'service.created'") == 12
        assert await scalar(h, "select count(*) from outbox where type = 'service.deleted'") == 12
        owners = await scalar(
            h, "select count(distinct type) from outbox"
        )  # sanity: events were written
        assert owners >= 4
