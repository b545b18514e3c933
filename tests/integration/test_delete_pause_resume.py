"""Delete, pause and resume as operations: what each removes and keeps, from which
states, and how they behave under concurrency and failure."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import grpc
import pytest
from sqlalchemy import text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, Harness, harness_settings, running_harness


async def scalar(h: Harness, sql: str, **params: object) -> object:
    async with h.app.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


def image_keys(h: Harness, service_id: str) -> list[str]:
    return [
        o.key for o in h.app.store.list_objects(h.settings.image_bucket, f"services/{service_id}/")
    ]


async def delete(h: Harness, arn: str, **kw: object) -> api.DeleteServiceResponse:
    return await h.stub.DeleteService(
        api.DeleteServiceRequest(service_arn=arn, **kw), metadata=h.meta()
    )


async def pause(h: Harness, arn: str) -> api.PauseServiceResponse:
    return await h.stub.PauseService(api.PauseServiceRequest(service_arn=arn), metadata=h.meta())


async def resume(h: Harness, arn: str) -> api.ResumeServiceResponse:
    return await h.stub.ResumeService(api.ResumeServiceRequest(service_arn=arn), metadata=h.meta())


async def add_domain(h: Harness, service_id: str, domain: str) -> None:
    """A linked custom domain with its certificate record, as association leaves them."""
    cert_id = uuid.uuid4().hex
    async with h.app.engine.begin() as conn:
        await conn.execute(
            text(
                "insert into certificates (certificate_id, account_id, certificate_arn,"
                " domain_name,"
                " status, service_id, service_arn) select :c, :a, :arn, :d, 'ISSUED', s.service_id,"
                " s.service_arn from services s where s.service_id = :s"
            ),
            {
                "c": cert_id,
                "a": ACCOUNT,
                "arn": f"arn:aws:apprunner:us-east-1:{ACCOUNT}:certificate/{cert_id}",
                "d": domain,
                "s": service_id,
            },
        )
        await conn.execute(
            text(
                "insert into custom_domains (service_id, domain_name, enable_www_subdomain, status,"
                " certificate_id) values (:s, :d, true, 'ACTIVE', :c)"
            ),
            {"s": service_id, "d": domain, "c": cert_id},
        )


async def test_delete_removes_image_copy_and_configuration_keeps_tombstone(
    harness: Harness,
) -> None:
    svc = await harness.running_service("to-delete")
    await add_domain(harness, svc.service_id, "shop.example.com")
    source_before = sorted(
        o.key for o in harness.app.store.list_objects(harness.settings.source_bucket, "")
    )
    copy_before = image_keys(harness, svc.service_id)
    assert copy_before

    response = await delete(harness, svc.service_arn)
    assert response.service.status == pb.Service.OPERATION_IN_PROGRESS
    assert response.operation_id == response.service.current_operation_id
    op = await harness.wait(response.operation_id)
    assert op.status == pb.Operation.SUCCEEDED and op.type == pb.Operation.DELETE_SERVICE

    assert image_keys(harness, svc.service_id) == []
    source_after = sorted(
        o.key for o in harness.app.store.list_objects(harness.settings.source_bucket, "")
    )
    assert source_after == source_before
    assert (
        await scalar(
            harness,
            "select count(*) from service_configurations where service_id=:s",
            s=svc.service_id,
        )
        == 0
    )
    assert (
        await scalar(
            harness, "select count(*) from compute_instances where service_id=:s", s=svc.service_id
        )
        == 0
    )

    report = op.deletion_report
    assert report.image_objects == len(copy_before)
    assert report.image_bytes > 0
    assert set(report.configuration_records) == {"service_configuration", "compute_instance"}
    assert list(report.unlinked_domain_names) == ["shop.example.com"]
    cert = report.retained_certificates[0]
    assert cert.domain_name == "shop.example.com"

    gone = await harness.describe(svc.service_arn)
    assert gone.status == pb.Service.DELETED
    assert gone.HasField("deleted_at") and gone.HasField("purge_at")
    assert not gone.HasField("source_configuration")
    # The certificate record is kept, unlinked, expiring 7 days after the delete.
    row = await _row(harness, "select service_id, unlinked_at, expires_at from certificates")
    assert row.service_id is None
    assert row.expires_at - row.unlinked_at == timedelta(days=7)
    assert abs(cert.expires_at.ToDatetime().timestamp() - row.expires_at.timestamp()) < 1
    listed = await harness.stub.ListServices(api.ListServicesRequest(), metadata=harness.meta())
    assert svc.service_arn not in [s.service_arn for s in listed.services]


async def _row(h: Harness, sql: str) -> object:
    async with h.app.engine.connect() as conn:
        return (await conn.execute(text(sql))).one()


async def test_recreated_service_gets_a_new_id_and_url(harness: Harness) -> None:
    first = await harness.running_service("phoenix")
    await harness.wait((await delete(harness, first.service_arn)).operation_id)
    second = await harness.running_service("phoenix")
    assert second.service_id != first.service_id
    assert second.service_url != first.service_url
    assert (await harness.describe(first.service_arn)).status == pb.Service.DELETED


async def test_delete_from_paused_and_create_failed(harness: Harness) -> None:
    paused = await harness.running_service("paused-one")
    await harness.wait((await pause(harness, paused.service_arn)).operation_id)
    failed = await harness.create("failed-one", image="missing:1")
    await harness.wait(failed.operation_id)
    for arn in (paused.service_arn, failed.service.service_arn):
        op = await harness.wait((await delete(harness, arn)).operation_id)
        assert op.status == pb.Operation.SUCCEEDED
        assert (await harness.describe(arn)).status == pb.Service.DELETED


async def test_delete_refused_from_deleted(harness: Harness) -> None:
    svc = await harness.running_service("twice")
    await harness.wait((await delete(harness, svc.service_arn)).operation_id)
    err = await expect_error(delete(harness, svc.service_arn), grpc.StatusCode.FAILED_PRECONDITION)
    assert err.reason == "INVALID_STATE" and err.metadata["status"] == "DELETED"


async def test_delete_refused_while_an_operation_runs(
    database_url: str, s3_server: object, tmp_path: object
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)  # type: ignore[arg-type]
    async with running_harness(settings, tmp_path, workers=0) as h:  # type: ignore[arg-type]
        created = await h.create("busy")
        err = await expect_error(
            delete(h, created.service.service_arn), grpc.StatusCode.FAILED_PRECONDITION
        )
        assert err.reason == "OPERATION_IN_PROGRESS"
        assert err.metadata["operationId"] == created.operation_id
        await expect_error(
            pause(h, created.service.service_arn), grpc.StatusCode.FAILED_PRECONDITION
        )


async def test_fifty_concurrent_deletes_start_one_operation(harness: Harness) -> None:
    svc = await harness.running_service("popular")
    results = await asyncio.gather(
        *(delete(harness, svc.service_arn) for _ in range(50)), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, api.DeleteServiceResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 1 and len(refused) == 49
    assert {r.code() for r in refused} == {grpc.StatusCode.FAILED_PRECONDITION}
    await harness.wait(ok[0].operation_id)
    assert await scalar(harness, "select count(*) from operations where type='DELETE_SERVICE'") == 1


async def test_delete_request_id_returns_the_same_operation(harness: Harness) -> None:
    svc = await harness.running_service("idem-delete")
    rid = str(uuid.uuid4())
    first = await delete(harness, svc.service_arn, request_id=rid)
    again = await delete(harness, svc.service_arn, request_id=rid)
    assert again.operation_id == first.operation_id


async def test_delete_etag_precondition(harness: Harness) -> None:
    svc = await harness.running_service("etagged")
    err = await expect_error(
        delete(harness, svc.service_arn, etag='"nope"'), grpc.StatusCode.ABORTED
    )
    assert err.reason == "ETAG_MISMATCH"
    ok = await delete(harness, svc.service_arn, etag=svc.etag)
    assert ok.operation_id


async def test_validate_only_delete_returns_a_plan_and_changes_nothing(harness: Harness) -> None:
    svc = await harness.running_service("planned")
    await add_domain(harness, svc.service_id, "plan.example.com")
    keys = image_keys(harness, svc.service_id)
    plan = await delete(harness, svc.service_arn, validate_only=True)
    assert plan.operation_id == ""
    assert plan.plan.image_objects == len(keys) and plan.plan.image_bytes > 0
    assert list(plan.plan.unlinked_domain_names) == ["plan.example.com"]
    assert plan.plan.retained_certificates[0].HasField("expires_at")
    assert "service_configuration" in plan.plan.configuration_records
    assert (await harness.describe(svc.service_arn)).status == pb.Service.RUNNING
    assert image_keys(harness, svc.service_id) == keys
    assert await scalar(harness, "select count(*) from jobs") == 0


async def test_delete_leaves_the_connection_alone(harness: Harness) -> None:
    arn = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:connection/my-github/{uuid.uuid4().hex}"
    async with harness.app.engine.begin() as conn:
        await conn.execute(
            text("insert into accounts (account_id) values (:a) on conflict do nothing"),
            {"a": ACCOUNT},
        )
        await conn.execute(
            text(
                "insert into connections (connection_id, account_id, connection_name,"
                " connection_arn,"
                " provider_type, status) values (:i, :a, 'my-github', :arn, 'GITHUB', 'AVAILABLE')"
            ),
            {"i": arn[-32:], "a": ACCOUNT, "arn": arn},
        )
    request = api.CreateServiceRequest(
        service_name="from-code",
        source_configuration=pb.SourceConfiguration(
            code_repository=pb.CodeRepository(
                repository_url="https://github.com/acme/app",
                source_code_version=pb.SourceCodeVersion(
                    type=pb.SourceCodeVersion.BRANCH, value="main"
                ),
            ),
            authentication_configuration=pb.AuthenticationConfiguration(connection_arn=arn),
        ),
    )
    created = await harness.stub.CreateService(request, metadata=harness.meta())
    await harness.wait(created.operation_id)
    op = await harness.wait((await delete(harness, created.service.service_arn)).operation_id)
    assert list(op.deletion_report.retained_connection_arns) == [arn]
    assert (
        await scalar(harness, "select status from connections where connection_arn=:a", a=arn)
        == "AVAILABLE"
    )
    assert (
        await scalar(harness, "select count(*) from services where connection_arn=:a", a=arn) == 0
    )


async def test_pause_keeps_image_and_url_resume_brings_it_back(harness: Harness) -> None:
    svc = await harness.running_service("sleepy")
    keys = image_keys(harness, svc.service_id)
    paused = await pause(harness, svc.service_arn)
    assert paused.service.status == pb.Service.OPERATION_IN_PROGRESS
    op = await harness.wait(paused.operation_id)
    assert op.status == pb.Operation.SUCCEEDED and op.type == pb.Operation.PAUSE_SERVICE
    now = await harness.describe(svc.service_arn)
    assert now.status == pb.Service.PAUSED and now.service_url == svc.service_url
    assert image_keys(harness, svc.service_id) == keys
    assert (
        await scalar(
            harness, "select state from compute_instances where service_id=:s", s=svc.service_id
        )
        == "STOPPED"
    )
    assert now.source_configuration == svc.source_configuration

    err = await expect_error(pause(harness, svc.service_arn), grpc.StatusCode.FAILED_PRECONDITION)
    assert err.reason == "INVALID_STATE"
    await harness.wait((await resume(harness, svc.service_arn)).operation_id)
    back = await harness.describe(svc.service_arn)
    assert back.status == pb.Service.RUNNING and back.service_url == svc.service_url
    assert (
        await scalar(
            harness, "select state from compute_instances where service_id=:s", s=svc.service_id
        )
        == "RUNNING"
    )
    err = await expect_error(resume(harness, svc.service_arn), grpc.StatusCode.FAILED_PRECONDITION)
    assert err.metadata["allowedStatuses"] == "PAUSED"


async def test_operations_are_listed_newest_first(harness: Harness) -> None:
    svc = await harness.running_service("history")
    await harness.wait((await pause(harness, svc.service_arn)).operation_id)
    await harness.wait((await resume(harness, svc.service_arn)).operation_id)
    page = await harness.stub.ListOperations(
        api.ListOperationsRequest(service_arn=svc.service_arn, page_size=2), metadata=harness.meta()
    )
    assert [o.type for o in page.operations] == [
        pb.Operation.RESUME_SERVICE,
        pb.Operation.PAUSE_SERVICE,
    ]
    rest = await harness.stub.ListOperations(
        api.ListOperationsRequest(
            service_arn=svc.service_arn, page_size=2, page_token=page.next_page_token
        ),
        metadata=harness.meta(),
    )
    assert [o.type for o in rest.operations] == [pb.Operation.CREATE_SERVICE]
    assert rest.next_page_token == ""
    one = await harness.stub.DescribeOperation(
        api.DescribeOperationRequest(operation_id=page.operations[0].id), metadata=harness.meta()
    )
    assert one.operation.status == pb.Operation.SUCCEEDED
    await expect_error(
        harness.stub.DescribeOperation(
            api.DescribeOperationRequest(operation_id=str(uuid.uuid4())), metadata=harness.meta()
        ),
        grpc.StatusCode.NOT_FOUND,
    )


@pytest.mark.slow
async def test_object_store_down_retries_then_delete_failed_then_recovers(
    database_url: str, s3_server: object, tmp_path: object
) -> None:
    from tests.support.faults import FlakyObjectStore

    settings = harness_settings(database_url, s3_server, tmp_path, job_max_attempts=3)  # type: ignore[arg-type]
    async with running_harness(settings, tmp_path) as h:  # type: ignore[arg-type]
        h.push_image()
        svc = await h.running_service("fragile")
        flaky = FlakyObjectStore(h.app.store)
        for handler in h.app.handlers.values():
            handler.store = flaky
        flaky.down = True
        first = await delete(h, svc.service_arn)
        op = await h.wait(first.operation_id)
        assert op.status == pb.Operation.FAILED
        # Retried for the whole window (2 s in the harness), not for 3 attempts.
        assert op.attempt > 3
        assert not op.HasField("retry_until")
        failed = await h.describe(svc.service_arn)
        assert failed.status == pb.Service.DELETE_FAILED
        assert "unavailable" in failed.status_message.lower()
        assert image_keys(h, svc.service_id)  # nothing was lost while the store was down

        flaky.down = False
        second = await delete(h, svc.service_arn)
        op2 = await h.wait(second.operation_id)
        assert op2.status == pb.Operation.SUCCEEDED
        assert image_keys(h, svc.service_id) == []
        assert (await h.describe(svc.service_arn)).status == pb.Service.DELETED
