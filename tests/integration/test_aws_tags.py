"""Tags on the App Runner endpoint through the real boto3 client: Tags on create,
TagResource, UntagResource, ListTagsForResource, App Runner's key rules and limits, and
tags deleted with their resource. Every answer is held to botocore's model."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from sqlalchemy import text

from tests.support.aws import AppRunnerClient
from tests.support.aws_json import IMAGE_SOURCE, code_of, stored_tags
from tests.support.server import ACCOUNT, Harness


def tag_map(answer: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in answer["Tags"]}


async def tag_events(h: Harness, arn: str) -> list[dict[str, Any]]:
    async with h.app.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select payload from outbox where resource_arn = :arn "
                "and type = 'tags.changed' order by seq"
            ),
            {"arn": arn},
        )
        return [r[0] for r in rows]


async def test_service_tags_from_create_to_delete(harness: Harness, aws: AppRunnerClient) -> None:
    created = await aws.create_service(
        ServiceName="tagged-web",
        SourceConfiguration=IMAGE_SOURCE,
        Tags=[{"Key": "team", "Value": "web"}, {"Key": "env", "Value": ""}],
    )
    arn = created["Service"]["ServiceArn"]
    assert tag_map(await aws.list_tags_for_resource(ResourceArn=arn)) == {
        "team": "web",
        "env": "",
    }
    await harness.wait(created["OperationId"])

    await aws.tag_resource(
        ResourceArn=arn, Tags=[{"Key": "team", "Value": "api"}, {"Key": "cost", "Value": "7"}]
    )
    assert tag_map(await aws.list_tags_for_resource(ResourceArn=arn)) == {
        "team": "api",
        "env": "",
        "cost": "7",
    }
    # Removing a key the resource lacks is not an error.
    await aws.untag_resource(ResourceArn=arn, TagKeys=["env", "absent"])
    assert tag_map(await aws.list_tags_for_resource(ResourceArn=arn)) == {
        "team": "api",
        "cost": "7",
    }
    assert await tag_events(harness, arn) == [
        {"added": {"team": "api", "cost": "7"}, "removed": []},
        {"added": {}, "removed": ["env"]},
    ]

    deleted = await aws.delete_service(ServiceArn=arn)
    await harness.wait(deleted["OperationId"])
    assert await stored_tags(harness, arn) == 0
    with pytest.raises(ClientError) as gone:
        await aws.list_tags_for_resource(ResourceArn=arn)
    assert code_of(gone)[0] == "ResourceNotFoundException"


async def test_connection_tags_and_their_deletion(harness: Harness, aws: AppRunnerClient) -> None:
    conn = (
        await aws.create_connection(
            ConnectionName="gh-tagged",
            ProviderType="GITHUB",
            Tags=[{"Key": "owner", "Value": "platform"}],
        )
    )["Connection"]
    arn = conn["ConnectionArn"]
    assert tag_map(await aws.list_tags_for_resource(ResourceArn=arn)) == {"owner": "platform"}
    await aws.tag_resource(ResourceArn=arn, Tags=[{"Key": "tier", "Value": "1"}])
    assert tag_map(await aws.list_tags_for_resource(ResourceArn=arn)) == {
        "owner": "platform",
        "tier": "1",
    }
    await aws.delete_connection(ConnectionArn=arn)
    assert await stored_tags(harness, arn) == 0


async def test_tag_rules_refuse_and_change_nothing(harness: Harness, aws: AppRunnerClient) -> None:
    with pytest.raises(ClientError) as reserved:
        await aws.create_service(
            ServiceName="bad-tags",
            SourceConfiguration=IMAGE_SOURCE,
            Tags=[{"Key": "aws:owner", "Value": "x"}],
        )
    assert code_of(reserved) == (
        "InvalidRequestException",
        "1 validation error detected: Value 'aws:owner' at 'tags.1.member.key' failed to "
        "satisfy constraint: Member must satisfy regular expression pattern: ^(?!aws:).+",
    )
    assert (await aws.list_services())["ServiceSummaryList"] == []

    created = await aws.create_service(ServiceName="limits", SourceConfiguration=IMAGE_SOURCE)
    arn = created["Service"]["ServiceArn"]
    await aws.tag_resource(
        ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)]
    )
    with pytest.raises(ClientError) as too_many:
        await aws.tag_resource(ResourceArn=arn, Tags=[{"Key": "one-more", "Value": "v"}])
    code, message = code_of(too_many)
    assert code == "InvalidRequestException" and "at most 50 tags" in message
    # Replacing a value of an existing key is within the limit.
    await aws.tag_resource(ResourceArn=arn, Tags=[{"Key": "k0", "Value": "changed"}])
    tags = tag_map(await aws.list_tags_for_resource(ResourceArn=arn))
    assert len(tags) == 50 and tags["k0"] == "changed"

    with pytest.raises(ClientError) as long_value:
        await aws.tag_resource(ResourceArn=arn, Tags=[{"Key": "k1", "Value": "v" * 257}])
    assert code_of(long_value)[0] == "InvalidRequestException"
    with pytest.raises(ClientError) as duplicate:
        await aws.tag_resource(
            ResourceArn=arn, Tags=[{"Key": "d", "Value": "1"}, {"Key": "d", "Value": "2"}]
        )
    assert "duplicate tag key" in code_of(duplicate)[1]
    assert "d" not in tag_map(await aws.list_tags_for_resource(ResourceArn=arn))

    other = arn.replace(ACCOUNT, "999999999999")
    for call in (
        aws.list_tags_for_resource(ResourceArn=other),
        aws.tag_resource(ResourceArn=other, Tags=[{"Key": "a", "Value": "b"}]),
        aws.untag_resource(ResourceArn=other, TagKeys=["a"]),
    ):
        with pytest.raises(ClientError) as missing:
            await call
        assert code_of(missing)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as not_taggable:
        await aws.list_tags_for_resource(ResourceArn="arn:aws:s3:::bucket")
    assert code_of(not_taggable)[0] == "InvalidRequestException"
