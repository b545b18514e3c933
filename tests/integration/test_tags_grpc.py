"""Tags over gRPC: the same use cases as the App Runner endpoint's tag actions."""

from __future__ import annotations

import grpc

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, OTHER_ACCOUNT, Harness


async def test_tags_over_grpc(harness: Harness) -> None:
    meta = harness.meta()
    created = await harness.create("grpc-tagged", tags={"team": "web"})
    arn = created.service.service_arn
    listed = await harness.stub.ListTagsForResource(
        api.ListTagsForResourceRequest(resource_arn=arn), metadata=meta
    )
    assert dict(listed.tags) == {"team": "web"}

    await harness.stub.TagResource(
        api.TagResourceRequest(resource_arn=arn, tags={"team": "api", "cost": "7"}), metadata=meta
    )
    await harness.stub.UntagResource(
        api.UntagResourceRequest(resource_arn=arn, tag_keys=["cost"]), metadata=meta
    )
    listed = await harness.stub.ListTagsForResource(
        api.ListTagsForResourceRequest(resource_arn=arn), metadata=meta
    )
    assert dict(listed.tags) == {"team": "api"}

    err = await expect_error(
        harness.stub.TagResource(
            api.TagResourceRequest(resource_arn=arn, tags={"aws:x": "1"}), metadata=meta
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "aws:" in err.field_violations["tags[0].key"]
    err = await expect_error(
        harness.stub.ListTagsForResource(
            api.ListTagsForResourceRequest(resource_arn="not-an-arn"), metadata=meta
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "resource_arn" in err.field_violations

    connection = await harness.stub.CreateConnection(
        api.CreateConnectionRequest(
            connection_name="gh-grpc",
            provider_type=pb.Connection.GITHUB,
            tags={"owner": "platform"},
        ),
        metadata=meta,
    )
    listed = await harness.stub.ListTagsForResource(
        api.ListTagsForResourceRequest(resource_arn=connection.connection.connection_arn),
        metadata=meta,
    )
    assert dict(listed.tags) == {"owner": "platform"}
    # Another account's resource is simply not found.
    await expect_error(
        harness.stub.ListTagsForResource(
            api.ListTagsForResourceRequest(resource_arn=arn),
            metadata=harness.meta(OTHER_ACCOUNT),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert ACCOUNT in arn
