"""API keys on the gRPC endpoint: every RPC needs one, the key decides the account and
the role, revocation and expiry apply to the next call, and every mutation leaves an
audit row written with it."""

from __future__ import annotations

import logging
import os
import stat
import uuid

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from sqlalchemy import select, text

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.adapters.postgres import outbox
from servicecontrol_server.adapters.postgres.schema import api_keys
from servicecontrol_server.api.auth import READ_ONLY_RPCS
from servicecontrol_server.domain.identity import Role
from tests.support import identity
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, OTHER_ACCOUNT, Harness, bearer
from tests.support.waiting import wait_until


async def test_every_rpc_refuses_a_call_without_a_valid_key(harness: Harness) -> None:
    revoked = await harness.new_key()
    await harness.app.identity.revoke_key(ACCOUNT, revoked.key.key_id)
    good = harness.keys[ACCOUNT]
    presented = {
        "no key": (),
        "not bearer": (("authorization", f"Basic {good.token}"),),
        "garbage": bearer("nonsense"),
        "unknown key": bearer(good.token.replace(good.key.key_id, "SCK" + "A" * 17)),
        "wrong secret": bearer(f"{good.key.key_id}.{'x' * 40}"),
        "revoked": bearer(revoked.token),
        "header only": (("x-servicecontrol-account", ACCOUNT),),
    }
    rpcs = identity.methods()
    assert len(rpcs) >= 17
    for name, method in rpcs.items():
        for what, metadata in presented.items():
            err = await expect_error(
                identity.call(harness.channel, method, identity.request_of(method), metadata),
                grpc.StatusCode.UNAUTHENTICATED,
            )
            assert err.reason == "UNAUTHENTICATED_REQUEST", (name, what)
            assert good.secret not in err.message and revoked.secret not in err.message


async def test_health_and_reflection_stay_open(harness: Harness) -> None:
    health = health_pb2_grpc.HealthStub(harness.channel)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


async def test_an_expired_key_is_refused(harness: Harness) -> None:
    short = await harness.new_key(expires_in=1)
    stub = harness.stub
    await stub.ListServices(api.ListServicesRequest(), metadata=bearer(short.token))

    async def refused() -> bool:
        try:
            await stub.ListServices(api.ListServicesRequest(), metadata=bearer(short.token))
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "expired" in (err.details() or "")
            return True
        return False

    await wait_until(refused, timeout=10, interval=0.2)


async def test_revocation_applies_to_the_next_call(harness: Harness) -> None:
    key = await harness.new_key()
    await harness.stub.ListServices(api.ListServicesRequest(), metadata=bearer(key.token))
    await harness.app.identity.revoke_key(ACCOUNT, key.key.key_id)
    err = await expect_error(
        harness.stub.ListServices(api.ListServicesRequest(), metadata=bearer(key.token)),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    assert "revoked" in err.message


async def test_a_reader_key_reads_and_may_not_mutate(harness: Harness) -> None:
    svc = await harness.running_service("readable")
    reader = await harness.new_key(role=Role.READER)
    meta = bearer(reader.token)
    described = await harness.stub.DescribeService(
        api.DescribeServiceRequest(service_arn=svc.service_arn), metadata=meta
    )
    assert described.service.service_arn == svc.service_arn
    mutations = [m for name, m in identity.methods().items() if name not in READ_ONLY_RPCS]
    assert {m.name for m in mutations} >= {"CreateService", "DeleteService", "PauseService"}
    for method in mutations:
        request = identity.request_of(method)
        if "service_arn" in method.input_type.fields_by_name:
            request.service_arn = svc.service_arn
        err = await expect_error(
            identity.call(harness.channel, method, request, meta),
            grpc.StatusCode.PERMISSION_DENIED,
        )
        assert err.reason == "PERMISSION_DENIED_FOR_ACCOUNT", method.name
    after = await harness.describe(svc.service_arn)
    assert (after.status, after.etag) == (svc.status, svc.etag)


async def test_the_account_comes_from_the_key_not_a_header(harness: Harness) -> None:
    created = await harness.stub.CreateService(
        api.CreateServiceRequest(
            service_name="by-key",
            source_configuration={"image_repository": {"image_identifier": "hello-web:1.0"}},
        ),
        metadata=(*harness.meta(ACCOUNT), ("x-servicecontrol-account", OTHER_ACCOUNT)),
    )
    assert f":{ACCOUNT}:" in created.service.service_arn
    other = await harness.stub.ListServices(
        api.ListServicesRequest(), metadata=harness.meta(OTHER_ACCOUNT)
    )
    assert list(other.services) == []


async def audit_rows(h: Harness, account: str) -> list[dict[str, str]]:
    entries = await h.app.identity.audit(account, None)
    return [
        {
            "key": e.key_id,
            "action": e.action,
            "arn": e.resource_arn,
            "operation": e.operation_id,
            "request": e.request_id,
            "outcome": e.outcome,
            "source": e.source,
        }
        for e in entries
    ]


async def test_every_mutation_is_audited_and_reads_are_not(harness: Harness) -> None:
    key_id = harness.keys[ACCOUNT].key.key_id
    request_id = str(uuid.uuid4())
    created = await harness.create("audited", request_id=request_id)
    await harness.wait(created.operation_id)
    arn = created.service.service_arn
    await harness.describe(arn)
    deleted = await harness.stub.DeleteService(
        api.DeleteServiceRequest(service_arn=arn), metadata=harness.meta()
    )
    await expect_error(
        harness.stub.PauseService(
            api.PauseServiceRequest(service_arn="nope"), metadata=harness.meta()
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    rows = await audit_rows(harness, ACCOUNT)
    assert [(r["action"], r["outcome"]) for r in rows] == [
        ("CreateService", "OK"),
        ("DeleteService", "OK"),
        ("PauseService", "INVALID_ARGUMENT"),
    ]
    create, delete, pause = rows
    assert create["request"] == request_id and create["arn"] == arn
    assert create["operation"] == created.operation_id
    assert delete["operation"] == deleted.operation_id and delete["arn"] == arn
    assert all(r["key"] == key_id and r["source"].startswith("ipv4:127.0.0.1") for r in rows)
    assert pause["arn"] == "nope"


async def test_refused_calls_are_audited(harness: Harness) -> None:
    reader = await harness.new_key(role=Role.READER)
    await expect_error(
        harness.stub.DeleteService(
            api.DeleteServiceRequest(service_arn="arn:x"), metadata=bearer(reader.token)
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    rows = await audit_rows(harness, ACCOUNT)
    assert [(r["action"], r["outcome"], r["key"]) for r in rows] == [
        ("DeleteService", "PERMISSION_DENIED", reader.key.key_id)
    ]
    await expect_error(
        harness.stub.DeleteService(
            api.DeleteServiceRequest(service_arn="arn:y"),
            metadata=bearer(f"{reader.key.key_id}.{'y' * 40}"),
        ),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    async with harness.app.engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT key_id, account_id, outcome FROM audit_log WHERE resource_arn = 'arn:y'"
                )
            )
        ).one()
    assert tuple(row) == (reader.key.key_id, "", "UNAUTHENTICATED")


async def test_the_audit_row_commits_with_its_mutation_or_not_at_all(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The event's insert is refused by the database (a NOT NULL column left out), after
    # the service, its operation, its job and the audit row were written in the same
    # transaction (sent together with the commit in one round trip).
    monkeypatch.setattr(
        outbox,
        "INSERT_ONE_EVENT",
        text("INSERT INTO outbox (event_id) VALUES (CAST(:event_id AS uuid))"),
    )
    await expect_error(harness.create("never"), grpc.StatusCode.INTERNAL)
    rows = await audit_rows(harness, ACCOUNT)
    # The mutation rolled back with its OK row; the refusal is recorded outside it.
    assert [(r["action"], r["outcome"]) for r in rows] == [("CreateService", "INTERNAL")]
    listed = await harness.stub.ListServices(api.ListServicesRequest(), metadata=harness.meta())
    assert list(listed.services) == []


async def test_the_audit_log_is_append_only(harness: Harness) -> None:
    await harness.create("append-only")
    async with harness.app.engine.connect() as conn:
        for statement in ("UPDATE audit_log SET outcome = 'x'", "DELETE FROM audit_log"):
            with pytest.raises(Exception, match="append-only"):
                async with conn.begin():
                    await conn.execute(text(statement))


async def test_secrets_are_stored_sealed_and_never_shown_again(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    new = await harness.new_key()
    messages: list[str] = []
    for metadata in (bearer(new.token + "x"), bearer(f"{new.key.key_id}.{new.secret[::-1]}")):
        err = await expect_error(
            harness.stub.DeleteService(
                api.DeleteServiceRequest(service_arn="a"), metadata=metadata
            ),
            grpc.StatusCode.UNAUTHENTICATED,
        )
        messages.append(err.message)
    await harness.stub.CreateService(
        api.CreateServiceRequest(
            service_name="hygiene",
            source_configuration={"image_repository": {"image_identifier": "hello-web:1.0"}},
        ),
        metadata=bearer(new.token),
    )
    await harness.app.identity.revoke_key(ACCOUNT, new.key.key_id)
    listed = await harness.app.identity.list_keys(ACCOUNT)
    async with harness.app.engine.connect() as conn:
        stored = (
            await conn.execute(
                select(api_keys.c.secret_hash, api_keys.c.secret_sealed).where(
                    api_keys.c.key_id == new.key.key_id
                )
            )
        ).one()
        rows = []
        for table in ("outbox", "audit_log", "api_keys", "services", "operations"):
            rows += (await conn.execute(text(f"SELECT * FROM {table}"))).all()
    dump = " ".join(map(str, rows))
    assert new.secret not in stored.secret_sealed and new.secret not in stored.secret_hash
    everything = " ".join([caplog.text, dump, *messages, repr(listed)])
    assert new.key.key_id in everything
    assert new.secret not in everything


def test_the_generated_kek_is_private(harness: Harness) -> None:
    kek = harness.settings.data_dir / "kek"
    assert stat.S_IMODE(os.stat(kek).st_mode) == 0o600


async def test_a_different_kek_cannot_open_the_secrets(harness: Harness) -> None:
    from servicecontrol_server.adapters.crypto.aesgcm import (
        AesGcmSecretBox,
        KeyEncryptionKeyError,
    )

    key = harness.keys[ACCOUNT]
    async with harness.app.engine.connect() as conn:
        sealed = (
            await conn.execute(
                select(api_keys.c.secret_sealed).where(api_keys.c.key_id == key.key.key_id)
            )
        ).scalar_one()
    assert harness.app.identity.box.open(sealed, key.key.key_id) == key.secret
    with pytest.raises(KeyEncryptionKeyError):
        AesGcmSecretBox(os.urandom(32)).open(sealed, key.key.key_id)
    with pytest.raises(KeyEncryptionKeyError):
        # Bound to its key id: a sealed secret moved to another key does not open.
        harness.app.identity.box.open(sealed, "SCK" + "B" * 17)
