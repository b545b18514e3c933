"""OpenTelemetry tracing end to end: a real OTLP receiver (the collector's TraceService,
served by this test) and a real `servicecontrol serve` exporting to it. One operation's
spans (the call, its transactions, the job's attempt, the object-store calls) all carry
its operation id, and the attempt is a child of the call's trace. Without an endpoint,
nothing is traced and no exporter runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import service_control_pb2_grpc as api_grpc
from servicecontrol_server.application.images import push_docker_archive
from servicecontrol_server.bootstrap import build
from servicecontrol_server.domain.identity import NewKey
from servicecontrol_server.settings import Settings
from tests.support.aws import AppRunnerClient, Recorder
from tests.support.images import build_docker_archive
from tests.support.processes import SERVICECONTROL, environment
from tests.support.server import ACCOUNT, bearer, create_test_keys, harness_settings
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

OPERATION_ID = "servicecontrol.operation_id"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Keeps every span it is sent, flattened: name, kind, ids, attributes."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []

    async def Export(  # noqa: N802 (the generated service's name)
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        {
                            "name": span.name,
                            "kind": span.kind,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                            "attributes": {a.key: _value(a.value) for a in span.attributes},
                        }
                    )
        return trace_service_pb2.ExportTraceServiceResponse()

    def of_operation(self, operation_id: str) -> list[dict[str, Any]]:
        return [s for s in self.spans if s["attributes"].get(OPERATION_ID) == operation_id]


def _value(value: Any) -> Any:
    which = value.WhichOneof("value")
    return getattr(value, which) if which else None


@contextlib.asynccontextmanager
async def receiver() -> AsyncIterator[tuple[Receiver, int]]:
    server = grpc.aio.server()
    servicer = Receiver()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, port
    finally:
        await server.stop(0)


@contextlib.asynccontextmanager
async def serve(settings: Settings, log: Path, **env: str) -> AsyncIterator[int]:
    """`servicecontrol serve` with the test's settings; yields its gRPC port."""
    with log.open("ab") as sink:
        proc = await asyncio.create_subprocess_exec(
            SERVICECONTROL,
            "serve",
            env=environment(
                settings,
                **{
                    "SERVICECONTROL_GRPC_LISTEN": "127.0.0.1:0",
                    "SERVICECONTROL_AWS_LISTEN": "",
                    "SERVICECONTROL_CONSOLE_LISTEN": "",
                    "SERVICECONTROL_METRICS_LISTEN": "",
                    **env,
                },
            ),
            stdout=asyncio.subprocess.PIPE,
            stderr=sink,
        )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("SERVICECONTROL_READY"), log.read_text()
        yield int(line.split("port=")[1])
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0, log.read_text()


async def _prepare(settings: Settings, tmp: Path) -> NewKey:
    """Keys and a pushed image, written by an in-process application (untraced)."""
    app = await build(settings, settings.database_url, migrate=False)
    try:
        keys = await create_test_keys(app)
        archive = build_docker_archive(
            tmp / "image.tar", layers=2, layer_size=256, legacy=False, repo_tag="traced-web:1.0"
        )
        push_docker_archive(app.store, settings.source_bucket, archive, "traced-web:1.0")
    finally:
        await app.close()
    return keys[ACCOUNT]


async def _create_and_delete(port: int, token: str, name: str) -> tuple[str, str]:
    meta = bearer(token)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = api_grpc.ServiceControlStub(channel)
        created = await stub.CreateService(
            api.CreateServiceRequest(
                service_name=name,
                source_configuration=pb.SourceConfiguration(
                    image_repository=pb.ImageRepository(image_identifier="traced-web:1.0")
                ),
            ),
            metadata=meta,
        )
        for operation_id in [created.operation_id]:
            await _wait(stub, operation_id, meta)
        deleted = await stub.DeleteService(
            api.DeleteServiceRequest(service_arn=created.service.service_arn), metadata=meta
        )
        await _wait(stub, deleted.operation_id, meta)
    return created.operation_id, deleted.operation_id


async def _wait(stub: api_grpc.ServiceControlStub, operation_id: str, meta: Any) -> None:
    from google.protobuf import duration_pb2

    response = await stub.WaitOperation(
        api.WaitOperationRequest(
            operation_id=operation_id, timeout=duration_pb2.Duration(seconds=30)
        ),
        metadata=meta,
        timeout=40,
    )
    assert response.operation.status == pb.Operation.SUCCEEDED, response.operation


def _has_operation_spans(r: Receiver, operation_id: str, rpc: str) -> bool:
    names = {s["name"] for s in r.of_operation(operation_id)}
    return (
        f"servicecontrol.v1.ServiceControl/{rpc}" in names
        and "transaction" in names
        and any(n.startswith("job ") for n in names)
        and any(n.startswith("objectstore ") for n in names)
    )


async def test_one_operation_is_one_trace_from_call_to_job_and_object_store(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    key = await _prepare(settings, tmp_path)
    aws_port = _free_port()
    async with receiver() as (spans, otlp_port):
        async with serve(
            settings,
            tmp_path / "serve.log",
            SERVICECONTROL_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp_port}",
            SERVICECONTROL_AWS_LISTEN=f"127.0.0.1:{aws_port}",
            # The exporter's batch goes out every 100 ms instead of every 5 s.
            OTEL_BSP_SCHEDULE_DELAY="100",
        ) as port:
            created_id, deleted_id = await _create_and_delete(port, key.token, "traced-web")
            aws = AppRunnerClient(aws_port, Recorder(), (key.key.key_id, key.secret))
            aws_created = await aws.create_service(
                ServiceName="traced-aws",
                SourceConfiguration={
                    "ImageRepository": {
                        "ImageIdentifier": "traced-web:1.0",
                        "ImageRepositoryType": "ECR",
                    }
                },
            )
            aws_id = aws_created["OperationId"]

            def all_exported() -> bool:
                return (
                    _has_operation_spans(spans, deleted_id, "DeleteService")
                    and _has_operation_spans(spans, created_id, "CreateService")
                    and any(
                        s["name"].startswith("job ")
                        and "servicecontrol.job.outcome" in s["attributes"]
                        for s in spans.of_operation(aws_id)
                    )
                )

            await wait_until(all_exported, timeout=30)

        # The App Runner endpoint's call, and the job it enqueued, in one trace.
        mine = spans.of_operation(aws_id)
        (aws_call,) = [s for s in mine if s["name"] == "AppRunner/CreateService"]
        assert aws_call["attributes"]["http.response.status_code"] == 200
        assert aws_call["attributes"]["servicecontrol.account_id"] == ACCOUNT
        aws_attempts = [s for s in mine if s["name"].startswith("job ")]
        assert aws_attempts and all(a["parent"] == aws_call["span_id"] for a in aws_attempts)

        for operation_id, rpc in ((created_id, "CreateService"), (deleted_id, "DeleteService")):
            mine = spans.of_operation(operation_id)
            (call,) = [s for s in mine if s["name"] == f"servicecontrol.v1.ServiceControl/{rpc}"]
            assert call["attributes"]["rpc.grpc.status_code"] == 0
            assert call["attributes"]["servicecontrol.account_id"] == ACCOUNT
            arn = call["attributes"]["servicecontrol.service_arn"]
            assert arn.endswith("/traced-web/" + arn.rsplit("/", 1)[1])
            # The call's own transaction, inside its trace.
            assert any(
                s["name"] == "transaction" and s["trace_id"] == call["trace_id"] for s in mine
            )
            # Each attempt of the job is a child of the call that enqueued it.
            attempts = [s for s in mine if s["name"].startswith("job ")]
            assert attempts
            for attempt in attempts:
                assert attempt["trace_id"] == call["trace_id"]
                assert attempt["parent"] == call["span_id"]
                assert attempt["attributes"]["servicecontrol.service_arn"] == arn
                assert attempt["attributes"]["servicecontrol.account_id"] == ACCOUNT
            assert attempts[-1]["attributes"]["servicecontrol.job.outcome"] == "succeeded"
            attempt_ids = {a["span_id"] for a in attempts}
            # The job's transactions and object-store calls sit under its attempt.
            inner = [s for s in mine if s["parent"] in attempt_ids]
            assert {"transaction"} < {s["name"] for s in inner}
            assert any(s["name"].startswith("objectstore ") for s in inner)
            assert all(s["trace_id"] == call["trace_id"] for s in inner)
            # Other calls about the operation (WaitOperation) carry its id in their own
            # traces.
            (wait,) = {
                s["trace_id"]
                for s in mine
                if s["name"] == "servicecontrol.v1.ServiceControl/WaitOperation"
            }
            assert wait != call["trace_id"]

        records = _records(tmp_path / "serve.log")
        on = [r for r in records if r["message"] == "tracing on" and "worker" not in r]
        assert len(on) == 1 and on[0]["otlp_endpoint"] == f"http://127.0.0.1:{otlp_port}"
        # The job worker process (tagged with its number) traces to the same endpoint.
        on = [r for r in records if r["message"] == "tracing on" and "worker" in r]
        assert len(on) == 1 and on[0]["otlp_endpoint"] == f"http://127.0.0.1:{otlp_port}"
        # The delete removed the image copy: its object-store calls are in its trace.
        delete_calls = {
            s["name"] for s in spans.of_operation(deleted_id) if s["name"].startswith("objectstore")
        }
        assert "objectstore delete_objects" in delete_calls


async def test_without_an_endpoint_nothing_is_traced_and_no_exporter_runs(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    token = (await _prepare(settings, tmp_path)).token
    log = tmp_path / "serve.log"
    async with (
        receiver() as (spans, _),
        serve(settings, log, OTEL_BSP_SCHEDULE_DELAY="100") as port,
    ):
        await _create_and_delete(port, token, "untraced-web")
    assert not [r for r in _records(log) if r["message"] == "tracing on"]
    assert spans.spans == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
