"""What the App Runner endpoint's boto3 tests share: a client whose every answer is
recorded and held to botocore's model (the `aws_json_client` fixture module), an image
source, reading an error's code and message, and the tags stored for an ARN."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import text

from tests.support.aws import AppRunnerClient, Recorder
from tests.support.server import Harness

IMAGE_SOURCE: dict[str, Any] = {
    "ImageRepository": {"ImageIdentifier": "hello-web:1.0", "ImageRepositoryType": "ECR"}
}


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    """Every answer of the test's boto3 client; each must fit App Runner's model."""
    rec = Recorder()
    yield rec
    assert rec.answers
    problems = rec.problems()
    assert not problems, "answers App Runner's model does not allow:\n" + "\n".join(problems)


@pytest.fixture
def aws(harness: Harness, recorder: Recorder) -> AppRunnerClient:
    return AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials())


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str]:
    """An App Runner error's code and message."""
    error: Any = exc.value.response["Error"]
    return error["Code"], error["Message"]


async def stored_tags(h: Harness, arn: str) -> int:
    """How many tags the database holds for `arn`."""
    async with h.app.engine.connect() as conn:
        rows = await conn.execute(
            text("select count(*) from resource_tags where resource_arn = :arn"), {"arn": arn}
        )
        return int(rows.scalar_one())
