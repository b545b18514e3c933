"""Connections: create, list, delete, the operator's handshake command, quotas,
idempotency, and the race between deleting a connection and creating a service on it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from tests.support.processes import SERVICECONTROL, environment
from tests.support.rpc import expect_error
from tests.support.server import (
    ACCOUNT,
    OTHER_ACCOUNT,
    Harness,
    harness_settings,
    running_harness,
)

GITHUB = pb.Connection.GITHUB


async def scalar(h: Harness, sql: str, **params: object) -> object:
    async with h.app.engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar()


async def create(h: Harness, name: str, account: str = ACCOUNT, **kw: object) -> pb.Connection:
    kw.setdefault("provider_type", GITHUB)
    response = await h.stub.CreateConnection(
        api.CreateConnectionRequest(connection_name=name, **kw),  # type: ignore[arg-type]
        metadata=h.meta(account),
    )
    return response.connection


async def delete(h: Harness, arn: str, account: str = ACCOUNT, **kw: object) -> pb.Connection:
    response = await h.stub.DeleteConnection(
        api.DeleteConnectionRequest(connection_arn=arn, **kw),  # type: ignore[arg-type]
        metadata=h.meta(account),
    )
    return response.connection


async def listed(h: Harness, account: str = ACCOUNT, **kw: object) -> api.ListConnectionsResponse:
    return await h.stub.ListConnections(
        api.ListConnectionsRequest(**kw),
        metadata=h.meta(account),  # type: ignore[arg-type]
    )


def code_service(name: str, connection_arn: str) -> api.CreateServiceRequest:
    return api.CreateServiceRequest(
        service_name=name,
        source_configuration=pb.SourceConfiguration(
            code_repository=pb.CodeRepository(
                repository_url="https://github.com/acme/app",
                source_code_version=pb.SourceCodeVersion(
                    type=pb.SourceCodeVersion.BRANCH, value="main"
                ),
            ),
            authentication_configuration=pb.AuthenticationConfiguration(
                connection_arn=connection_arn
            ),
        ),
    )


async def available(h: Harness, name: str) -> pb.Connection:
    created = await create(h, name)
    await h.app.use_cases.connections.complete_handshake(
        ACCOUNT, created.connection_arn, "AVAILABLE"
    )
    return created


async def test_create_returns_a_pending_connection_and_records_an_event(harness: Harness) -> None:
    created = await create(harness, "my-github", provider_type=pb.Connection.BITBUCKET)
    assert created.status == pb.Connection.PENDING_HANDSHAKE
    assert created.provider_type == pb.Connection.BITBUCKET
    prefix = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:connection/my-github/"
    assert created.connection_arn.startswith(prefix)
    assert len(created.connection_arn.removeprefix(prefix)) == 32
    assert created.HasField("created_at") and not created.HasField("deleted_at")
    assert (
        await scalar(
            harness,
            "select count(*) from outbox where type='connection.created' and resource_arn=:a",
            a=created.connection_arn,
        )
        == 1
    )


@pytest.mark.parametrize(
    ("name", "provider", "fields"),
    [
        ("abc", GITHUB, {"connection_name"}),
        ("a" * 33, GITHUB, {"connection_name"}),
        ("-leading-dash", GITHUB, {"connection_name"}),
        ("has space", GITHUB, {"connection_name"}),
        ("", GITHUB, {"connection_name"}),
        ("good-name", pb.Connection.PROVIDER_TYPE_UNSPECIFIED, {"provider_type"}),
        ("good-name", 99, {"provider_type"}),
        ("x", 0, {"connection_name", "provider_type"}),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_written(
    harness: Harness, name: str, provider: int, fields: set[str]
) -> None:
    err = await expect_error(
        create(harness, name, provider_type=provider), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert err.reason == "INVALID_REQUEST"
    assert set(err.field_violations) == fields
    assert await scalar(harness, "select count(*) from connections") == 0
    assert await scalar(harness, "select count(*) from outbox") == 0


async def test_names_are_unique_among_live_connections(harness: Harness) -> None:
    first = await create(harness, "shared-name")
    err = await expect_error(create(harness, "shared-name"), grpc.StatusCode.ALREADY_EXISTS)
    assert err.reason == "CONNECTION_NAME_TAKEN"
    assert err.metadata == {"connectionName": "shared-name", "connectionArn": first.connection_arn}
    # Other accounts have their own names; a deleted connection frees its name.
    await create(harness, "shared-name", account=OTHER_ACCOUNT)
    await delete(harness, first.connection_arn)
    second = await create(harness, "shared-name")
    assert second.connection_arn != first.connection_arn


async def test_quota_holds_under_concurrent_creates(harness: Harness) -> None:
    limit = harness.settings.connection_quota
    results = await asyncio.gather(
        *(create(harness, f"conn-{i:02d}") for i in range(limit + 5)), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, pb.Connection)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == limit and len(refused) == 5
    assert {r.code() for r in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    err = await expect_error(create(harness, "one-more"), grpc.StatusCode.RESOURCE_EXHAUSTED)
    assert err.reason == "CONNECTION_QUOTA_EXCEEDED"
    assert err.metadata == {"limit": str(limit), "usage": str(limit)}
    assert err.quota_violations == [f"account {ACCOUNT} in us-east-1"]
    # A deleted connection no longer counts.
    await delete(harness, ok[0].connection_arn)
    await create(harness, "one-more")
    live = await scalar(harness, "select count(*) from connections where status <> 'DELETED'")
    assert live == limit


async def test_list_newest_first_with_pages_filter_and_tombstones(harness: Harness) -> None:
    made = [await create(harness, f"listed-{i}") for i in range(5)]
    await create(harness, "elsewhere", account=OTHER_ACCOUNT)
    await delete(harness, made[1].connection_arn)

    seen: list[pb.Connection] = []
    token = ""
    pages = 0
    while True:
        page = await listed(harness, page_size=2, page_token=token)
        assert len(page.connections) <= 2
        seen += page.connections
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert [c.connection_name for c in seen] == [f"listed-{i}" for i in reversed(range(5))]
    statuses = {c.connection_name: c.status for c in seen}
    assert statuses["listed-1"] == pb.Connection.DELETED

    one = await listed(harness, connection_name="listed-3")
    assert [c.connection_arn for c in one.connections] == [made[3].connection_arn]
    assert (await listed(harness, connection_name="no-such-name")).connections == []
    assert len((await listed(harness, page_size=0)).connections) == 5

    first = await listed(harness, page_size=1)
    err = await expect_error(
        listed(harness, page_size=1, page_token=first.next_page_token, connection_name="listed-3"),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert err.reason == "INVALID_PAGE_TOKEN"
    err = await expect_error(listed(harness, page_size=-1), grpc.StatusCode.INVALID_ARGUMENT)
    assert "page_size" in err.field_violations
    err = await expect_error(listed(harness, connection_name="x"), grpc.StatusCode.INVALID_ARGUMENT)
    assert "connection_name" in err.field_violations


async def test_delete_tombstones_the_connection(harness: Harness) -> None:
    created = await create(harness, "short-lived")
    gone = await delete(harness, created.connection_arn)
    assert gone.status == pb.Connection.DELETED
    assert gone.connection_arn == created.connection_arn
    assert gone.purge_at.ToDatetime() - gone.deleted_at.ToDatetime() == timedelta(
        seconds=harness.settings.connection_tombstone_retention_seconds
    )
    row = (await listed(harness)).connections[0]
    assert row.status == pb.Connection.DELETED and row.purge_at == gone.purge_at
    err = await expect_error(delete(harness, created.connection_arn), grpc.StatusCode.NOT_FOUND)
    assert err.reason == "CONNECTION_NOT_FOUND"
    assert err.metadata == {"connectionArn": created.connection_arn}
    assert await scalar(harness, "select count(*) from outbox where type='connection.deleted'") == 1


async def test_delete_refuses_unknown_malformed_and_other_accounts_arns(harness: Harness) -> None:
    mine = await create(harness, "mine-only")
    unknown = mine.connection_arn[:-32] + uuid.uuid4().hex
    for arn in (unknown, mine.connection_arn.replace(ACCOUNT, OTHER_ACCOUNT)):
        err = await expect_error(delete(harness, arn), grpc.StatusCode.NOT_FOUND)
        assert err.reason == "CONNECTION_NOT_FOUND"
    # The other account cannot delete it through its own metadata either.
    await expect_error(
        delete(harness, mine.connection_arn, account=OTHER_ACCOUNT), grpc.StatusCode.NOT_FOUND
    )
    for arn in ("", "not-an-arn", mine.connection_arn.replace(":connection/", ":service/")):
        err = await expect_error(delete(harness, arn), grpc.StatusCode.INVALID_ARGUMENT)
        assert "connection_arn" in err.field_violations
    assert await scalar(harness, "select status from connections") == "PENDING_HANDSHAKE"


async def test_delete_is_refused_while_a_service_uses_the_connection(harness: Harness) -> None:
    conn = await available(harness, "in-use")
    created = await harness.stub.CreateService(
        code_service("code-svc", conn.connection_arn), metadata=harness.meta()
    )
    await harness.wait(created.operation_id)
    err = await expect_error(
        delete(harness, conn.connection_arn), grpc.StatusCode.FAILED_PRECONDITION
    )
    assert err.reason == "CONNECTION_IN_USE"
    assert err.metadata == {
        "connectionArn": conn.connection_arn,
        "serviceArns": created.service.service_arn,
    }
    err = await expect_error(
        delete(harness, conn.connection_arn, validate_only=True),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert err.reason == "CONNECTION_IN_USE"

    removed = await harness.stub.DeleteService(
        api.DeleteServiceRequest(service_arn=created.service.service_arn), metadata=harness.meta()
    )
    await harness.wait(removed.operation_id)
    assert (await delete(harness, conn.connection_arn)).status == pb.Connection.DELETED


async def test_request_id_and_validate_only(harness: Harness) -> None:
    rid = str(uuid.uuid4())
    first = await create(harness, "idempotent", request_id=rid)
    again = await create(harness, "idempotent", request_id=rid)
    assert again.connection_arn == first.connection_arn
    err = await expect_error(
        create(harness, "different", request_id=rid), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert err.reason == "REQUEST_ID_REUSED"
    err = await expect_error(
        create(harness, "bad-request-id", request_id="nope"), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "request_id" in err.field_violations

    preview = await create(harness, "preview-only", validate_only=True)
    assert preview.status == pb.Connection.PENDING_HANDSHAKE
    # validate_only still checks everything: a taken name is refused.
    await expect_error(
        create(harness, "idempotent", validate_only=True), grpc.StatusCode.ALREADY_EXISTS
    )
    kept = await delete(harness, first.connection_arn, validate_only=True)
    assert kept.status == pb.Connection.PENDING_HANDSHAKE

    delete_rid = str(uuid.uuid4())
    gone = await delete(harness, first.connection_arn, request_id=delete_rid)
    replayed = await delete(harness, first.connection_arn, request_id=delete_rid)
    assert replayed.status == gone.status == pb.Connection.DELETED
    assert replayed.deleted_at == gone.deleted_at
    assert await scalar(harness, "select count(*) from connections") == 1
    assert await scalar(harness, "select count(*) from outbox where type like 'connection.%'") == 2


async def test_complete_handshake_transitions(harness: Harness) -> None:
    conns = harness.app.use_cases.connections
    created = await create(harness, "handshake")
    arn = created.connection_arn
    failed = await conns.complete_handshake(ACCOUNT, arn, "ERROR")
    assert failed.status.value == "ERROR"
    ok = await conns.complete_handshake(ACCOUNT, arn, "AVAILABLE")
    assert ok.status.value == "AVAILABLE"
    # Asking again for the current status changes nothing and records nothing.
    assert (await conns.complete_handshake(ACCOUNT, arn, "AVAILABLE")).status.value == "AVAILABLE"
    from servicecontrol_server.domain.errors import ConnectionNotFound, InvalidRequest, InvalidState

    with pytest.raises(InvalidState) as refused:
        await conns.complete_handshake(ACCOUNT, arn, "ERROR")
    assert refused.value.metadata["allowedStatuses"] == "PENDING_HANDSHAKE"
    with pytest.raises(InvalidRequest):
        await conns.complete_handshake(ACCOUNT, arn, "DELETED")
    with pytest.raises(ConnectionNotFound):
        await conns.complete_handshake(OTHER_ACCOUNT, arn, "AVAILABLE")
    events = await scalar(
        harness,
        "select string_agg(payload->>'status', ',' order by seq) from outbox"
        " where type='connection.handshake_completed'",
    )
    assert events == "ERROR,AVAILABLE"
    assert (await listed(harness)).connections[0].status == pb.Connection.AVAILABLE


async def test_cli_complete_handshake(harness: Harness) -> None:
    created = await create(harness, "cli-made")
    env = environment(harness.settings)

    async def run(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            SERVICECONTROL,
            "connections",
            "complete-handshake",
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, _ = await run(created.connection_arn, "--account", ACCOUNT)
    assert code == 0 and out.split() == [created.connection_arn, "AVAILABLE"]
    assert (await listed(harness)).connections[0].status == pb.Connection.AVAILABLE
    code, _, err = await run(created.connection_arn, "--status", "ERROR")
    assert code == 1 and "INVALID_STATE" in err
    code, _, err = await run(created.connection_arn, "--account", OTHER_ACCOUNT)
    assert code == 1 and "CONNECTION_NOT_FOUND" in err


async def test_service_creation_needs_an_available_connection(harness: Harness) -> None:
    pending = await create(harness, "not-yet")
    err = await expect_error(
        harness.stub.CreateService(
            code_service("early", pending.connection_arn), metadata=harness.meta()
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert err.reason == "CONNECTION_NOT_AVAILABLE"
    await delete(harness, pending.connection_arn)
    err = await expect_error(
        harness.stub.CreateService(
            code_service("late", pending.connection_arn), metadata=harness.meta()
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert err.reason == "CONNECTION_NOT_FOUND"


async def test_delete_racing_service_creation_never_strands_a_service(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    rounds = 20
    settings = harness_settings(database_url, s3_server, tmp_path, connection_quota=rounds)
    async with running_harness(settings, tmp_path) as harness:
        await _race_rounds(harness, rounds)


async def _race_rounds(harness: Harness, rounds: int) -> None:
    conns = [await available(harness, f"racy-{i:02d}") for i in range(rounds)]

    async def race(i: int, conn: pb.Connection) -> tuple[object, object]:
        create_call = harness.stub.CreateService(
            code_service(f"racer-{i:02d}", conn.connection_arn), metadata=harness.meta()
        )
        results = await asyncio.gather(
            create_call, delete(harness, conn.connection_arn), return_exceptions=True
        )
        return results[0], results[1]

    outcomes = await asyncio.gather(*(race(i, c) for i, c in enumerate(conns)))
    for created, deleted in outcomes:
        if isinstance(created, api.CreateServiceResponse):
            # The service won: the delete saw it.
            assert isinstance(deleted, grpc.aio.AioRpcError)
            assert deleted.code() == grpc.StatusCode.FAILED_PRECONDITION
        else:
            # The delete won: the create found the connection gone.
            assert isinstance(created, grpc.aio.AioRpcError)
            assert created.code() == grpc.StatusCode.NOT_FOUND
            assert isinstance(deleted, pb.Connection)
    stranded = await scalar(
        harness,
        "select count(*) from services s join connections c on c.connection_arn = s.connection_arn"
        " where s.status <> 'DELETED' and c.status = 'DELETED'",
    )
    assert stranded == 0
