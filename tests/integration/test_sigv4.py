"""Signature Version 4 on the App Runner endpoint, verified for real: requests signed by
botocore with an API key pass; each tampered part is refused with AWS's error, HTTP 403."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from servicecontrol_server.api.aws_json.actions import ACTIONS
from servicecontrol_server.domain.identity import Role
from tests.support.aws import CONTENT_TYPE, REGION, Answer, AppRunnerClient, Recorder, raw_call
from tests.support.server import ACCOUNT, Harness
from tests.support.waiting import wait_until


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    problems = rec.problems()
    assert not problems, "\n".join(problems)


def signed(
    port: int,
    credentials: tuple[str, str],
    body: dict[str, Any],
    *,
    target: str = "AppRunner.ListServices",
    region: str = REGION,
) -> tuple[str, bytes, dict[str, str]]:
    url = f"http://127.0.0.1:{port}/"
    data = json.dumps(body).encode()
    request = AWSRequest(
        method="POST",
        url=url,
        data=data,
        headers={"Content-Type": CONTENT_TYPE, "X-Amz-Target": target},
    )
    SigV4Auth(Credentials(*credentials), "apprunner", region).add_auth(request)
    return url, data, dict(request.headers.items())


async def send(
    url: str, data: bytes, headers: dict[str, str], recorder: Recorder, operation: str
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=data, headers=headers) as response,
    ):
        raw = await response.read()
        answer = Answer.of(operation, response.status, dict(response.headers), raw)
    recorder.record(answer)
    return answer.status, answer.json()


async def test_a_botocore_signed_request_is_accepted(harness: Harness, recorder: Recorder) -> None:
    aws = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials())
    created = await aws.create_service(
        ServiceName="signed",
        SourceConfiguration={
            "ImageRepository": {
                "ImageIdentifier": "hello-web:1.0",
                "ImageRepositoryType": "ECR",
            }
        },
    )
    assert f":{ACCOUNT}:" in created["Service"]["ServiceArn"]


async def test_every_tampered_part_is_refused(harness: Harness, recorder: Recorder) -> None:
    port = harness.aws_port
    creds = harness.aws_credentials()
    body = {"MaxResults": 5}

    url, data, headers = signed(port, creds, body)
    assert (await send(url, data, headers, recorder, "ListServices"))[0] == 200

    cases: dict[str, tuple[bytes, dict[str, str]]] = {
        "body": (json.dumps({"MaxResults": 6}).encode(), headers),
        "signed header": (data, {**headers, "X-Amz-Target": "AppRunner.ListConnections"}),
        "date": (data, {**headers, "X-Amz-Date": _shift(headers["X-Amz-Date"], seconds=1)}),
        "signature": (data, {**headers, "Authorization": _flip_signature(headers)}),
    }
    for what, (tampered_data, tampered_headers) in cases.items():
        status, answer = await send(url, tampered_data, tampered_headers, recorder, "ListServices")
        assert (status, answer["__type"]) == (403, "InvalidSignatureException"), what

    _, data, other_region = signed(port, creds, body, region="eu-west-1")
    status, answer = await send(url, data, other_region, recorder, "ListServices")
    assert (status, answer["__type"]) == (403, "InvalidSignatureException")
    assert "region" in answer["Message"]

    wrong_secret = (creds[0], creds[1][::-1])
    _, data, headers = signed(port, wrong_secret, body)
    status, answer = await send(url, data, headers, recorder, "ListServices")
    assert (status, answer["__type"]) == (403, "InvalidSignatureException")

    unknown = ("SCK" + "Q" * 17, creds[1])
    _, data, headers = signed(port, unknown, body)
    status, answer = await send(url, data, headers, recorder, "ListServices")
    assert (status, answer["__type"]) == (403, "UnrecognizedClientException")


def _shift(stamp: str, seconds: int) -> str:
    when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ") + dt.timedelta(seconds=seconds)
    return when.strftime("%Y%m%dT%H%M%SZ")


def _flip_signature(headers: dict[str, str]) -> str:
    auth = headers["Authorization"]
    last = auth[-1]
    return auth[:-1] + ("0" if last != "0" else "1")


@pytest.mark.parametrize("minutes", [-6, 6])
async def test_a_signature_outside_five_minutes_is_refused(
    harness: Harness, recorder: Recorder, monkeypatch: pytest.MonkeyPatch, minutes: int
) -> None:
    import botocore.auth

    skewed = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: skewed)
    url, data, headers = signed(harness.aws_port, harness.aws_credentials(), {})
    status, answer = await send(url, data, headers, recorder, "ListServices")
    assert (status, answer["__type"]) == (403, "InvalidSignatureException")
    assert answer["Message"].startswith("Signature ")

    within = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=minutes // 2)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: within)
    url, data, headers = signed(harness.aws_port, harness.aws_credentials(), {})
    assert (await send(url, data, headers, recorder, "ListServices"))[0] == 200


async def test_revoked_expired_and_reader_keys(harness: Harness, recorder: Recorder) -> None:
    port = harness.aws_port
    revoked = await harness.new_key()
    await harness.app.identity.revoke_key(ACCOUNT, revoked.key.key_id)
    creds = (revoked.key.key_id, revoked.secret)
    status, answer = await send(*signed(port, creds, {}), recorder, "ListServices")
    assert (status, answer["__type"]) == (403, "UnrecognizedClientException")

    short = await harness.new_key(expires_in=1)

    async def expired() -> bool:
        status, answer = await send(
            *signed(port, (short.key.key_id, short.secret), {}), recorder, "ListServices"
        )
        return bool(status == 403 and answer["__type"] == "ExpiredTokenException")

    await wait_until(expired, timeout=10, interval=0.2)

    reader = await harness.new_key(role=Role.READER)
    creds = (reader.key.key_id, reader.secret)
    assert (await send(*signed(port, creds, {}), recorder, "ListServices"))[0] == 200
    status, answer = await send(
        *signed(port, creds, {"ServiceArn": "x"}, target="AppRunner.DeleteService"),
        recorder,
        "DeleteService",
    )
    assert (status, answer["__type"]) == (403, "AccessDeniedException")
    rows = await harness.app.identity.audit(ACCOUNT, None)
    assert [(r.action, r.outcome, r.key_id) for r in rows] == [
        ("AppRunner.DeleteService", "AccessDeniedException", reader.key.key_id)
    ]


async def test_every_action_refuses_a_request_without_a_key(
    harness: Harness, recorder: Recorder
) -> None:
    assert len(ACTIONS) >= 14
    for name in ACTIONS:
        answer = await raw_call(harness.aws_port, f"AppRunner.{name}", {}, recorder=recorder)
        assert answer.status == 403, name
        assert answer.json()["__type"] == "MissingAuthenticationTokenException", name
