"""Create, describe, list and update through the real gRPC API, on real Postgres and a
real S3 test server, with the job workers running."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from sqlalchemy import text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, OTHER_ACCOUNT, Harness, harness_settings, running_harness


async def count(h: Harness, sql: str) -> int:
    async with h.app.engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def test_create_returns_at_once_then_copies_the_image_and_runs(harness: Harness) -> None:
    created = await harness.create("hello-web")
    svc = created.service
    assert svc.status == pb.Service.OPERATION_IN_PROGRESS
    assert created.operation_id and svc.current_operation_id == created.operation_id
    assert (
        svc.service_arn
        == f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/hello-web/{svc.service_id}"
    )
    assert len(svc.service_id) == 32
    label, _, domain = svc.service_url.partition(".")
    assert len(label) == 10 and domain == "us-east-1.servicecontrol.local"

    op = await harness.wait(created.operation_id)
    assert op.status == pb.Operation.SUCCEEDED and op.type == pb.Operation.CREATE_SERVICE
    assert op.current_step == "done" and op.attempt == 1
    running = await harness.describe(svc.service_arn)
    assert running.status == pb.Service.RUNNING
    assert running.service_url == svc.service_url
    assert running.source_configuration.image_repository.image_identifier == "hello-web:1.0"
    assert running.instance_configuration.cpu == "1 vCPU"
    keys = [
        o.key
        for o in harness.app.store.list_objects(
            harness.settings.image_bucket, f"services/{svc.service_id}/"
        )
    ]
    # config blob + 2 layers + the manifest
    assert len(keys) == 4 and f"services/{svc.service_id}/manifest.json" in keys


async def test_missing_image_ends_create_failed_with_a_reason(harness: Harness) -> None:
    created = await harness.create("no-image", image="does-not-exist:1")
    op = await harness.wait(created.operation_id)
    assert op.status == pb.Operation.FAILED
    assert "does-not-exist" in op.error.message
    svc = await harness.describe(created.service.service_arn)
    assert svc.status == pb.Service.CREATE_FAILED
    assert "does-not-exist" in svc.status_message


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("abc", "service_name"),
        ("-bad-name", "service_name"),
        ("x" * 41, "service_name"),
        ("", "service_name"),
        ("has space", "service_name"),
    ],
)
async def test_bad_names_are_refused_and_write_nothing(
    harness: Harness, name: str, field: str
) -> None:
    err = await expect_error(harness.create(name), grpc.StatusCode.INVALID_ARGUMENT)
    assert err.reason == "INVALID_REQUEST" and field in err.field_violations
    assert await count(harness, "select count(*) from services") == 0
    assert await count(harness, "select count(*) from jobs") == 0


async def test_bad_sources_list_every_violation(harness: Harness) -> None:
    request = api.CreateServiceRequest(
        service_name="valid-name",
        source_configuration=pb.SourceConfiguration(
            image_repository=pb.ImageRepository(
                image_identifier="UPPER:tag",
                image_configuration=pb.ImageConfiguration(port="99999"),
            )
        ),
        instance_configuration=pb.InstanceConfiguration(cpu="3 vCPU"),
        health_check_configuration=pb.HealthCheckConfiguration(interval=50),
    )
    err = await expect_error(
        harness.stub.CreateService(request, metadata=harness.meta()),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(err.field_violations) == {
        "source_configuration.image_repository.image_identifier",
        "source_configuration.image_repository.image_configuration.port",
        "instance_configuration.cpu",
        "health_check_configuration.interval",
    }
    missing = await expect_error(
        harness.stub.CreateService(
            api.CreateServiceRequest(service_name="valid-name"), metadata=harness.meta()
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "source_configuration" in missing.field_violations
    assert await count(harness, "select count(*) from services") == 0


async def test_unknown_enum_values_are_refused(harness: Harness) -> None:
    request = api.CreateServiceRequest(
        service_name="valid-name",
        source_configuration=pb.SourceConfiguration(
            image_repository=pb.ImageRepository(
                image_identifier="hello-web:1.0", image_repository_type=42
            )  # type: ignore[arg-type]
        ),
    )
    err = await expect_error(
        harness.stub.CreateService(request, metadata=harness.meta()),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "source_configuration.image_repository.image_repository_type" in err.field_violations


async def test_describe_errors(harness: Harness) -> None:
    svc = await harness.running_service("mine")
    bad = await expect_error(harness.describe("not-an-arn"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "service_arn" in bad.field_violations
    unknown = svc.service_arn[:-32] + "0" * 32
    missing = await expect_error(harness.describe(unknown), grpc.StatusCode.NOT_FOUND)
    assert missing.reason == "SERVICE_NOT_FOUND" and missing.metadata["serviceArn"] == unknown
    # Another account never sees the service, whichever ARN it sends.
    other = await expect_error(
        harness.describe(svc.service_arn, account=OTHER_ACCOUNT), grpc.StatusCode.NOT_FOUND
    )
    assert other.reason == "SERVICE_NOT_FOUND"
    forged = svc.service_arn.replace(ACCOUNT, OTHER_ACCOUNT)
    await expect_error(harness.describe(forged, account=OTHER_ACCOUNT), grpc.StatusCode.NOT_FOUND)


async def test_names_are_unique_among_live_services_only(harness: Harness) -> None:
    first = await harness.running_service("same-name")
    err = await expect_error(harness.create("same-name"), grpc.StatusCode.ALREADY_EXISTS)
    assert err.reason == "SERVICE_NAME_TAKEN" and err.metadata["serviceArn"] == first.service_arn
    # Another account may use the name.
    await harness.create("same-name", account=OTHER_ACCOUNT)


async def test_list_is_newest_first_paginated_and_account_scoped(harness: Harness) -> None:
    arns = []
    for i in range(5):
        arns.append((await harness.create(f"svc-{i:02d}")).service.service_arn)
    await harness.create("other-acct", account=OTHER_ACCOUNT)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await harness.stub.ListServices(
            api.ListServicesRequest(page_size=2, page_token=token), metadata=harness.meta()
        )
        pages += 1
        seen += [s.service_arn for s in page.services]
        if pages == 1:
            # Rows created between pages never shift the later pages.
            await harness.create("late-comer")
        token = page.next_page_token
        if not token:
            break
    assert seen == list(reversed(arns))
    assert pages == 3
    err = await expect_error(
        harness.stub.ListServices(
            api.ListServicesRequest(page_token="garbage"), metadata=harness.meta()
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert err.reason == "INVALID_PAGE_TOKEN"
    big = await harness.stub.ListServices(
        api.ListServicesRequest(page_size=1000), metadata=harness.meta()
    )
    assert len(big.services) == 6  # lowered to the maximum of 20, which holds them all
    neg = await expect_error(
        harness.stub.ListServices(api.ListServicesRequest(page_size=-1), metadata=harness.meta()),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "page_size" in neg.field_violations


async def test_quota_counts_create_failed_and_is_freed_by_delete(
    database_url: str, s3_server: object, tmp_path: object
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path, service_quota=2)  # type: ignore[arg-type]
    async with running_harness(settings, tmp_path) as h:  # type: ignore[arg-type]
        h.push_image()
        ok = await h.running_service("svc-one")
        failed = await h.create("svc-two", image="missing:1")
        await h.wait(failed.operation_id)
        assert (await h.describe(failed.service.service_arn)).status == pb.Service.CREATE_FAILED
        err = await expect_error(h.create("svc-three"), grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert err.reason == "SERVICE_QUOTA_EXCEEDED"
        assert err.metadata == {"limit": "2", "usage": "2"}
        assert err.quota_violations
        deleted = await h.stub.DeleteService(
            api.DeleteServiceRequest(service_arn=ok.service_arn), metadata=h.meta()
        )
        await h.wait(deleted.operation_id)
        await h.create("svc-three")


async def test_concurrent_creates_never_pass_the_quota(
    database_url: str, s3_server: object, tmp_path: object
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path, service_quota=3)  # type: ignore[arg-type]
    async with running_harness(settings, tmp_path, workers=0) as h:  # type: ignore[arg-type]
        results = await asyncio.gather(
            *(h.create(f"race-{i}") for i in range(10)), return_exceptions=True
        )
        ok = [r for r in results if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
        assert len(ok) == 3 and len(refused) == 7
        assert all(r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused)


async def test_request_id_makes_create_idempotent(harness: Harness) -> None:
    rid = str(uuid.uuid4())
    first = await harness.create("idem", request_id=rid)
    again = await harness.create("idem", request_id=rid)
    assert again.operation_id == first.operation_id
    assert again.service.service_arn == first.service.service_arn
    assert await count(harness, "select count(*) from services") == 1
    err = await expect_error(
        harness.create("different", request_id=rid), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert err.reason == "REQUEST_ID_REUSED"
    bad = await expect_error(
        harness.create("idem2", request_id="not-a-uuid"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "request_id" in bad.field_violations


async def test_validate_only_create_checks_and_writes_nothing(harness: Harness) -> None:
    ok = await harness.create("dry-run", validate_only=True)
    assert ok.operation_id == "" and ok.service.service_name == "dry-run"
    assert await count(harness, "select count(*) from services") == 0
    await harness.running_service("taken")
    await expect_error(harness.create("taken", validate_only=True), grpc.StatusCode.ALREADY_EXISTS)


async def test_update(harness: Harness) -> None:
    svc = await harness.running_service("updatable")
    empty = await expect_error(
        harness.stub.UpdateService(
            api.UpdateServiceRequest(service_arn=svc.service_arn), metadata=harness.meta()
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "No configurations provided" in empty.message
    stale = await expect_error(
        harness.stub.UpdateService(
            api.UpdateServiceRequest(
                service_arn=svc.service_arn,
                etag='"stale"',
                instance_configuration=pb.InstanceConfiguration(cpu="2 vCPU", memory="4 GB"),
            ),
            metadata=harness.meta(),
        ),
        grpc.StatusCode.ABORTED,
    )
    assert stale.reason == "ETAG_MISMATCH" and stale.metadata["etag"] == svc.etag
    updated = await harness.stub.UpdateService(
        api.UpdateServiceRequest(
            service_arn=svc.service_arn,
            etag=svc.etag,
            instance_configuration=pb.InstanceConfiguration(cpu="2 vCPU", memory="4 GB"),
        ),
        metadata=harness.meta(),
    )
    assert updated.service.status == pb.Service.OPERATION_IN_PROGRESS
    op = await harness.wait(updated.operation_id)
    assert op.status == pb.Operation.SUCCEEDED and op.type == pb.Operation.UPDATE_SERVICE
    after = await harness.describe(svc.service_arn)
    assert after.status == pb.Service.RUNNING
    assert (
        after.instance_configuration.cpu == "2 vCPU"
        and after.instance_configuration.memory == "4 GB"
    )
    assert after.source_configuration.image_repository.image_identifier == "hello-web:1.0"
    assert after.etag != svc.etag

    paused = await harness.stub.PauseService(
        api.PauseServiceRequest(service_arn=svc.service_arn), metadata=harness.meta()
    )
    await harness.wait(paused.operation_id)
    refused = await expect_error(
        harness.stub.UpdateService(
            api.UpdateServiceRequest(
                service_arn=svc.service_arn,
                instance_configuration=pb.InstanceConfiguration(cpu="1 vCPU"),
            ),
            metadata=harness.meta(),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert refused.reason == "INVALID_STATE" and refused.metadata["status"] == "PAUSED"


async def test_every_rpc_of_the_contract_is_served(harness: Harness) -> None:
    from servicecontrol.v1 import service_control_pb2, service_control_pb2_grpc
    from servicecontrol_server.api.servicer import ServiceControlServicer

    methods = service_control_pb2.DESCRIPTOR.services_by_name["ServiceControl"].methods
    generated = service_control_pb2_grpc.ServiceControlServicer
    # Served means overridden: the generated base answers UNIMPLEMENTED.
    missing = [
        m.name
        for m in methods
        if getattr(ServiceControlServicer, m.name) is getattr(generated, m.name)
    ]
    assert missing == []
    assert len(methods) == 43


async def test_oversize_fields_are_refused_and_write_nothing(harness: Harness) -> None:
    request = api.CreateServiceRequest(
        service_name="oversize",
        source_configuration=pb.SourceConfiguration(
            image_repository=pb.ImageRepository(
                image_identifier="a" * 256 + ":1",
                image_configuration=pb.ImageConfiguration(
                    start_command="x" * 51201,
                    runtime_environment_variables={f"V{i}": "1" for i in range(101)},
                ),
            )
        ),
    )
    err = await expect_error(
        harness.stub.CreateService(request, metadata=harness.meta()),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    prefix = "source_configuration.image_repository"
    assert {
        f"{prefix}.image_identifier",
        f"{prefix}.image_configuration.start_command",
        f"{prefix}.image_configuration.runtime_environment_variables",
    } <= set(err.field_violations)
    too_long_arn = "arn:aws:apprunner:us-east-1:111111111111:service/" + "x" * 2000
    bad = await expect_error(harness.describe(too_long_arn), grpc.StatusCode.INVALID_ARGUMENT)
    assert "service_arn" in bad.field_violations
    assert await count(harness, "select count(*) from services") == 0
