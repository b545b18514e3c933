"""What operators read: an access line per call on both endpoints, the operation and
service on every job line, a failure logged once, Prometheus metrics, /healthz and
/readyz."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psycopg
import pytest
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.adapters.postgres.database import libpq_url
from servicecontrol_server.api.ops_http import start_ops_http
from servicecontrol_server.bootstrap import ops_probes
from tests.support.aws import raw_call
from tests.support.server import ACCOUNT, Harness, harness_settings, running_harness
from tests.support.waiting import wait_until


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def ops(harness: Harness) -> AsyncIterator[str]:
    runner, port = await start_ops_http("127.0.0.1:0", *ops_probes(harness.app))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def grpc_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in records(caplog, "call") if getattr(r, "endpoint", "") == "grpc"]


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


async def test_every_call_has_one_access_line_and_counts(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    before_ok = sample(
        "servicecontrol_rpc_requests_total", endpoint="grpc", method="ListServices", code="OK"
    )
    before_bad = sample(
        "servicecontrol_rpc_duration_seconds_count",
        endpoint="grpc",
        method="DescribeService",
        code="INVALID_ARGUMENT",
    )
    call = harness.stub.ListServices(
        api.ListServicesRequest(), metadata=(*harness.meta(), ("x-request-id", "req-123"))
    )
    await call
    # A unary call's id goes back with its status, in the trailing metadata.
    assert ("x-request-id", "req-123") in tuple(await call.trailing_metadata())
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.stub.DescribeService(
            api.DescribeServiceRequest(service_arn="nope"), metadata=harness.meta()
        )

    # The caller may hear an error before the server has written the call's line.
    await wait_until(lambda: len(grpc_lines(caplog)) == 2, timeout=10)
    lines = grpc_lines(caplog)
    assert [(r.method, r.code, r.account) for r in lines] == [  # type: ignore[attr-defined]
        ("ListServices", "OK", ACCOUNT),
        ("DescribeService", "INVALID_ARGUMENT", ACCOUNT),
    ]
    assert lines[0].request_id == "req-123"  # type: ignore[attr-defined]
    assert len(lines[1].request_id) == 32  # type: ignore[attr-defined]
    # A refusal carries the id its line names beside its rich status, which still parses.
    trailers = tuple(refused.value.trailing_metadata() or ())
    assert ("x-request-id", lines[1].request_id) in trailers  # type: ignore[attr-defined]
    status = rpc_status.from_call(refused.value)
    assert status is not None and status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert all(r.duration_ms >= 0 for r in lines)  # type: ignore[attr-defined]
    assert (
        sample(
            "servicecontrol_rpc_requests_total", endpoint="grpc", method="ListServices", code="OK"
        )
        == before_ok + 1
    )
    assert (
        sample(
            "servicecontrol_rpc_duration_seconds_count",
            endpoint="grpc",
            method="DescribeService",
            code="INVALID_ARGUMENT",
        )
        == before_bad + 1
    )


async def test_a_stream_announces_its_request_id_before_any_event(harness: Harness) -> None:
    call = harness.stub.WatchEvents(
        api.WatchEventsRequest(), metadata=(*harness.meta(), ("x-request-id", "watch-1"))
    )
    try:
        # No event is waiting: the id arrives ahead of the first one.
        assert ("x-request-id", "watch-1") in tuple(await call.initial_metadata())
    finally:
        call.cancel()


async def test_app_runner_calls_have_access_lines(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    signed = harness.aws_credentials()
    answer = await raw_call(harness.aws_port, "AppRunner.ListServices", {}, credentials=signed)
    unknown = await raw_call(harness.aws_port, "AppRunner.NoSuchThing", {}, credentials=signed)
    lines = [r for r in records(caplog, "call") if r.endpoint == "aws"]  # type: ignore[attr-defined]
    assert [(r.method, r.code) for r in lines] == [  # type: ignore[attr-defined]
        ("ListServices", "200"),
        ("unknown", str(unknown.status)),
    ]
    assert lines[0].request_id == answer.headers["x-amzn-requestid"]  # type: ignore[attr-defined]
    assert lines[0].account == ACCOUNT  # type: ignore[attr-defined]


async def test_job_lines_name_the_operation_and_service_and_jobs_are_counted(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # A job's start is a debug line (one per attempt); its outcome is the info line.
    caplog.set_level(logging.DEBUG, logger="servicecontrol_server.engine.worker")
    before = sample("servicecontrol_jobs_total", kind="create_service", outcome="succeeded")
    store_calls = sample(
        "servicecontrol_object_store_call_duration_seconds_count",
        operation="copy_object",
        outcome="ok",
    )
    created = await harness.create("observed")
    op = await harness.wait(created.operation_id)
    assert op.status == pb.Operation.SUCCEEDED

    job_lines = [r for r in caplog.records if getattr(r, "job_id", None) is not None]
    assert {r.getMessage() for r in job_lines} >= {"job started", "job completed"}
    for line in job_lines:
        assert line.operation_id == created.operation_id  # type: ignore[attr-defined]
        assert line.service_arn == created.service.service_arn  # type: ignore[attr-defined]
    kind = job_lines[0].kind  # type: ignore[attr-defined]
    assert kind == "create_service"
    assert sample("servicecontrol_jobs_total", kind=kind, outcome="succeeded") == before + 1
    assert (
        sample(
            "servicecontrol_object_store_call_duration_seconds_count",
            operation="copy_object",
            outcome="ok",
        )
        > store_calls
    )


async def test_a_failed_job_is_logged_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    created = await harness.create("no-image", image="does-not-exist:1")
    op = await harness.wait(created.operation_id)
    assert op.status == pb.Operation.FAILED
    problems = [
        r
        for r in caplog.records
        if r.levelno >= logging.WARNING and getattr(r, "operation_id", None) == created.operation_id
    ]
    assert [r.getMessage() for r in problems] == ["job failed"]


async def test_metrics_and_health_endpoints(harness: Harness, ops: str, database_url: str) -> None:
    await harness.stub.ListServices(api.ListServicesRequest(), metadata=harness.meta())
    status, text = await get(f"{ops}/metrics")
    assert status == 200
    for name in (
        "servicecontrol_rpc_requests_total{",
        "servicecontrol_rpc_duration_seconds_bucket{",
        "servicecontrol_job_queue_ready ",
        "servicecontrol_job_queue_oldest_ready_age_seconds ",
        "servicecontrol_outbox_pending_events ",
        "servicecontrol_outbox_lag_seconds ",
    ):
        assert name in text, name

    assert await get(f"{ops}/healthz") == (200, "ok\n")
    assert await get(f"{ops}/readyz") == (200, "ready\n")

    # A database behind the migrations is not ready.
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        conn.execute("DELETE FROM alembic_version")
    status, text = await get(f"{ops}/readyz")
    assert status == 503
    assert "expected" in text and "servicecontrol migrate" in text


async def test_queue_depth_counts_jobs_waiting(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    async with running_harness(settings, tmp_path, workers=0) as h:
        h.push_image()
        runner, port = await start_ops_http("127.0.0.1:0", *ops_probes(h.app))
        try:
            await h.create("queued-one")
            await h.create("queued-two")
            _, text = await get(f"http://127.0.0.1:{port}/metrics")
            assert "servicecontrol_job_queue_ready 2.0" in text
            oldest = next(
                line
                for line in text.splitlines()
                if line.startswith("servicecontrol_job_queue_oldest_ready_age_seconds ")
            )
            assert float(oldest.split()[1]) >= 0
        finally:
            await runner.cleanup()
