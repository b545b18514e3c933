"""The job handlers (application/jobs.py), each run through a FakeJobContext to its
outcome: what every successful operation writes, how store and compute failures are
classified, where an exhausted operation lands, and that a lost lease writes nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from servicecontrol_server.application.images import copy_manifest_key, manifest_key
from servicecontrol_server.application.ports import (
    JobFailure,
    LeaseLost,
    PermanentJobError,
    RetryableJobError,
)
from servicecontrol_server.application.results import Configs
from servicecontrol_server.domain.errors import BackendUnavailable
from servicecontrol_server.domain.model import (
    ConnectionStatus,
    OperationStatus,
    OperationType,
    ServiceStatus,
    failure_status,
)

from .fakes import FakeJobContext
from .harness import ACCOUNT, IMAGE, IMAGE_V2, Unit, code_source, image_source


def claim(unit: Unit) -> FakeJobContext:
    job = unit.db.claim()
    assert job is not None
    return FakeJobContext(unit.db, job)


async def test_create_copies_the_image_starts_compute_and_lands_running() -> None:
    unit = Unit()
    objects = unit.push_image()
    result = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    service_id = result.service.service_id
    ctx = claim(unit)

    await unit.handlers["create_service"].run(ctx)

    assert ctx.completed
    assert unit.db.tables.jobs == {}
    svc = unit.db.service(service_id)
    assert svc.status is ServiceStatus.RUNNING
    assert svc.version == 2
    assert len(unit.image_keys(service_id)) == objects
    manifest = unit.store.get_bytes(
        unit.settings.image_bucket, copy_manifest_key(f"services/{service_id}/")
    )
    assert manifest == unit.store.get_bytes(
        unit.settings.source_bucket, manifest_key("shop/web", "v1")
    )
    assert ctx.progress["image_objects"] == objects
    assert unit.compute.state(service_id) == "RUNNING"
    op = unit.db.operation(result.operation_id)
    assert (op.status, op.current_step, op.attempt, op.last_error) == (
        OperationStatus.SUCCEEDED,
        "done",
        1,
        "",
    )
    event = unit.db.events[-1]
    assert (event.type, event.payload) == (
        "service.created",
        {"operationId": result.operation_id, "status": "RUNNING"},
    )
    # The outcome, the event and the job's completion are one commit.
    [final] = ctx.transactions
    assert final.committed and final.events == [event]


async def test_pause_stops_compute_and_resume_starts_it() -> None:
    unit = Unit()
    svc = await unit.running_service()
    await unit.services.pause_service(ACCOUNT, svc.service_arn)
    ctx = claim(unit)
    await unit.handlers["pause_service"].run(ctx)
    assert unit.db.service(svc.service_id).status is ServiceStatus.PAUSED
    assert unit.compute.state(svc.service_id) == "STOPPED"
    assert unit.db.events[-1].type == "service.paused"
    # Pausing keeps the image copy and the URL.
    assert unit.image_keys(svc.service_id)

    await unit.services.resume_service(ACCOUNT, svc.service_arn)
    ctx = claim(unit)
    await unit.handlers["resume_service"].run(ctx)
    resumed = unit.db.service(svc.service_id)
    assert resumed.status is ServiceStatus.RUNNING
    assert resumed.service_url == svc.service_url
    assert unit.compute.state(svc.service_id) == "RUNNING"
    assert unit.db.events[-1].type == "service.resumed"


async def test_update_deploys_the_new_configuration() -> None:
    unit = Unit()
    svc = await unit.running_service()
    unit.push_image(IMAGE_V2)
    await unit.services.update_service(
        ACCOUNT,
        svc.service_arn,
        Configs(
            source={"image_repository": {"image_identifier": IMAGE_V2}},
            instance={"cpu": "4 vCPU", "memory": "8 GB"},
        ),
    )
    # The configuration changes only when the update succeeds.
    assert unit.db.service(svc.service_id).configuration == svc.configuration
    ctx = claim(unit)
    await unit.handlers["update_service"].run(ctx)

    updated = unit.db.service(svc.service_id)
    assert updated.status is ServiceStatus.RUNNING
    config = updated.configuration
    assert config is not None
    assert config.image_identifier == IMAGE_V2
    assert config.instance["cpu"] == "4 vCPU"
    assert config.image_prefix == f"services/{svc.service_id}/"
    manifest = unit.store.get_bytes(
        unit.settings.image_bucket, copy_manifest_key(config.image_prefix)
    )
    assert json.loads(manifest)["config"]["size"] == len(f"config of {IMAGE_V2}")
    assert unit.db.events[-1].type == "service.updated"


async def test_delete_removes_everything_but_the_connection_and_retains_certificates() -> None:
    unit = Unit()
    objects = unit.push_image()
    source_keys = unit.store.keys(unit.settings.source_bucket)
    svc = await unit.running_service()
    for domain in ("shop.example.com", "api.example.com"):
        await unit.domains.associate(ACCOUNT, svc.service_arn, domain, None)
    image_bytes = sum(
        o.size
        for o in unit.store.list_objects(unit.settings.image_bucket, f"services/{svc.service_id}/")
    )
    unit.clock.advance(60)
    result = await unit.services.delete_service(ACCOUNT, svc.service_arn)
    ctx = claim(unit)

    await unit.handlers["delete_service"].run(ctx)

    now = unit.clock.now()
    deleted = unit.db.service(svc.service_id)
    assert deleted.status is ServiceStatus.DELETED
    assert deleted.deleted_at == now
    assert deleted.purge_at is not None
    assert (
        deleted.purge_at - now
    ).total_seconds() == unit.settings.service_tombstone_retention_seconds
    assert deleted.configuration is None
    assert svc.service_id not in unit.db.tables.compute_instances
    assert unit.image_keys(svc.service_id) == []
    assert unit.store.keys(unit.settings.source_bucket) == source_keys
    assert not [d for d in unit.db.tables.custom_domains.values() if d.service_id == svc.service_id]
    certs = sorted(unit.db.tables.certificates.values(), key=lambda c: c.domain_name)
    retention = unit.settings.certificate_retention_seconds
    for cert in certs:
        assert cert.service_id is None and cert.service_arn is None
        assert cert.unlinked_at == now
        assert cert.expires_at is not None
        assert (cert.expires_at - now).total_seconds() == retention
    op = unit.db.operation(result.operation_id)
    assert op.status is OperationStatus.SUCCEEDED
    assert op.deletion_report == {
        "image_objects": objects,
        "image_bytes": image_bytes,
        "configuration_records": ["service_configuration", "compute_instance"],
        "retained_connection_arns": [],
        "retained_certificates": [
            {
                "certificate_id": c.certificate_id,
                "certificate_arn": c.certificate_arn,
                "domain_name": c.domain_name,
                "expires_at": c.expires_at.isoformat() if c.expires_at else "",
            }
            for c in certs
        ],
        "unlinked_domain_names": ["api.example.com", "shop.example.com"],
    }
    event = unit.db.events[-1]
    assert event.type == "service.deleted"
    assert event.payload["report"] == op.deletion_report


async def test_delete_leaves_the_connection_alone() -> None:
    unit = Unit()
    connection = await unit.connections.create_connection(ACCOUNT, "github", "GITHUB")
    await unit.connections.complete_handshake(ACCOUNT, connection.connection_arn, "AVAILABLE")
    created = await unit.services.create_service(
        ACCOUNT, "web-app", code_source(connection.connection_arn)
    )
    await unit.run_jobs()
    before = unit.db.tables.connections[connection.connection_id]
    result = await unit.services.delete_service(ACCOUNT, created.service.service_arn)
    await unit.run_jobs()
    report = unit.db.operation(result.operation_id).deletion_report
    assert report is not None
    assert report["retained_connection_arns"] == [connection.connection_arn]
    assert report["image_objects"] == 0
    assert unit.db.tables.connections[connection.connection_id] == before
    assert before.status is ConnectionStatus.AVAILABLE
    assert unit.db.service(created.service.service_id).connection_arn is None
    # With no service using it any more, the connection can go.
    await unit.connections.delete_connection(ACCOUNT, connection.connection_arn)


async def test_object_store_down_is_retryable() -> None:
    unit = Unit()
    unit.push_image()
    result = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    unit.store.down = True
    ctx = claim(unit)
    with pytest.raises(RetryableJobError) as failed:
        await unit.handlers["create_service"].run(ctx)
    assert failed.value.reason == "OBJECT_STORE_UNAVAILABLE"
    assert not ctx.completed
    op = unit.db.operation(result.operation_id)
    assert (op.status, op.current_step) == (OperationStatus.IN_PROGRESS, "copy_image")
    assert unit.db.service(result.service.service_id).status is ServiceStatus.OPERATION_IN_PROGRESS


async def test_a_retry_notes_the_error_and_the_next_attempt_then_succeeds() -> None:
    unit = Unit()
    unit.push_image()
    result = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    unit.store.down = True
    run = await unit.run_job()
    assert run is not None and run.outcome == "retry"
    op = unit.db.operation(result.operation_id)
    assert op.last_error.startswith("OBJECT_STORE_UNAVAILABLE: ")
    assert op.attempt == 1
    assert op.next_attempt_at == unit.clock.now()  # the harness waits out the 1 s delay
    unit.store.down = False
    run = await unit.run_job()
    assert run is not None and run.outcome == "completed"
    op = unit.db.operation(result.operation_id)
    assert (op.status, op.attempt, op.last_error, op.next_attempt_at) == (
        OperationStatus.SUCCEEDED,
        2,
        "",
        None,
    )


async def test_compute_down_is_retryable() -> None:
    unit = Unit()
    svc = await unit.running_service()
    await unit.services.pause_service(ACCOUNT, svc.service_arn)
    unit.compute.down = True
    with pytest.raises(RetryableJobError) as failed:
        await unit.handlers["pause_service"].run(claim(unit))
    assert failed.value.reason == "COMPUTE_UNAVAILABLE"


async def test_a_missing_image_is_permanent_and_fails_the_create_at_once() -> None:
    unit = Unit()
    result = await unit.services.create_service(ACCOUNT, "web-app", image_source("nope/none:v1"))
    ctx = claim(unit)
    with pytest.raises(PermanentJobError) as failed:
        await unit.handlers["create_service"].run(ctx)
    assert failed.value.reason == "IMAGE_NOT_FOUND"
    assert failed.value.metadata == {"imageIdentifier": "nope/none:v1"}
    unit.db.expire_lease(ctx.job.job_id)

    [run] = await unit.run_jobs()
    assert run.outcome == "failed"
    svc = unit.db.service(result.service.service_id)
    assert svc.status is ServiceStatus.CREATE_FAILED
    assert svc.status_message == "Image nope/none:v1 not found in the source registry."
    op = unit.db.operation(result.operation_id)
    assert op.status is OperationStatus.FAILED
    assert op.error is not None
    assert op.error["reason"] == "IMAGE_NOT_FOUND"
    assert op.error["metadata"] == {"imageIdentifier": "nope/none:v1", "attempts": "2"}
    [job] = unit.db.tables.jobs.values()
    assert job.state == "failed"


async def test_a_code_repository_source_cannot_be_built() -> None:
    unit = Unit()
    connection = await unit.connections.create_connection(ACCOUNT, "github", "GITHUB")
    await unit.connections.complete_handshake(ACCOUNT, connection.connection_arn, "AVAILABLE")
    await unit.services.create_service(ACCOUNT, "web-app", code_source(connection.connection_arn))
    with pytest.raises(PermanentJobError) as failed:
        await unit.handlers["create_service"].run(claim(unit))
    assert failed.value.reason == "SOURCE_BUILD_UNSUPPORTED"


# (operation, status before it) for every start the domain allows, plus create.
EXHAUSTED = [
    (OperationType.CREATE_SERVICE, None),
    (OperationType.PAUSE_SERVICE, ServiceStatus.RUNNING),
    (OperationType.RESUME_SERVICE, ServiceStatus.PAUSED),
    (OperationType.UPDATE_SERVICE, ServiceStatus.RUNNING),
    (OperationType.UPDATE_SERVICE, ServiceStatus.CREATE_FAILED),
    (OperationType.DELETE_SERVICE, ServiceStatus.RUNNING),
    (OperationType.DELETE_SERVICE, ServiceStatus.PAUSED),
    (OperationType.DELETE_SERVICE, ServiceStatus.CREATE_FAILED),
    (OperationType.DELETE_SERVICE, ServiceStatus.DELETE_FAILED),
]


@pytest.mark.parametrize(
    ("op_type", "before"),
    EXHAUSTED,
    ids=[f"{op.name}-from-{b.value if b else 'nothing'}" for op, b in EXHAUSTED],
)
async def test_on_exhausted_lands_where_failure_status_says(
    op_type: OperationType, before: ServiceStatus | None
) -> None:
    unit = Unit()
    unit.push_image(IMAGE_V2)
    if before is None:
        unit.push_image(IMAGE)
        result = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    else:
        svc = await unit.service_in(before)
        verb = op_type.name.split("_")[0].lower()
        if op_type is OperationType.UPDATE_SERVICE:
            result = await unit.services.update_service(
                ACCOUNT, svc.service_arn, image_source(IMAGE_V2)
            )
        else:
            result = await getattr(unit.services, f"{verb}_service")(ACCOUNT, svc.service_arn)
    ctx = claim(unit)
    handler = unit.handlers[ctx.job.kind]
    failure = JobFailure("SOMETHING_BROKE", "It broke.", {"where": "here"}, attempts=3)

    async with unit.uow() as uow:
        await uow.jobs.mark_failed(ctx.job.job_id, ctx.job.lease_token, "SOMETHING_BROKE")
        await handler.on_exhausted(ctx, uow, failure)
        await uow.commit()

    landing = failure_status(op_type, before or ServiceStatus.RUNNING)
    svc_after = unit.db.service(result.service.service_id)
    assert svc_after.status is landing
    assert svc_after.status_message == "It broke."
    assert svc_after.current_operation_id is None
    op = unit.db.operation(result.operation_id)
    rolled_back = (
        op_type is OperationType.UPDATE_SERVICE and landing is not ServiceStatus.CREATE_FAILED
    )
    assert op.status is (
        OperationStatus.ROLLBACK_SUCCEEDED if rolled_back else OperationStatus.FAILED
    )
    assert op.attempt == 3
    assert op.error == {
        "reason": "SOMETHING_BROKE",
        "message": "It broke.",
        "metadata": {"where": "here", "attempts": "3"},
    }
    event = unit.db.events[-1]
    assert event.type == f"service.{op_type.name.split('_')[0].lower()}_failed"
    assert event.payload == {
        "operationId": result.operation_id,
        "status": landing.value,
        "reason": "SOMETHING_BROKE",
        "message": "It broke.",
    }
    assert result.operation_id in unit.db.operations_notified


async def test_a_lost_lease_writes_no_outcome() -> None:
    unit = Unit()
    svc = await unit.running_service()
    await unit.services.pause_service(ACCOUNT, svc.service_arn)
    ctx = claim(unit)
    events = len(unit.db.events)
    # The lease expires while the handler works: another worker now holds the job.
    unit.compute.calls.clear()
    original_stop = unit.compute.stop

    async def stop_and_lose_the_lease(service_id: str) -> None:
        await original_stop(service_id)
        unit.db.expire_lease(ctx.job.job_id)

    unit.compute.stop = stop_and_lose_the_lease  # type: ignore[method-assign]
    with pytest.raises(LeaseLost):
        await unit.handlers["pause_service"].run(ctx)
    assert not ctx.completed
    assert unit.db.service(svc.service_id).status is ServiceStatus.OPERATION_IN_PROGRESS
    assert len(unit.db.events) == events
    [job] = unit.db.tables.jobs.values()
    assert job.state == "queued"
    # The next owner finishes it, once.
    unit.compute.stop = original_stop  # type: ignore[method-assign]
    runs = await unit.run_jobs()
    assert [r.outcome for r in runs] == ["completed"]
    assert unit.db.service(svc.service_id).status is ServiceStatus.PAUSED
    assert [e.type for e in unit.db.events[events:]] == ["service.paused"]


async def test_a_rerun_after_a_crash_converges() -> None:
    """A create that copied the image and then lost its worker runs again: the copy is
    not repeated blob by blob and the outcome commits once."""
    unit = Unit()
    objects = unit.push_image()
    result = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    ctx = claim(unit)
    unit.compute.down = True
    with pytest.raises(RetryableJobError):
        await unit.handlers["create_service"].run(ctx)
    unit.compute.down = False
    unit.db.expire_lease(ctx.job.job_id)
    unit.store.calls.clear()
    runs = await unit.run_jobs()
    assert [r.outcome for r in runs] == ["completed"]
    assert "copy_object" not in unit.store.calls
    assert len(unit.image_keys(result.service.service_id)) == objects
    assert [e.type for e in unit.db.events].count("service.created") == 1


def test_every_job_kind_has_a_handler() -> None:
    unit = Unit()
    assert set(unit.handlers) == {
        "create_service",
        "update_service",
        "pause_service",
        "resume_service",
        "delete_service",
        "start_deployment",
    }


async def test_a_database_outage_before_the_outcome_commits_nothing() -> None:
    unit = Unit()
    svc = await unit.running_service()
    await unit.services.pause_service(ACCOUNT, svc.service_arn)
    ctx = claim(unit)
    events = len(unit.db.events)
    original_stop = unit.compute.stop

    async def stop_then_lose_the_database(service_id: str) -> None:
        await original_stop(service_id)
        unit.db.down = True

    unit.compute.stop = stop_then_lose_the_database  # type: ignore[method-assign]
    # A database outage is transient for the engine: retried within the job's window.
    with pytest.raises(RetryableJobError, match="BACKEND_UNAVAILABLE") as raised:
        await unit.handlers["pause_service"].run(ctx)
    assert isinstance(raised.value.__cause__, BackendUnavailable)
    unit.db.down = False
    unit.compute.stop = original_stop  # type: ignore[method-assign]
    assert not ctx.completed
    assert unit.db.service(svc.service_id).status is ServiceStatus.OPERATION_IN_PROGRESS
    assert len(unit.db.events) == events
    # The lease runs out; the next attempt finishes the job.
    unit.db.expire_lease(ctx.job.job_id)
    assert [r.outcome for r in await unit.run_jobs()] == ["completed"]
    assert unit.db.service(svc.service_id).status is ServiceStatus.PAUSED


@pytest.mark.parametrize(
    ("kind", "request_it", "before", "after"),
    [
        ("delete_service", "delete_service", "RUNNING", None),
        ("pause_service", "pause_service", "RUNNING", "STOPPED"),
    ],
)
async def test_a_compute_record_lost_with_the_database_is_written_again_by_the_next_attempt(
    kind: str, request_it: str, before: str, after: str | None
) -> None:
    """The recorded compute driver's writes do not wait for the disk: a database crash
    before the job's outcome may undo one. That is safe because every attempt makes its
    compute call before its outcome: here the first attempt stops compute, the database
    goes away before the outcome, the record is undone as a crash would, and the next
    attempt stops compute again before it commits the outcome."""
    unit = Unit()
    svc = await unit.running_service()
    await getattr(unit.services, request_it)(ACCOUNT, svc.service_arn)
    ctx = claim(unit)
    original_stop = unit.compute.stop

    async def stop_then_lose_the_database(service_id: str) -> None:
        await original_stop(service_id)
        unit.db.down = True

    unit.compute.stop = stop_then_lose_the_database  # type: ignore[method-assign]
    with pytest.raises(RetryableJobError, match="BACKEND_UNAVAILABLE"):
        await unit.handlers[kind].run(ctx)
    unit.compute.stop = original_stop  # type: ignore[method-assign]
    unit.db.down = False
    # The crash undoes the record that had not reached the disk.
    unit.db.tables.compute_instances[svc.service_id] = before
    unit.compute.calls.clear()
    unit.db.expire_lease(ctx.job.job_id)
    assert [r.outcome for r in await unit.run_jobs()] == ["completed"]
    assert unit.compute.calls == [("stop", svc.service_id)]
    assert unit.db.tables.compute_instances.get(svc.service_id) == after


class _Meeting:
    """The reader's unit of work, entered only once the step marker is under way too."""

    def __init__(self, uow: Any, met: asyncio.Barrier) -> None:
        self.uow, self.met = uow, met

    async def __aenter__(self) -> Any:
        entered = await self.uow.__aenter__()
        await asyncio.wait_for(self.met.wait(), 5)
        return entered

    async def __aexit__(self, *exc: Any) -> Any:
        return await self.uow.__aexit__(*exc)


async def test_a_job_reads_its_service_while_it_marks_its_first_step() -> None:
    """The two wait for one round trip between them: the read waits here until the
    marker has started, which a read made before the marker would wait for in vain."""
    unit = Unit()
    svc = await unit.running_service()
    await unit.services.delete_service(ACCOUNT, svc.service_arn)
    ctx = claim(unit)
    handler = unit.handlers["delete_service"]
    reader, met = handler.reader, asyncio.Barrier(2)
    handler.reader = lambda: _Meeting(reader(), met)  # type: ignore[assignment,return-value]
    mark_step = ctx.mark_step

    async def meeting(step: str) -> None:
        if step == "stop_compute":
            await asyncio.wait_for(met.wait(), 5)
        await mark_step(step)

    ctx.mark_step = meeting  # type: ignore[method-assign]
    await handler.run(ctx)
    assert ctx.completed
    assert ctx.step_marks[0] == ("stop_compute", False)


async def test_a_lost_lease_or_a_missing_service_at_the_start_fails_as_itself() -> None:
    """Read and marker run together; whichever fails, the job sees that failure, not a
    group of them."""
    unit = Unit()
    svc = await unit.running_service()
    await unit.services.delete_service(ACCOUNT, svc.service_arn)
    ctx = claim(unit)
    unit.db.expire_lease(ctx.job.job_id)
    with pytest.raises(LeaseLost):
        await unit.handlers["delete_service"].run(ctx)

    [job] = unit.db.tables.jobs.values()
    ctx = claim(unit)
    del unit.db.tables.services[svc.service_id]
    with pytest.raises(PermanentJobError, match="service row is missing"):
        await unit.handlers["delete_service"].run(ctx)
    assert job.job_id == ctx.job.job_id
