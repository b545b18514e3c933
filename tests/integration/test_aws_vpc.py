"""VPC connectors, VPC ingress connections and services' network configuration on the
App Runner endpoint, through the real boto3 client. Every answer is held to botocore's
model."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from servicecontrol_server.domain.identity import Role
from tests.support.aws import AppRunnerClient, Recorder
from tests.support.aws_json import IMAGE_SOURCE, code_of, stored_tags
from tests.support.server import ACCOUNT, OTHER_ACCOUNT, Harness

PRIVATE: dict[str, Any] = {"IngressConfiguration": {"IsPubliclyAccessible": False}}


async def running(aws: AppRunnerClient, name: str, **extra: Any) -> dict[str, Any]:
    created = await aws.create_service(ServiceName=name, SourceConfiguration=IMAGE_SOURCE, **extra)
    return await aws.wait_status(created["Service"]["ServiceArn"], "RUNNING")


async def test_vpc_connector_revisions_tags_listing_and_delete(
    harness: Harness, aws: AppRunnerClient
) -> None:
    created = (
        await aws.create_vpc_connector(
            VpcConnectorName="egress-net",
            Subnets=["subnet-0a", "subnet-0b"],
            SecurityGroups=["sg-1"],
            Tags=[{"Key": "team", "Value": "net"}],
        )
    )["VpcConnector"]
    arn = created["VpcConnectorArn"]
    assert arn.startswith(f"arn:aws:apprunner:us-east-1:{ACCOUNT}:vpcconnector/egress-net/1/")
    assert (created["Status"], created["VpcConnectorRevision"]) == ("ACTIVE", 1)
    assert created["Subnets"] == ["subnet-0a", "subnet-0b"]
    described = (await aws.describe_vpc_connector(VpcConnectorArn=arn))["VpcConnector"]
    assert described == created
    tags = await aws.list_tags_for_resource(ResourceArn=arn)
    assert tags["Tags"] == [{"Key": "team", "Value": "net"}]
    await aws.tag_resource(ResourceArn=arn, Tags=[{"Key": "env", "Value": "prod"}])
    await aws.untag_resource(ResourceArn=arn, TagKeys=["team"])
    assert (await aws.list_tags_for_resource(ResourceArn=arn))["Tags"] == [
        {"Key": "env", "Value": "prod"}
    ]

    with pytest.raises(ClientError) as taken:
        await aws.create_vpc_connector(VpcConnectorName="egress-net", Subnets=["subnet-0c"])
    assert code_of(taken)[0] == "InvalidRequestException"

    deleted = (await aws.delete_vpc_connector(VpcConnectorArn=arn))["VpcConnector"]
    assert deleted["Status"] == "INACTIVE" and "DeletedAt" in deleted
    assert await stored_tags(harness, arn) == 0
    again = (await aws.create_vpc_connector(VpcConnectorName="egress-net", Subnets=["subnet-0c"]))[
        "VpcConnector"
    ]
    assert again["VpcConnectorRevision"] == 2

    for i in range(3):
        await aws.create_vpc_connector(VpcConnectorName=f"more-{i}", Subnets=["subnet-1"])
    first = await aws.list_vpc_connectors(MaxResults=2)
    assert len(first["VpcConnectors"]) == 2 and first["NextToken"]
    rest = await aws.list_vpc_connectors(MaxResults=100, NextToken=first["NextToken"])
    everything = await aws.list_vpc_connectors()
    assert "NextToken" not in everything
    assert [c["VpcConnectorArn"] for c in everything["VpcConnectors"]] == [
        c["VpcConnectorArn"] for c in first["VpcConnectors"] + rest["VpcConnectors"]
    ]
    assert len(everything["VpcConnectors"]) == 5

    with pytest.raises(ClientError) as missing:
        await aws.delete_vpc_connector(VpcConnectorArn=arn)
    assert code_of(missing)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as bad:
        await aws.create_vpc_connector(VpcConnectorName="-bad-name", Subnets=["subnet-1"])
    code, message = code_of(bad)
    assert code == "InvalidRequestException"
    assert "vpcConnectorName" in message, message


async def test_a_service_with_vpc_egress_holds_its_connector_until_deleted(
    harness: Harness, aws: AppRunnerClient
) -> None:
    connector = (await aws.create_vpc_connector(VpcConnectorName="egress", Subnets=["s-1"]))[
        "VpcConnector"
    ]
    network = {
        "EgressConfiguration": {
            "EgressType": "VPC",
            "VpcConnectorArn": connector["VpcConnectorArn"],
        },
        "IpAddressType": "DUAL_STACK",
    }
    service = await running(aws, "vpc-web", NetworkConfiguration=network)
    assert service["NetworkConfiguration"] == {
        **network,
        "IngressConfiguration": {"IsPubliclyAccessible": True},
    }
    with pytest.raises(ClientError) as in_use:
        await aws.delete_vpc_connector(VpcConnectorArn=connector["VpcConnectorArn"])
    code, message = code_of(in_use)
    assert code == "InvalidRequestException"
    assert "being used by other services" in message

    # Egress moved back to the public network: the update answers with it at once.
    updated = await aws.update_service(
        ServiceArn=service["ServiceArn"],
        NetworkConfiguration={"EgressConfiguration": {"EgressType": "DEFAULT"}},
    )
    assert updated["Service"]["NetworkConfiguration"]["EgressConfiguration"] == {
        "EgressType": "DEFAULT"
    }
    await harness.wait(updated["OperationId"])
    await aws.delete_vpc_connector(VpcConnectorArn=connector["VpcConnectorArn"])

    # An INACTIVE connector, or none of the caller's, cannot be taken up.
    for arn in (
        connector["VpcConnectorArn"],
        f"arn:aws:apprunner:us-east-1:{OTHER_ACCOUNT}:vpcconnector/egress/1/{'a' * 32}",
    ):
        with pytest.raises(ClientError) as refused:
            await aws.update_service(
                ServiceArn=service["ServiceArn"],
                NetworkConfiguration={
                    "EgressConfiguration": {"EgressType": "VPC", "VpcConnectorArn": arn}
                },
            )
        assert code_of(refused)[0] == "InvalidRequestException"
    with pytest.raises(ClientError) as no_arn:
        await aws.update_service(
            ServiceArn=service["ServiceArn"],
            NetworkConfiguration={"EgressConfiguration": {"EgressType": "VPC"}},
        )
    assert code_of(no_arn)[0] == "InvalidRequestException"


async def test_vpc_ingress_connection_lifecycle_and_its_rules(
    harness: Harness, aws: AppRunnerClient
) -> None:
    public = await running(aws, "public-web")
    with pytest.raises(ClientError) as not_private:
        await aws.create_vpc_ingress_connection(
            ServiceArn=public["ServiceArn"],
            VpcIngressConnectionName="private-in",
            IngressVpcConfiguration={"VpcId": "vpc-1", "VpcEndpointId": "vpce-1"},
        )
    assert code_of(not_private)[0] == "InvalidStateException"

    service = await running(aws, "private-web", NetworkConfiguration=PRIVATE)
    assert service["NetworkConfiguration"]["IngressConfiguration"] == {
        "IsPubliclyAccessible": False
    }
    created = (
        await aws.create_vpc_ingress_connection(
            ServiceArn=service["ServiceArn"],
            VpcIngressConnectionName="private-in",
            IngressVpcConfiguration={"VpcId": "vpc-1", "VpcEndpointId": "vpce-1"},
            Tags=[{"Key": "team", "Value": "web"}],
        )
    )["VpcIngressConnection"]
    arn = created["VpcIngressConnectionArn"]
    assert arn.startswith(f"arn:aws:apprunner:us-east-1:{ACCOUNT}:vpcingressconnection/private-in/")
    assert (created["Status"], created["AccountId"]) == ("AVAILABLE", ACCOUNT)
    assert created["DomainName"].endswith("us-east-1.servicecontrol.local")
    assert (await aws.describe_vpc_ingress_connection(VpcIngressConnectionArn=arn))[
        "VpcIngressConnection"
    ] == created
    assert (await aws.list_tags_for_resource(ResourceArn=arn))["Tags"] == [
        {"Key": "team", "Value": "web"}
    ]

    # A custom domain of the service points at the ingress connection from inside the VPC.
    associated = await aws.associate_custom_domain(
        ServiceArn=service["ServiceArn"], DomainName="private.example.com"
    )
    target = {"VpcIngressConnectionArn": arn, "VpcId": "vpc-1", "DomainName": created["DomainName"]}
    assert associated["VpcDNSTargets"] == [target]
    described = await aws.describe_custom_domains(ServiceArn=service["ServiceArn"])
    assert described["VpcDNSTargets"] == [target]
    await aws.disassociate_custom_domain(
        ServiceArn=service["ServiceArn"], DomainName="private.example.com"
    )
    with pytest.raises(ClientError) as second:
        await aws.create_vpc_ingress_connection(
            ServiceArn=service["ServiceArn"],
            VpcIngressConnectionName="private-in-2",
            IngressVpcConfiguration={"VpcId": "vpc-1", "VpcEndpointId": "vpce-2"},
        )
    assert code_of(second)[0] == "ServiceQuotaExceededException"
    with pytest.raises(ClientError) as held:
        await aws.delete_service(ServiceArn=service["ServiceArn"])
    code, message = code_of(held)
    assert code == "InvalidStateException"
    assert "VpcIngressConnections with a status of AVAILABLE" in message
    with pytest.raises(ClientError) as made_public:
        await aws.update_service(
            ServiceArn=service["ServiceArn"],
            NetworkConfiguration={"IngressConfiguration": {"IsPubliclyAccessible": True}},
        )
    assert code_of(made_public)[0] == "InvalidStateException"

    updated = (
        await aws.update_vpc_ingress_connection(
            VpcIngressConnectionArn=arn,
            IngressVpcConfiguration={"VpcId": "vpc-2", "VpcEndpointId": "vpce-2"},
        )
    )["VpcIngressConnection"]
    assert updated["IngressVpcConfiguration"] == {"VpcId": "vpc-2", "VpcEndpointId": "vpce-2"}
    by_endpoint = await aws.list_vpc_ingress_connections(Filter={"VpcEndpointId": "vpce-2"})
    assert by_endpoint["VpcIngressConnectionSummaryList"] == [
        {"VpcIngressConnectionArn": arn, "ServiceArn": service["ServiceArn"]}
    ]
    by_service = await aws.list_vpc_ingress_connections(Filter={"ServiceArn": public["ServiceArn"]})
    assert by_service["VpcIngressConnectionSummaryList"] == []

    deleted = (await aws.delete_vpc_ingress_connection(VpcIngressConnectionArn=arn))[
        "VpcIngressConnection"
    ]
    assert deleted["Status"] == "DELETED" and "DeletedAt" in deleted
    assert await stored_tags(harness, arn) == 0
    with pytest.raises(ClientError) as gone:
        await aws.delete_vpc_ingress_connection(VpcIngressConnectionArn=arn)
    assert code_of(gone)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as untaggable:
        await aws.list_tags_for_resource(ResourceArn=arn)
    assert code_of(untaggable)[0] == "ResourceNotFoundException"

    deleting = await aws.delete_service(ServiceArn=service["ServiceArn"])
    await harness.wait(deleting["OperationId"])
    assert (await aws.describe_service(ServiceArn=service["ServiceArn"]))["Service"][
        "Status"
    ] == "DELETED"


async def test_another_accounts_vpc_resources_are_not_found(
    harness: Harness, aws: AppRunnerClient, recorder: Recorder
) -> None:
    other = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials(OTHER_ACCOUNT))
    connector = (await aws.create_vpc_connector(VpcConnectorName="mine", Subnets=["s-1"]))[
        "VpcConnector"
    ]
    for call in (other.describe_vpc_connector, other.delete_vpc_connector):
        with pytest.raises(ClientError) as refused:
            await call(VpcConnectorArn=connector["VpcConnectorArn"])
        assert code_of(refused)[0] == "ResourceNotFoundException"
    assert (await other.list_vpc_connectors())["VpcConnectors"] == []
    with pytest.raises(ClientError) as untagged:
        await other.tag_resource(
            ResourceArn=connector["VpcConnectorArn"], Tags=[{"Key": "k", "Value": "v"}]
        )
    assert code_of(untagged)[0] == "ResourceNotFoundException"


async def test_a_reader_key_reads_vpc_resources_and_may_not_change_them(
    harness: Harness, aws: AppRunnerClient, recorder: Recorder
) -> None:
    connector = (await aws.create_vpc_connector(VpcConnectorName="readable", Subnets=["s-1"]))[
        "VpcConnector"
    ]
    key = await harness.new_key(role=Role.READER)
    reader = AppRunnerClient(harness.aws_port, recorder, (key.key.key_id, key.secret))
    arn = connector["VpcConnectorArn"]
    assert (await reader.describe_vpc_connector(VpcConnectorArn=arn))["VpcConnector"] == connector
    assert [
        c["VpcConnectorArn"] for c in (await reader.list_vpc_connectors())["VpcConnectors"]
    ] == [arn]
    assert (await reader.list_vpc_ingress_connections())["VpcIngressConnectionSummaryList"] == []
    ingress_arn = f"arn:aws:apprunner:us-east-1:{ACCOUNT}:vpcingressconnection/x-in/{'c' * 32}"
    endpoint = {"VpcId": "vpc-1", "VpcEndpointId": "vpce-1"}
    mutations: list[tuple[str, dict[str, Any]]] = [
        ("create_vpc_connector", {"VpcConnectorName": "nope", "Subnets": ["s-1"]}),
        ("delete_vpc_connector", {"VpcConnectorArn": arn}),
        (
            "create_vpc_ingress_connection",
            {
                "ServiceArn": f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/x/{'d' * 32}",
                "VpcIngressConnectionName": "x-in",
                "IngressVpcConfiguration": endpoint,
            },
        ),
        (
            "update_vpc_ingress_connection",
            {"VpcIngressConnectionArn": ingress_arn, "IngressVpcConfiguration": endpoint},
        ),
        ("delete_vpc_ingress_connection", {"VpcIngressConnectionArn": ingress_arn}),
    ]
    for method, args in mutations:
        with pytest.raises(ClientError) as denied:
            await getattr(reader, method)(**args)
        assert code_of(denied)[0] == "AccessDeniedException", method
    assert (await aws.describe_vpc_connector(VpcConnectorArn=arn))["VpcConnector"] == connector
