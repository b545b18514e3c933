"""The service use cases (application/service_commands.py) on the in-memory fakes: what
each accepts and refuses, what it writes in its one transaction (service, operation,
job, event), and that a refusal or a validate_only call writes nothing."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest

from servicecontrol_server.application.jobs import JOB_KIND
from servicecontrol_server.application.results import Configs
from servicecontrol_server.domain import configuration as config_rules
from servicecontrol_server.domain.errors import (
    BackendUnavailable,
    ConnectionNotAvailable,
    ConnectionNotFound,
    EtagMismatch,
    InvalidPageToken,
    InvalidRequest,
    InvalidState,
    OperationInProgress,
    OperationNotFound,
    QuotaExceeded,
    RequestIdReused,
    ServiceNameTaken,
    ServiceNotFound,
)
from servicecontrol_server.domain.model import (
    OperationStatus,
    OperationType,
    Service,
    ServiceStatus,
)

from .harness import ACCOUNT, IMAGE, IMAGE_V2, OTHER_ACCOUNT, Unit, code_source, image_source


def fields(exc: InvalidRequest) -> set[str]:
    return {v.field for v in exc.violations}


def assert_nothing_written(unit: Unit, commits_before: int = 0) -> None:
    assert unit.db.commits == commits_before
    assert not unit.db.tables.services
    assert not unit.db.tables.jobs
    assert not unit.db.tables.request_ids
    assert not unit.db.events


# ----- create -----


@pytest.mark.parametrize(
    ("name", "configs", "request_id", "bad"),
    [
        ("", image_source(), "", {"service_name"}),
        ("no", image_source(), "", {"service_name"}),
        ("-starts-with-dash", image_source(), "", {"service_name"}),
        ("web-app", Configs(), "", {"source_configuration"}),
        ("web-app", Configs(source={}), "", {"source_configuration"}),
        (
            "web-app",
            image_source("Not An Image"),
            "",
            {"source_configuration.image_repository.image_identifier"},
        ),
        ("web-app", image_source(), "not-a-uuid", {"request_id"}),
        (
            "web-app",
            Configs(source=image_source().source, instance={"cpu": "3 vCPU"}),
            "",
            {"instance_configuration.cpu"},
        ),
        (
            "web-app",
            Configs(source=image_source().source, health_check={"interval": 99}),
            "",
            {"health_check_configuration.interval"},
        ),
        ("", Configs(), "bad", {"service_name", "source_configuration", "request_id"}),
    ],
)
async def test_create_refuses_bad_input_and_writes_nothing(
    name: str, configs: Configs, request_id: str, bad: set[str]
) -> None:
    unit = Unit()
    with pytest.raises(InvalidRequest) as refused:
        await unit.services.create_service(ACCOUNT, name, configs, request_id)
    assert fields(refused.value) == bad
    assert unit.uow.made == []
    assert_nothing_written(unit)


async def test_create_writes_service_operation_job_and_event_in_one_commit() -> None:
    unit = Unit()
    result = await unit.services.create_service(
        ACCOUNT,
        "web-app",
        Configs(source=image_source().source, instance={"cpu": "2 vCPU", "memory": "4 GB"}),
    )
    svc, op_id = result.service, result.operation_id
    assert [uow.committed for uow in unit.uow.made] == [True]
    [uow] = unit.uow.made
    assert ("accounts", ACCOUNT) in uow.locks

    stored = unit.db.service(svc.service_id)
    assert stored.status is ServiceStatus.OPERATION_IN_PROGRESS
    assert stored.current_operation_id == op_id
    assert stored.status_before_operation is None
    assert stored.created_at == unit.clock.now()
    assert stored.service_arn.endswith(f":service/web-app/{svc.service_id}")
    assert stored.service_url.endswith("." + unit.settings.service_domain_for(unit.settings.region))
    config = stored.configuration
    assert config is not None
    assert config.image_identifier == IMAGE
    assert config.image_bucket == unit.settings.image_bucket
    assert config.image_prefix == f"services/{svc.service_id}/"
    assert config.instance == {**config_rules.DEFAULT_INSTANCE, "cpu": "2 vCPU", "memory": "4 GB"}
    assert config.health_check == config_rules.DEFAULT_HEALTH_CHECK

    op = unit.db.operation(op_id)
    assert (op.type, op.status, op.current_step) == (
        OperationType.CREATE_SERVICE,
        OperationStatus.PENDING,
        "queued",
    )
    [job] = unit.db.tables.jobs.values()
    assert (job.kind, job.payload, job.progress, job.operation_id, job.max_attempts) == (
        "create_service",
        {},
        {},
        op_id,
        unit.settings.job_max_attempts,
    )
    assert unit.db.jobs_notified == ["create_service"]
    [event] = unit.db.events
    assert event.type == "service.create_requested"
    assert event.resource_arn == svc.service_arn
    assert event.payload == {
        "operationId": op_id,
        "operationType": "CREATE_SERVICE",
        "serviceName": "web-app",
        "status": "OPERATION_IN_PROGRESS",
    }


async def test_create_validate_only_changes_nothing() -> None:
    unit = Unit()
    result = await unit.services.create_service(
        ACCOUNT, "web-app", image_source(), str(uuid.uuid4()), validate_only=True
    )
    assert result.operation_id == ""
    assert result.service.service_name == "web-app"
    assert result.service.status is ServiceStatus.OPERATION_IN_PROGRESS
    assert_nothing_written(unit)


async def test_create_refuses_a_taken_name_and_names_the_holder() -> None:
    unit = Unit()
    first = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    with pytest.raises(ServiceNameTaken) as refused:
        await unit.services.create_service(ACCOUNT, "web-app", image_source(IMAGE_V2))
    assert refused.value.metadata["serviceArn"] == first.service.service_arn
    assert len(unit.db.tables.services) == 1
    # Another account may use the name.
    await unit.services.create_service(OTHER_ACCOUNT, "web-app", image_source())
    assert len(unit.db.tables.services) == 2


async def test_create_refuses_past_the_quota_and_a_deleted_service_frees_its_slot() -> None:
    unit = Unit()
    services = [await unit.running_service(f"web-{i:02d}") for i in range(3)]
    with pytest.raises(QuotaExceeded) as refused:
        await unit.services.create_service(ACCOUNT, "one-more", image_source())
    assert refused.value.reason == "SERVICE_QUOTA_EXCEEDED"
    assert (refused.value.limit, refused.value.usage) == (3, 3)
    assert len(unit.db.tables.services) == 3

    await unit.services.delete_service(ACCOUNT, services[0].service_arn)
    await unit.run_jobs()
    await unit.services.create_service(ACCOUNT, "one-more", image_source())
    # The deleted name is free again too.
    await unit.services.delete_service(ACCOUNT, services[1].service_arn)
    await unit.run_jobs()
    await unit.services.create_service(ACCOUNT, services[1].service_name, image_source())


async def test_create_request_id_replays_the_first_answer() -> None:
    unit = Unit()
    request_id = str(uuid.uuid4())
    first = await unit.services.create_service(ACCOUNT, "web-app", image_source(), request_id)
    again = await unit.services.create_service(
        ACCOUNT, "web-app", image_source(), request_id.upper()
    )
    assert again.operation_id == first.operation_id
    assert again.service.service_id == first.service.service_id
    assert len(unit.db.tables.services) == 1
    assert len(unit.db.tables.jobs) == 1
    assert len(unit.db.events) == 1


async def test_create_request_id_reused_for_another_request_is_refused() -> None:
    unit = Unit()
    request_id = str(uuid.uuid4())
    await unit.services.create_service(ACCOUNT, "web-app", image_source(), request_id)
    with pytest.raises(RequestIdReused):
        await unit.services.create_service(ACCOUNT, "web-two", image_source(), request_id)
    assert len(unit.db.tables.services) == 1


async def test_create_replay_after_the_operation_was_purged_says_so() -> None:
    unit = Unit()
    request_id = str(uuid.uuid4())
    first = await unit.services.create_service(ACCOUNT, "web-app", image_source(), request_id)
    del unit.db.tables.operations[first.operation_id]
    with pytest.raises(OperationNotFound):
        await unit.services.create_service(ACCOUNT, "web-app", image_source(), request_id)


async def test_create_with_a_connection_checks_and_locks_it() -> None:
    unit = Unit()
    missing = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:connection/gh/{'0' * 32}"
    with pytest.raises(ConnectionNotFound):
        await unit.services.create_service(ACCOUNT, "web-app", code_source(missing))
    connection = await unit.connections.create_connection(ACCOUNT, "github", "GITHUB")
    with pytest.raises(ConnectionNotAvailable) as refused:
        await unit.services.create_service(
            ACCOUNT, "web-app", code_source(connection.connection_arn)
        )
    assert refused.value.metadata["status"] == "PENDING_HANDSHAKE"
    await unit.connections.complete_handshake(ACCOUNT, connection.connection_arn, "AVAILABLE")
    made = len(unit.uow.made)
    result = await unit.services.create_service(
        ACCOUNT, "web-app", code_source(connection.connection_arn)
    )
    assert ("connections", connection.connection_id) in unit.uow.made[made].locks
    stored = unit.db.service(result.service.service_id)
    assert stored.connection_arn == connection.connection_arn
    assert stored.configuration is not None
    assert stored.configuration.image_prefix is None


async def test_create_during_a_database_outage_is_backend_unavailable() -> None:
    unit = Unit()
    unit.db.down = True
    with pytest.raises(BackendUnavailable):
        await unit.services.create_service(ACCOUNT, "web-app", image_source())
    unit.db.down = False
    assert_nothing_written(unit)


# ----- update, pause, resume, delete -----

MUTATIONS = ["update", "pause", "resume", "delete"]


async def mutate(unit: Unit, verb: str, svc: Service, **kw: Any) -> tuple[Service, str]:
    commands = unit.services
    if verb == "update":
        result = await commands.update_service(
            ACCOUNT, svc.service_arn, image_source(IMAGE_V2), **kw
        )
    else:
        call = getattr(commands, f"{verb}_service")
        result = await call(ACCOUNT, svc.service_arn, **kw)
    return result.service, result.operation_id


START_FROM = {
    "update": ServiceStatus.RUNNING,
    "pause": ServiceStatus.RUNNING,
    "resume": ServiceStatus.PAUSED,
    "delete": ServiceStatus.RUNNING,
}


@pytest.mark.parametrize("verb", MUTATIONS)
async def test_mutation_starts_an_operation_with_its_job_and_event(verb: str) -> None:
    unit = Unit()
    unit.push_image(IMAGE_V2)
    svc = await unit.service_in(START_FROM[verb])
    jobs_before, events_before = set(unit.db.tables.jobs), len(unit.db.events)
    made = len(unit.uow.made)

    shown, op_id = await mutate(unit, verb, svc, etag=svc.etag)

    op_type = OperationType[f"{verb.upper()}_SERVICE"]
    stored = unit.db.service(svc.service_id)
    assert stored.status is ServiceStatus.OPERATION_IN_PROGRESS
    assert stored.status_before_operation is START_FROM[verb]
    assert stored.current_operation_id == op_id
    assert stored.version == svc.version + 1
    assert shown.etag == stored.etag != svc.etag
    assert ("services", svc.service_id) in unit.uow.made[made].locks
    op = unit.db.operation(op_id)
    assert (op.type, op.status) == (op_type, OperationStatus.PENDING)
    [job_id] = set(unit.db.tables.jobs) - jobs_before
    job = unit.db.tables.jobs[job_id]
    assert job.kind == JOB_KIND[op_type] == f"{verb}_service"
    assert (job.operation_id, job.service_id, job.account_id) == (op_id, svc.service_id, ACCOUNT)
    if verb == "update":
        assert svc.configuration is not None
        assert job.payload == {
            "source": {"image_repository": {"image_identifier": IMAGE_V2}},
            "instance": svc.configuration.instance,
            "health_check": svc.configuration.health_check,
            # The references it keeps: the account's default, no observability.
            "auto_scaling_configuration_arn": svc.configuration.auto_scaling_configuration_arn,
            "observability_configuration_arn": None,
        }
    else:
        assert job.payload == {}
    [event] = unit.db.events[events_before:]
    assert event.type == f"service.{verb}_requested"
    assert event.payload["operationId"] == op_id
    assert event.payload["status"] == "OPERATION_IN_PROGRESS"


@pytest.mark.parametrize("verb", MUTATIONS)
async def test_mutation_with_a_stale_etag_is_refused(verb: str) -> None:
    unit = Unit()
    svc = await unit.service_in(START_FROM[verb])
    commits = unit.db.commits
    with pytest.raises(EtagMismatch) as refused:
        await mutate(unit, verb, svc, etag='"00000000-1"')
    assert refused.value.metadata == {"etag": svc.etag}
    assert unit.db.commits == commits
    assert unit.db.service(svc.service_id) == svc


INVALID_FROM = {
    "update": ServiceStatus.PAUSED,
    "pause": ServiceStatus.PAUSED,
    "resume": ServiceStatus.RUNNING,
    "delete": None,
}


@pytest.mark.parametrize("verb", ["update", "pause", "resume"])
async def test_mutation_from_a_wrong_status_is_invalid_state(verb: str) -> None:
    unit = Unit()
    status = INVALID_FROM[verb]
    assert status is not None
    svc = await unit.service_in(status)
    commits = unit.db.commits
    with pytest.raises(InvalidState):
        await mutate(unit, verb, svc)
    assert unit.db.commits == commits
    assert unit.db.service(svc.service_id) == svc


@pytest.mark.parametrize("verb", MUTATIONS)
async def test_mutation_while_an_operation_runs_is_refused(verb: str) -> None:
    unit = Unit()
    unit.push_image()
    created = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    with pytest.raises(OperationInProgress) as refused:
        await mutate(unit, verb, created.service)
    assert refused.value.metadata["operationId"] == created.operation_id
    assert len(unit.db.tables.jobs) == 1


@pytest.mark.parametrize("verb", MUTATIONS)
async def test_mutation_of_an_unknown_or_foreign_service_is_not_found(verb: str) -> None:
    unit = Unit()
    theirs = await unit.services.create_service(OTHER_ACCOUNT, "web-app", image_source())
    with pytest.raises(ServiceNotFound):
        await mutate(unit, verb, theirs.service)
    wrong_name = Service(**vars(theirs.service))
    wrong_name.service_arn = theirs.service.service_arn.replace(OTHER_ACCOUNT, ACCOUNT)
    with pytest.raises(ServiceNotFound):
        await mutate(unit, verb, wrong_name)


@pytest.mark.parametrize("verb", MUTATIONS)
async def test_mutation_request_id_replays(verb: str) -> None:
    unit = Unit()
    unit.push_image(IMAGE_V2)
    svc = await unit.service_in(START_FROM[verb])
    request_id = str(uuid.uuid4())
    _, first = await mutate(unit, verb, svc, request_id=request_id)
    jobs = len(unit.db.tables.jobs)
    _, again = await mutate(unit, verb, svc, request_id=request_id)
    assert again == first
    assert len(unit.db.tables.jobs) == jobs


@pytest.mark.parametrize("verb", ["update", "pause", "resume"])
async def test_mutation_validate_only_changes_nothing(verb: str) -> None:
    unit = Unit()
    svc = await unit.service_in(START_FROM[verb])
    commits = unit.db.commits
    shown, op_id = await mutate(unit, verb, svc, validate_only=True)
    assert op_id == ""
    assert shown.status is START_FROM[verb]
    assert unit.db.commits == commits
    assert unit.db.service(svc.service_id) == svc


async def test_update_needs_a_configuration_and_keeps_the_source_kind() -> None:
    unit = Unit()
    svc = await unit.running_service()
    with pytest.raises(InvalidRequest) as refused:
        await unit.services.update_service(ACCOUNT, svc.service_arn, Configs())
    assert "No configurations provided" in refused.value.message
    connection_arn = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:connection/gh/{'0' * 32}"
    with pytest.raises(InvalidRequest) as switched:
        await unit.services.update_service(ACCOUNT, svc.service_arn, code_source(connection_arn))
    assert fields(switched.value) == {"source_configuration"}
    assert unit.db.service(svc.service_id) == svc


async def test_update_of_the_instance_only_keeps_the_source() -> None:
    unit = Unit()
    svc = await unit.running_service()
    await unit.services.update_service(
        ACCOUNT, svc.service_arn, Configs(instance={"memory": "4 GB"})
    )
    [job] = [j for j in unit.db.tables.jobs.values() if j.kind == "update_service"]
    assert svc.configuration is not None
    assert job.payload["source"] == svc.configuration.source
    assert job.payload["instance"]["memory"] == "4 GB"


async def test_malformed_arn_is_invalid_request() -> None:
    unit = Unit()
    with pytest.raises(InvalidRequest) as refused:
        await unit.services.pause_service(ACCOUNT, "arn:aws:s3:::bucket")
    assert fields(refused.value) == {"service_arn"}


async def test_delete_of_a_delete_failed_service_resumes_from_the_failed_jobs_progress() -> None:
    unit = Unit()
    objects = unit.push_image()
    svc = await unit.service_in(ServiceStatus.DELETE_FAILED)
    [failed] = unit.db.tables.jobs.values()
    assert failed.state == "failed"
    assert failed.progress["image_objects"] == objects
    # The image copy is still there: deleting it is what failed.
    assert len(unit.image_keys(svc.service_id)) == objects

    result = await unit.services.delete_service(ACCOUNT, svc.service_arn)

    [job] = unit.db.tables.jobs.values()
    assert job.job_id != failed.job_id
    assert job.state == "queued"
    assert job.progress == failed.progress
    unit.store.calls.clear()
    await unit.run_jobs()
    # One scan counts and deletes what is left (the failed job's batch, counted already,
    # is not counted twice); shorter than a batch, it had ended before its delete: no
    # second scan.
    assert unit.store.calls.count("scan_objects") == 1
    assert unit.store.calls.count("list_objects") == 0
    report = unit.db.operation(result.operation_id).deletion_report
    assert report is not None
    assert report["image_objects"] == objects
    assert report["image_bytes"] == failed.progress["image_bytes"]
    assert unit.image_keys(svc.service_id) == []
    assert unit.db.service(svc.service_id).status is ServiceStatus.DELETED


async def test_deletion_plan_lists_what_goes_and_what_stays_and_changes_nothing() -> None:
    unit = Unit()
    objects = unit.push_image()
    svc = await unit.running_service()
    for domain in ("shop.example.com", "api.example.com"):
        await unit.domains.associate(ACCOUNT, svc.service_arn, domain, None)
    svc = unit.db.service(svc.service_id)
    commits = unit.db.commits
    unit.clock.advance(3600)

    result = await unit.services.delete_service(ACCOUNT, svc.service_arn, validate_only=True)

    assert result.operation_id == ""
    plan = result.plan
    assert plan is not None
    copy_bytes = sum(
        info.size
        for info in unit.store.list_objects(
            unit.settings.image_bucket, f"services/{svc.service_id}/"
        )
    )
    expires = unit.clock.now() + timedelta(seconds=unit.settings.certificate_retention_seconds)
    certs = {c.domain_name: c for c in unit.db.tables.certificates.values()}
    assert plan == {
        "image_objects": objects,
        "estimated": True,
        "image_bytes": copy_bytes,
        "configuration_records": ["service_configuration", "compute_instance"],
        "retained_connection_arns": [],
        "retained_certificates": [
            {
                "domain_name": name,
                "expires_at": expires.isoformat(),
                "certificate_id": certs[name].certificate_id,
            }
            for name in ("api.example.com", "shop.example.com")
        ],
        "unlinked_domain_names": ["api.example.com", "shop.example.com"],
    }
    assert unit.db.commits == commits
    assert unit.db.service(svc.service_id) == svc
    assert len(unit.image_keys(svc.service_id)) == objects


async def test_deletion_plan_keeps_the_connection() -> None:
    unit = Unit()
    connection = await unit.connections.create_connection(ACCOUNT, "github", "GITHUB")
    await unit.connections.complete_handshake(ACCOUNT, connection.connection_arn, "AVAILABLE")
    created = await unit.services.create_service(
        ACCOUNT, "web-app", code_source(connection.connection_arn)
    )
    await unit.run_jobs()
    svc = unit.db.service(created.service.service_id)
    assert svc.status is ServiceStatus.CREATE_FAILED
    result = await unit.services.delete_service(ACCOUNT, svc.service_arn, validate_only=True)
    assert result.plan is not None
    assert result.plan["retained_connection_arns"] == [connection.connection_arn]
    assert result.plan["image_objects"] == 0


async def test_deletion_plan_refuses_what_a_delete_would_refuse() -> None:
    unit = Unit()
    unit.push_image()
    created = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    with pytest.raises(OperationInProgress):
        await unit.services.delete_service(ACCOUNT, created.service.service_arn, validate_only=True)
    await unit.run_jobs()
    with pytest.raises(EtagMismatch):
        await unit.services.delete_service(
            ACCOUNT, created.service.service_arn, etag='"x-1"', validate_only=True
        )


async def test_deletion_plan_with_the_object_store_down_is_backend_unavailable() -> None:
    unit = Unit()
    svc = await unit.running_service()
    unit.store.down = True
    with pytest.raises(BackendUnavailable):
        await unit.services.delete_service(ACCOUNT, svc.service_arn, validate_only=True)


# ----- queries -----


async def test_list_services_pages_newest_first_without_deleted_ones() -> None:
    unit = Unit()
    names = ["web-00", "web-01", "web-02"]
    for name in names:
        await unit.running_service(name)
        unit.clock.advance(1)
    deleted = await unit.services.describe_service(
        ACCOUNT, unit.db.service(next(iter(unit.db.tables.services))).service_arn
    )
    first = await unit.services.list_services(ACCOUNT, 2, "")
    assert [s.service_name for s in first.items] == ["web-02", "web-01"]
    assert first.next_page_token
    second = await unit.services.list_services(ACCOUNT, 2, first.next_page_token)
    assert [s.service_name for s in second.items] == ["web-00"]
    assert second.next_page_token == ""

    await unit.services.delete_service(ACCOUNT, deleted.service_arn)
    await unit.run_jobs()
    listed = await unit.services.list_services(ACCOUNT, 10, "")
    assert [s.service_name for s in listed.items] == ["web-02", "web-01"]
    assert (await unit.services.list_services(OTHER_ACCOUNT, 10, "")).items == []


async def test_list_operations_pages_newest_first() -> None:
    unit = Unit()
    svc = await unit.running_service()
    for _ in range(2):
        unit.clock.advance(1)
        await unit.services.pause_service(ACCOUNT, svc.service_arn)
        await unit.run_jobs()
        unit.clock.advance(1)
        await unit.services.resume_service(ACCOUNT, svc.service_arn)
        await unit.run_jobs()
    page = await unit.services.list_operations(ACCOUNT, svc.service_arn, 3, "")
    assert [op.type.value for op in page.items] == [
        "RESUME_SERVICE",
        "PAUSE_SERVICE",
        "RESUME_SERVICE",
    ]
    rest = await unit.services.list_operations(ACCOUNT, svc.service_arn, 3, page.next_page_token)
    assert [op.type.value for op in rest.items] == ["PAUSE_SERVICE", "CREATE_SERVICE"]
    assert rest.next_page_token == ""


async def test_describe_operation_checks_the_id() -> None:
    unit = Unit()
    with pytest.raises(InvalidRequest):
        await unit.services.describe_operation(ACCOUNT, "nope")
    with pytest.raises(OperationNotFound):
        await unit.services.describe_operation(ACCOUNT, str(uuid.uuid4()))
    unit.push_image()
    created = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    with pytest.raises(OperationNotFound):
        await unit.services.describe_operation(OTHER_ACCOUNT, created.operation_id)
    op = await unit.services.describe_operation(ACCOUNT, created.operation_id.upper())
    assert op.operation_id == created.operation_id


async def test_wait_operation_wakes_when_the_operation_ends() -> None:
    unit = Unit()
    unit.push_image()
    created = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    waiting = asyncio.create_task(unit.services.wait_operation(ACCOUNT, created.operation_id, 30))
    await asyncio.sleep(0)
    assert not waiting.done()
    await unit.run_jobs()
    op = await asyncio.wait_for(waiting, 5)
    assert op.status is OperationStatus.SUCCEEDED
    assert created.operation_id in unit.db.operations_notified


async def test_wait_operation_refuses_a_negative_timeout() -> None:
    unit = Unit()
    with pytest.raises(InvalidRequest):
        await unit.services.wait_operation(ACCOUNT, str(uuid.uuid4()), -1)


async def test_page_tokens_are_bound_to_their_listing() -> None:
    unit = Unit()
    one = await unit.running_service("web-one")
    unit.clock.advance(1)
    await unit.running_service("web-two")
    services_token = (await unit.services.list_services(ACCOUNT, 1, "")).next_page_token
    assert services_token
    with pytest.raises(InvalidPageToken):
        await unit.services.list_services(ACCOUNT, 1, services_token[:-2] + "xx")
    with pytest.raises(InvalidPageToken):
        await unit.services.list_operations(ACCOUNT, one.service_arn, 1, services_token)
    with pytest.raises(InvalidRequest):
        await unit.services.list_services(ACCOUNT, -1, "")
    # 0 asks for the largest page.
    assert len((await unit.services.list_services(ACCOUNT, 0, "")).items) == 2
