"""The operator's identity commands, run as processes on the harness's database: accounts,
keys (secret shown once), revocation taking effect within the server's key cache bound,
the audit log, and the development credentials lines."""

from __future__ import annotations

import asyncio
import re

import grpc

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.identity_cli import parse_duration, parse_since
from tests.support.processes import SERVICECONTROL, environment
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, Harness, bearer, refused_within_bound

NEW_ACCOUNT = "333333333333"


async def run(harness: Harness, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        SERVICECONTROL,
        *args,
        env=environment(harness.settings, SERVICECONTROL_LOG_JSON="false"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_accounts_keys_and_revocation(harness: Harness) -> None:
    assert (await run(harness, "accounts", "create", NEW_ACCOUNT))[:2] == (
        0,
        f"{NEW_ACCOUNT} created\n",
    )
    assert (await run(harness, "accounts", "create", NEW_ACCOUNT))[1] == (
        f"{NEW_ACCOUNT} already exists\n"
    )
    code, _, err = await run(harness, "accounts", "create", "12ab")
    assert code == 1 and "12 digits" in err

    code, out, _ = await run(
        harness,
        "keys",
        "create",
        "--account",
        NEW_ACCOUNT,
        "--role",
        "reader",
        "--expires-in",
        "1d",
    )
    assert code == 0
    token = re.search(r"authorization: Bearer (\S+)", out)
    assert token is not None
    key_id, secret = token[1].split(".")
    assert f"secret      {secret}" in out and "shown only now" in out

    listed = await harness.stub.ListServices(api.ListServicesRequest(), metadata=bearer(token[1]))
    assert list(listed.services) == []
    await expect_error(
        harness.stub.DeleteService(
            api.DeleteServiceRequest(service_arn="x"), metadata=bearer(token[1])
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )

    code, out, _ = await run(harness, "keys", "list", "--account", NEW_ACCOUNT)
    assert code == 0 and out.startswith(f"{key_id} reader active expires ")
    assert secret not in out
    code, out, _ = await run(harness, "accounts", "list")
    assert f"{NEW_ACCOUNT} created " in out and f"{NEW_ACCOUNT}" in out

    # Revoking in another account finds nothing; in its own, the key is refused by the
    # server (another process) within its key cache's bound, and from then on.
    code, _, err = await run(harness, "keys", "revoke", key_id, "--account", ACCOUNT)
    assert code == 1 and "KEY_NOT_FOUND" in err
    await harness.stub.ListServices(api.ListServicesRequest(), metadata=bearer(token[1]))
    assert (await run(harness, "keys", "revoke", key_id, "--account", NEW_ACCOUNT))[1] == (
        f"{key_id} revoked\n"
    )
    await refused_within_bound(harness, token[1], asyncio.get_running_loop().time())
    await expect_error(
        harness.stub.ListServices(api.ListServicesRequest(), metadata=bearer(token[1])),
        grpc.StatusCode.UNAUTHENTICATED,
    )
    code, out, _ = await run(harness, "keys", "list", "--account", NEW_ACCOUNT)
    assert out.startswith(f"{key_id} reader revoked ")

    code, _, err = await run(harness, "keys", "create", "--account", "444444444444")
    assert code == 1 and "ACCOUNT_NOT_FOUND" in err
    code, _, err = await run(
        harness, "keys", "create", "--account", NEW_ACCOUNT, "--expires-in", "soon"
    )
    assert code == 2 and "--expires-in" in err


async def test_audit_prints_the_accounts_rows(harness: Harness) -> None:
    created = await harness.create("audited-cli")
    key_id = harness.keys[ACCOUNT].key.key_id
    code, out, _ = await run(harness, "audit", "--account", ACCOUNT, "--since", "1h")
    assert code == 0
    (line,) = out.splitlines()
    assert f" CreateService OK key={key_id} resource={created.service.service_arn} " in line
    assert f"operation={created.operation_id}" in line
    code, out, _ = await run(
        harness, "audit", "--account", ACCOUNT, "--since", "2999-01-01T00:00:00"
    )
    assert (code, out) == (0, "")
    code, _, err = await run(harness, "audit", "--account", ACCOUNT, "--since", "last week")
    assert code == 2 and "--since" in err


async def test_credentials_lines(harness: Harness) -> None:
    code, _, err = await run(harness, "credentials", "--aws")
    assert code == 1 and "no credentials file" in err
    path = harness.settings.data_dir / "credentials"
    path.write_text(
        "SERVICECONTROL_API_KEY=SCKX.s\nAWS_ACCESS_KEY_ID=SCKX\nAWS_SECRET_ACCESS_KEY=s\n"
        "AWS_DEFAULT_REGION=us-east-1\n"
    )
    assert (await run(harness, "credentials", "--aws"))[1].splitlines() == [
        "export AWS_ACCESS_KEY_ID=SCKX",
        "export AWS_SECRET_ACCESS_KEY=s",
        "export AWS_DEFAULT_REGION=us-east-1",
    ]
    assert (await run(harness, "credentials"))[1] == "export SERVICECONTROL_API_KEY=SCKX.s\n"


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "15m", "12h", "30d", "1w", "")] == [
        90,
        900,
        43200,
        2592000,
        None,
        None,
    ]
    assert parse_since("nonsense") is None
    since = parse_since("2026-01-02T03:04:05")
    assert since is not None and since.tzinfo is not None
