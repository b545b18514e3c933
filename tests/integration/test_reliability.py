"""Isolation from a hung object store, and deletes that outlast an outage."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from tests.support.blackhole import hanging_proxy
from tests.support.faults import FlakyObjectStore
from tests.support.rpc import expect_error
from tests.support.server import Harness, harness_settings, running_harness
from tests.support.waiting import wait_until

# How much slower an unrelated call may be while the store hangs than while it is
# healthy: generous, for a shared machine; the defect it guards against was 100x.
RATIO = 10
SLACK_SECONDS = 1.0


async def create(h: Harness) -> api.CreateServiceResponse:
    return await h.stub.CreateService(
        api.CreateServiceRequest(
            service_name=f"bystander-{uuid.uuid4().hex[:8]}",
            source_configuration=pb.SourceConfiguration(
                image_repository=pb.ImageRepository(image_identifier="hello-web:1.0")
            ),
        ),
        metadata=h.meta(),
        timeout=60,
    )


async def unrelated_calls(h: Harness, created: list[str]) -> float:
    """Median seconds of CreateService then DescribeService (neither touches the store
    on the request path), over three rounds; the operations started go to `created`."""
    rounds = []
    for _ in range(3):
        started = time.perf_counter()
        response = await create(h)
        await h.stub.DescribeService(
            api.DescribeServiceRequest(service_arn=response.service.service_arn),
            metadata=h.meta(),
            timeout=60,
        )
        rounds.append(time.perf_counter() - started)
        created.append(response.operation_id)
    return statistics.median(rounds)


async def create_to_running(h: Harness) -> float:
    """Median seconds from CreateService to its operation's success (the job copies the
    image: the job workers' object-store pool), over two rounds."""
    rounds = []
    for _ in range(2):
        started = time.perf_counter()
        response = await create(h)
        op = await h.wait(response.operation_id, timeout=60)
        assert op.status == pb.Operation.SUCCEEDED, op
        rounds.append(time.perf_counter() - started)
    return statistics.median(rounds)


def plan(h: Harness, arn: str, timeout: float) -> Any:
    return h.stub.DeleteService(
        api.DeleteServiceRequest(service_arn=arn, validate_only=True),
        metadata=h.meta(),
        timeout=timeout,
    )


async def test_a_hung_object_store_delays_no_unrelated_call(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    with hanging_proxy(s3_server.endpoint) as proxy:
        through_proxy = SimpleNamespace(
            endpoint=proxy.endpoint,
            access_key=s3_server.access_key,
            secret_key=s3_server.secret_key,
        )
        settings = harness_settings(
            database_url,
            through_proxy,
            tmp_path,
            object_store_call_timeout_seconds=1.0,
            object_store_request_threads=2,
            object_store_job_threads=2,
            job_retry_window_seconds=300,
        )
        async with running_harness(settings, tmp_path) as h:
            h.push_image()
            victim = await h.running_service("victim")
            bystanders: list[str] = []
            healthy_calls = await unrelated_calls(h, bystanders)
            healthy_create = await create_to_running(h)

            # The store turns into a black hole: connections accepted, never answered.
            proxy.set_mode("hang")
            # Callers that give up quickly on a plan that cannot finish, several at once.
            plans = [asyncio.ensure_future(plan(h, victim.service_arn, 0.5)) for _ in range(8)]
            while_hung = await unrelated_calls(h, bystanders)
            outcomes = await asyncio.gather(*plans, return_exceptions=True)
            codes = {o.code() for o in outcomes if isinstance(o, grpc.aio.AioRpcError)}
            assert len(codes) and codes <= {
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.UNAVAILABLE,
            }, outcomes
            assert while_hung <= RATIO * healthy_calls + SLACK_SECONDS, (
                healthy_calls,
                while_hung,
            )
            # A caller that waits longer is told the store is unavailable, within the
            # per-call bound, instead of hanging with it.
            await expect_error(plan(h, victim.service_arn, 20), grpc.StatusCode.UNAVAILABLE)

            proxy.set_mode("pass")

            async def plan_answers() -> bool:
                try:
                    answer = await plan(h, victim.service_arn, 20)
                except grpc.aio.AioRpcError:
                    return False
                return answer.plan.image_objects > 0 and answer.plan.estimated

            async def bystanders_created() -> bool:
                for operation_id in bystanders:
                    op = await h.wait(operation_id, timeout=1)
                    if op.status != pb.Operation.SUCCEEDED:
                        return False
                return True

            # Both pools recover once the store answers again (the jobs that waited
            # through the outage finish), and work as fast as before.
            await wait_until(plan_answers, timeout=30, interval=0.2)
            await wait_until(bystanders_created, timeout=30, interval=0.2)
            recovered = await create_to_running(h)
            assert recovered <= RATIO * healthy_create + SLACK_SECONDS, (
                healthy_create,
                recovered,
            )


async def test_a_delete_outlasts_an_object_store_outage_longer_than_the_old_budget(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(
        database_url,
        s3_server,
        tmp_path,
        job_max_attempts=3,
        job_retry_window_seconds=120,
        job_backoff_base_seconds=0.05,
        job_backoff_max_seconds=0.2,
    )
    async with running_harness(settings, tmp_path) as h:
        h.push_image()
        svc = await h.running_service("patient")
        flaky = FlakyObjectStore(h.app.store)
        for handler in h.app.handlers.values():
            handler.store = flaky
        flaky.down = True
        deleted = await h.stub.DeleteService(
            api.DeleteServiceRequest(service_arn=svc.service_arn), metadata=h.meta()
        )

        async def describe_operation() -> pb.Operation:
            response = await h.stub.DescribeOperation(
                api.DescribeOperationRequest(operation_id=deleted.operation_id),
                metadata=h.meta(),
            )
            return response.operation

        seen: list[pb.Operation] = []

        async def past_the_old_budget_and_waiting() -> bool:
            # Seen between two attempts (an attempt in flight has no next attempt time).
            op = await describe_operation()
            seen.append(op)
            return op.attempt > 2 * settings.job_max_attempts and op.HasField("next_attempt_at")

        await wait_until(past_the_old_budget_and_waiting, timeout=60)
        op = seen[-1]
        assert op.status in (pb.Operation.PENDING, pb.Operation.IN_PROGRESS)
        assert op.HasField("retry_until") and op.HasField("next_attempt_at")
        assert op.retry_until.ToDatetime() > op.next_attempt_at.ToDatetime()
        assert op.status_message.startswith("waiting for the object store: attempt"), op
        assert "retrying until" in op.status_message
        assert (await h.describe(svc.service_arn)).status == pb.Service.OPERATION_IN_PROGRESS

        flaky.down = False
        done = await h.wait(deleted.operation_id, timeout=60)
        assert done.status == pb.Operation.SUCCEEDED, done
        assert not done.HasField("retry_until")
        assert done.status_message == ""
        assert (await h.describe(svc.service_arn)).status == pb.Service.DELETED
        assert (
            list(h.app.store.list_objects(settings.image_bucket, f"services/{svc.service_id}/"))
            == []
        )
