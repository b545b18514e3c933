"""An ARN of another account than the caller's is not found, and the message says so:
the ARN's account is in the ARN itself, so saying it reveals nothing."""

from __future__ import annotations

import grpc

from servicecontrol.v1 import service_control_pb2 as api
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, OTHER_ACCOUNT, Harness


async def test_another_accounts_arn_names_both_accounts(harness: Harness) -> None:
    created = await harness.create("mine")
    arn = created.service.service_arn
    error = await expect_error(
        harness.stub.DescribeService(
            api.DescribeServiceRequest(service_arn=arn), metadata=harness.meta(OTHER_ACCOUNT)
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert error.reason == "SERVICE_NOT_FOUND"
    assert error.metadata == {"serviceArn": arn}
    assert error.message == (
        f"Service {arn} not found: the ARN names account {ACCOUNT}, "
        f"but this call acts in account {OTHER_ACCOUNT}."
    )
    # The same for the connection ARNs and every other ARN the one resolver reads.
    connection = await harness.stub.CreateConnection(
        api.CreateConnectionRequest(connection_name="conn-one", provider_type=1),
        metadata=harness.meta(),
    )
    error = await expect_error(
        harness.stub.DeleteConnection(
            api.DeleteConnectionRequest(connection_arn=connection.connection.connection_arn),
            metadata=harness.meta(OTHER_ACCOUNT),
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert error.reason == "CONNECTION_NOT_FOUND"
    assert f"acts in account {OTHER_ACCOUNT}" in error.message


async def test_an_arn_of_another_region_says_which(harness: Harness) -> None:
    created = await harness.create("regional")
    arn = created.service.service_arn.replace(":us-east-1:", ":eu-west-1:")
    error = await expect_error(
        harness.stub.DescribeService(
            api.DescribeServiceRequest(service_arn=arn), metadata=harness.meta()
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert error.message.endswith(
        "the ARN names region eu-west-1, but this call acts in region us-east-1."
    )


async def test_an_unknown_arn_of_ones_own_account_is_plainly_not_found(harness: Harness) -> None:
    created = await harness.create("known")
    arn = created.service.service_arn.rsplit("/", 1)[0] + "/" + "0" * 32
    error = await expect_error(
        harness.stub.DescribeService(
            api.DescribeServiceRequest(service_arn=arn), metadata=harness.meta()
        ),
        grpc.StatusCode.NOT_FOUND,
    )
    assert error.message == f"Service {arn} not found."
