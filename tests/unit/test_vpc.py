"""VPC connectors, VPC ingress connections and services' network configuration
(application/vpc_commands.py, service_commands.py) on the fakes."""

from __future__ import annotations

from typing import Any

import pytest

from servicecontrol_server.application.results import Configs
from servicecontrol_server.application.tag_commands import TagCommands
from servicecontrol_server.application.vpc_commands import VpcCommands
from servicecontrol_server.domain.errors import (
    InvalidRequest,
    InvalidState,
    QuotaExceeded,
    ServiceNotFound,
    VpcConnectorInUse,
    VpcConnectorNameTaken,
    VpcConnectorNotActive,
    VpcConnectorNotFound,
    VpcIngressConnectionNameTaken,
    VpcIngressConnectionNotFound,
)
from servicecontrol_server.domain.model import ServiceStatus
from servicecontrol_server.domain.vpc import (
    VpcConnectorStatus,
    VpcIngressConnectionStatus,
    parse_arn,
)

from .harness import ACCOUNT, IMAGE, OTHER_ACCOUNT, Unit, image_source, unit_settings

SUBNETS = ["subnet-0a1", "subnet-0b2"]


def vpc_of(unit: Unit) -> VpcCommands:
    return VpcCommands(unit.uow, unit.settings)


def egress(connector_arn: str) -> dict[str, Any]:
    return {"egress_configuration": {"egress_type": "VPC", "vpc_connector_arn": connector_arn}}


PRIVATE = {"ingress_configuration": {"is_publicly_accessible": False}}


async def private_service(unit: Unit, name: str = "web-app") -> Any:
    unit.push_image(IMAGE)
    configs = image_source(IMAGE)
    configs.network = PRIVATE
    created = await unit.services.create_service(ACCOUNT, name, configs)
    await unit.run_jobs()
    return unit.db.service(created.service.service_id)


# ----- connectors -----


async def test_a_connector_is_recorded_active_with_its_revision_tags_and_event() -> None:
    unit = Unit()
    vpc = vpc_of(unit)
    connector = await vpc.create_vpc_connector(
        ACCOUNT, "egress-1", SUBNETS, ["sg-1"], tags=[("team", "net")]
    )
    assert connector.status is VpcConnectorStatus.ACTIVE
    assert connector.revision == 1
    assert connector.arn == (
        f"arn:aws:apprunner:us-east-1:{ACCOUNT}:vpcconnector/egress-1/1/{connector.connector_id}"
    )
    assert await vpc.describe_vpc_connector(ACCOUNT, connector.arn) == connector
    assert await TagCommands(unit.uow, unit.settings).list_tags(ACCOUNT, connector.arn) == {
        "team": "net"
    }
    [event] = unit.db.events
    assert (event.type, event.payload["vpcConnectorRevision"], event.payload["subnets"]) == (
        "vpc_connector.created",
        1,
        SUBNETS,
    )


@pytest.mark.parametrize(
    ("name", "subnets", "groups", "bad"),
    [
        ("", SUBNETS, [], {"vpc_connector_name"}),
        ("abc", SUBNETS, [], {"vpc_connector_name"}),
        ("-bad-name", SUBNETS, [], {"vpc_connector_name"}),
        ("egress", [], [], {"subnets"}),
        ("egress", ["subnet-1", "subnet-1"], [], {"subnets"}),
        ("egress", SUBNETS, ["x" * 256], {"security_groups[0]"}),
    ],
)
async def test_a_bad_connector_is_refused_and_nothing_is_written(
    name: str, subnets: list[str], groups: list[str], bad: set[str]
) -> None:
    unit = Unit()
    with pytest.raises(InvalidRequest) as refused:
        await vpc_of(unit).create_vpc_connector(ACCOUNT, name, subnets, groups)
    assert {v.field for v in refused.value.violations} == bad
    assert unit.db.commits == 0


async def test_one_active_revision_per_name_and_a_new_revision_after_a_delete() -> None:
    unit = Unit()
    vpc = vpc_of(unit)
    first = await vpc.create_vpc_connector(ACCOUNT, "egress", SUBNETS)
    with pytest.raises(VpcConnectorNameTaken):
        await vpc.create_vpc_connector(ACCOUNT, "egress", SUBNETS)
    deleted = await vpc.delete_vpc_connector(ACCOUNT, first.arn)
    assert deleted.status is VpcConnectorStatus.INACTIVE and deleted.deleted_at is not None
    unit.clock.advance(1)
    second = await vpc.create_vpc_connector(ACCOUNT, "egress", ["subnet-9"])
    assert second.revision == 2
    # The deleted revision stays describable, INACTIVE, and is listed beside the new one.
    assert (await vpc.describe_vpc_connector(ACCOUNT, first.arn)).status.value == "INACTIVE"
    listed = (await vpc.list_vpc_connectors(ACCOUNT, 0, "")).items
    assert [(c.revision, c.status.value) for c in listed] == [(2, "ACTIVE"), (1, "INACTIVE")]
    # Deleting it again: not found, as on App Runner.
    with pytest.raises(VpcConnectorNotFound):
        await vpc.delete_vpc_connector(ACCOUNT, first.arn)


async def test_the_connector_quota_counts_active_connectors() -> None:
    unit = Unit(settings=unit_settings(vpc_connector_quota=1))
    vpc = vpc_of(unit)
    first = await vpc.create_vpc_connector(ACCOUNT, "egress-a", SUBNETS)
    with pytest.raises(QuotaExceeded) as refused:
        await vpc.create_vpc_connector(ACCOUNT, "egress-b", SUBNETS)
    assert refused.value.reason == "VPC_CONNECTOR_QUOTA_EXCEEDED"
    await vpc.delete_vpc_connector(ACCOUNT, first.arn)
    await vpc.create_vpc_connector(ACCOUNT, "egress-b", SUBNETS)


async def test_connector_listing_pages_newest_first() -> None:
    unit = Unit()
    vpc = vpc_of(unit)
    made = []
    for i in range(5):
        made.append(await vpc.create_vpc_connector(ACCOUNT, f"egress-{i}", SUBNETS))
        unit.clock.advance(1)
    seen, token = [], ""
    while True:
        page = await vpc.list_vpc_connectors(ACCOUNT, 2, token)
        seen += [c.name for c in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == [c.name for c in reversed(made)]


async def test_another_accounts_connector_is_not_found() -> None:
    unit = Unit()
    vpc = vpc_of(unit)
    connector = await vpc.create_vpc_connector(ACCOUNT, "egress", SUBNETS)
    for call in (vpc.describe_vpc_connector, vpc.delete_vpc_connector):
        with pytest.raises(VpcConnectorNotFound):
            await call(OTHER_ACCOUNT, connector.arn)
    assert (await vpc.list_vpc_connectors(OTHER_ACCOUNT, 0, "")).items == []


# ----- services' network configuration -----


async def test_a_service_sends_egress_through_an_active_connector_which_then_cannot_go() -> None:
    unit = Unit()
    vpc = vpc_of(unit)
    connector = await vpc.create_vpc_connector(ACCOUNT, "egress", SUBNETS)
    unit.push_image(IMAGE)
    configs = image_source(IMAGE)
    configs.network = egress(connector.arn) | {"ip_address_type": "DUAL_STACK"}
    created = await unit.services.create_service(ACCOUNT, "web-app", configs)
    assert created.service.configuration is not None
    assert created.service.configuration.network == {
        "egress_configuration": {"egress_type": "VPC", "vpc_connector_arn": connector.arn},
        "ingress_configuration": {"is_publicly_accessible": True},
        "ip_address_type": "DUAL_STACK",
    }
    await unit.run_jobs()
    described = await unit.services.describe_service(ACCOUNT, created.service.service_arn)
    assert described.configuration is not None
    assert described.configuration.network == created.service.configuration.network
    with pytest.raises(VpcConnectorInUse) as refused:
        await vpc.delete_vpc_connector(ACCOUNT, connector.arn)
    assert "being used by other services" in refused.value.message
    assert refused.value.metadata["serviceArns"] == created.service.service_arn
    # Once the service is deleted, the connector is free again.
    await unit.services.delete_service(ACCOUNT, created.service.service_arn)
    await unit.run_jobs()
    assert (await vpc.delete_vpc_connector(ACCOUNT, connector.arn)).status.value == "INACTIVE"


async def test_moving_egress_off_the_connector_frees_it() -> None:
    unit = Unit()
    vpc = vpc_of(unit)
    connector = await vpc.create_vpc_connector(ACCOUNT, "egress", SUBNETS)
    service = await unit.running_service()
    updated = await unit.services.update_service(
        ACCOUNT, service.service_arn, Configs(network=egress(connector.arn))
    )
    assert updated.service.configuration is not None
    assert updated.service.configuration.network is not None
    await unit.run_jobs()
    with pytest.raises(VpcConnectorInUse):
        await vpc.delete_vpc_connector(ACCOUNT, connector.arn)
    await unit.services.update_service(
        ACCOUNT, service.service_arn, Configs(network={"egress_configuration": {}})
    )
    await unit.run_jobs()
    await vpc.delete_vpc_connector(ACCOUNT, connector.arn)
    # The update job's configuration write keeps the recorded network configuration.
    kept = unit.db.tables.configurations[service.service_id].network
    assert kept is not None and kept["egress_configuration"]["egress_type"] == "DEFAULT"


@pytest.mark.parametrize(
    ("network", "field"),
    [
        ({"egress_configuration": {"egress_type": "VPC"}}, "vpc_connector_arn"),
        (
            {
                "egress_configuration": {
                    "egress_type": "DEFAULT",
                    "vpc_connector_arn": f"arn:aws:apprunner:us-east-1:{ACCOUNT}:"
                    f"vpcconnector/egress/1/{'a' * 32}",
                }
            },
            "vpc_connector_arn",
        ),
        (
            {"egress_configuration": {"egress_type": "VPC", "vpc_connector_arn": "nope"}},
            "vpc_connector_arn",
        ),
        ({"ip_address_type": "IPV6"}, "ip_address_type"),
    ],
)
async def test_a_bad_network_configuration_is_refused(network: dict[str, Any], field: str) -> None:
    unit = Unit()
    configs = image_source(IMAGE)
    configs.network = network
    with pytest.raises(InvalidRequest) as refused:
        await unit.services.create_service(ACCOUNT, "web-app", configs)
    assert any(v.field.endswith(field) for v in refused.value.violations)
    assert unit.db.commits == 0


async def test_egress_needs_an_active_connector_of_the_callers() -> None:
    unit = Unit()
    vpc = vpc_of(unit)
    theirs = await vpc.create_vpc_connector(OTHER_ACCOUNT, "egress", SUBNETS)
    mine = await vpc.create_vpc_connector(ACCOUNT, "egress", SUBNETS)
    await vpc.delete_vpc_connector(ACCOUNT, mine.arn)
    for arn, error in ((theirs.arn, InvalidRequest), (mine.arn, VpcConnectorNotActive)):
        configs = image_source(IMAGE)
        configs.network = egress(arn)
        with pytest.raises(error):
            await unit.services.create_service(ACCOUNT, "web-app", configs)
    assert unit.db.tables.services == {}


# ----- ingress connections -----


async def test_an_ingress_connection_links_a_private_service() -> None:
    unit = Unit()
    vpc = vpc_of(unit)
    service = await private_service(unit)
    connection = await vpc.create_vpc_ingress_connection(
        ACCOUNT, service.service_arn, "private-in", "vpc-1", "vpce-1", tags=[("a", "b")]
    )
    assert connection.status is VpcIngressConnectionStatus.AVAILABLE
    assert connection.domain_name.endswith(unit.settings.service_domain_for(unit.settings.region))
    parsed = parse_arn(connection.arn, "vpcingressconnection")
    assert parsed is not None and parsed.name == "private-in"
    assert await vpc.describe_vpc_ingress_connection(ACCOUNT, connection.arn) == connection
    updated = await vpc.update_vpc_ingress_connection(ACCOUNT, connection.arn, "vpc-2", "vpce-2")
    assert (updated.vpc_id, updated.vpc_endpoint_id) == ("vpc-2", "vpce-2")
    by_endpoint = await vpc.list_vpc_ingress_connections(ACCOUNT, "", "vpce-2", 0, "")
    assert [c.arn for c in by_endpoint.items] == [connection.arn]
    assert (await vpc.list_vpc_ingress_connections(ACCOUNT, "", "vpce-1", 0, "")).items == []
    by_service = await vpc.list_vpc_ingress_connections(ACCOUNT, service.service_arn, "", 0, "")
    assert [c.arn for c in by_service.items] == [connection.arn]
    deleted = await vpc.delete_vpc_ingress_connection(ACCOUNT, connection.arn)
    assert deleted.status is VpcIngressConnectionStatus.DELETED
    assert not any(k[0] == connection.arn for k in unit.db.tables.resource_tags)
    assert [e.type for e in unit.db.events if e.type.startswith("vpc_")] == [
        "vpc_ingress_connection.created",
        "vpc_ingress_connection.updated",
        "vpc_ingress_connection.deleted",
    ]
    with pytest.raises(VpcIngressConnectionNotFound):
        await vpc.update_vpc_ingress_connection(ACCOUNT, connection.arn, "vpc-3", "vpce-3")


async def test_an_ingress_connection_needs_a_private_live_service_and_one_per_service() -> None:
    unit = Unit()
    vpc = vpc_of(unit)
    public = await unit.running_service("public-app")
    with pytest.raises(InvalidState):
        await vpc.create_vpc_ingress_connection(
            ACCOUNT, public.service_arn, "in-1", "vpc-1", "vpce-1"
        )
    service = await private_service(unit)
    await vpc.create_vpc_ingress_connection(ACCOUNT, service.service_arn, "in-1", "vpc", "vpce")
    with pytest.raises(QuotaExceeded):
        await vpc.create_vpc_ingress_connection(ACCOUNT, service.service_arn, "in-2", "vpc", "vpce")
    other = await private_service(unit, "other-app")
    with pytest.raises(VpcIngressConnectionNameTaken):
        await vpc.create_vpc_ingress_connection(ACCOUNT, other.service_arn, "in-1", "vpc", "v")
    with pytest.raises(ServiceNotFound):
        await vpc.create_vpc_ingress_connection(
            OTHER_ACCOUNT, other.service_arn, "in-3", "vpc", "v"
        )
    with pytest.raises(InvalidRequest) as refused:
        await vpc.create_vpc_ingress_connection(ACCOUNT, other.service_arn, "in-3", "", "")
    assert {v.field for v in refused.value.violations} == {
        "ingress_vpc_configuration.vpc_id",
        "ingress_vpc_configuration.vpc_endpoint_id",
    }


async def test_a_service_with_an_available_ingress_connection_is_neither_deleted_nor_public() -> (
    None
):
    unit = Unit()
    vpc = vpc_of(unit)
    service = await private_service(unit)
    connection = await vpc.create_vpc_ingress_connection(
        ACCOUNT, service.service_arn, "in-1", "vpc-1", "vpce-1"
    )
    with pytest.raises(InvalidState) as refused:
        await unit.services.delete_service(ACCOUNT, service.service_arn)
    assert "VpcIngressConnections with a status of AVAILABLE" in refused.value.message
    with pytest.raises(InvalidState):
        await unit.services.update_service(
            ACCOUNT,
            service.service_arn,
            Configs(network={"ingress_configuration": {"is_publicly_accessible": True}}),
        )
    assert unit.db.service(service.service_id).status is ServiceStatus.RUNNING
    await vpc.delete_vpc_ingress_connection(ACCOUNT, connection.arn)
    await unit.services.delete_service(ACCOUNT, service.service_arn)
    await unit.run_jobs()
    assert unit.db.service(service.service_id).status is ServiceStatus.DELETED


async def test_an_ingress_connection_left_unavailable_goes_with_its_service() -> None:
    unit = Unit()
    vpc = vpc_of(unit)
    service = await private_service(unit)
    connection = await vpc.create_vpc_ingress_connection(
        ACCOUNT, service.service_arn, "in-1", "vpc-1", "vpce-1", tags=[("k", "v")]
    )
    # A connection that failed to be created does not hold its service back.
    unit.db.tables.vpc_ingress_connections[
        connection.connection_id
    ].status = VpcIngressConnectionStatus.FAILED_CREATION
    await unit.services.delete_service(ACCOUNT, service.service_arn)
    await unit.run_jobs()
    gone = await vpc.describe_vpc_ingress_connection(ACCOUNT, connection.arn)
    assert gone.status is VpcIngressConnectionStatus.DELETED
    assert unit.db.events[-2].type == "vpc_ingress_connection.deleted"
    assert unit.db.events[-2].payload["reason"] == "service_deleted"
    assert not any(k[0] == connection.arn for k in unit.db.tables.resource_tags)


async def test_an_ingress_connection_in_a_pending_state_cannot_be_updated_or_deleted() -> None:
    unit = Unit()
    vpc = vpc_of(unit)
    service = await private_service(unit)
    connection = await vpc.create_vpc_ingress_connection(
        ACCOUNT, service.service_arn, "in-1", "vpc-1", "vpce-1"
    )
    unit.db.tables.vpc_ingress_connections[
        connection.connection_id
    ].status = VpcIngressConnectionStatus.PENDING_UPDATE
    with pytest.raises(InvalidState):
        await vpc.update_vpc_ingress_connection(ACCOUNT, connection.arn, "vpc-2", "vpce-2")
    with pytest.raises(InvalidState):
        await vpc.delete_vpc_ingress_connection(ACCOUNT, connection.arn)


# ----- tags on the new resources -----


async def test_tags_work_on_connectors_and_ingress_connections_until_they_are_deleted() -> None:
    unit = Unit()
    vpc = vpc_of(unit)
    tags = TagCommands(unit.uow, unit.settings)
    connector = await vpc.create_vpc_connector(ACCOUNT, "egress", SUBNETS)
    service = await private_service(unit)
    ingress = await vpc.create_vpc_ingress_connection(
        ACCOUNT, service.service_arn, "in-1", "vpc-1", "vpce-1"
    )
    for arn in (connector.arn, ingress.arn):
        await tags.tag_resource(ACCOUNT, arn, [("env", "prod")])
        assert await tags.list_tags(ACCOUNT, arn) == {"env": "prod"}
        await tags.untag_resource(ACCOUNT, arn, ["env"])
        assert await tags.list_tags(ACCOUNT, arn) == {}
        await tags.tag_resource(ACCOUNT, arn, [("env", "prod")])
    await vpc.delete_vpc_connector(ACCOUNT, connector.arn)
    await vpc.delete_vpc_ingress_connection(ACCOUNT, ingress.arn)
    with pytest.raises(VpcConnectorNotFound):
        await tags.list_tags(ACCOUNT, connector.arn)
    with pytest.raises(VpcIngressConnectionNotFound):
        await tags.list_tags(ACCOUNT, ingress.arn)
    assert unit.db.tables.resource_tags == {}


async def test_an_update_keeps_the_members_it_leaves_out_and_a_bare_ingress_is_private() -> None:
    unit = Unit()
    service = await unit.running_service()
    await unit.services.update_service(
        ACCOUNT, service.service_arn, Configs(network={"ip_address_type": "DUAL_STACK"})
    )
    await unit.run_jobs()
    # App Runner's SDKs leave a false IsPubliclyAccessible out: an ingress configuration
    # without it is private.
    updated = await unit.services.update_service(
        ACCOUNT, service.service_arn, Configs(network={"ingress_configuration": {}})
    )
    assert updated.service.configuration is not None
    assert updated.service.configuration.network == {
        "egress_configuration": {"egress_type": "DEFAULT", "vpc_connector_arn": ""},
        "ingress_configuration": {"is_publicly_accessible": False},
        "ip_address_type": "DUAL_STACK",
    }


async def test_the_reaper_purges_vpc_tombstones_once_due() -> None:
    from servicecontrol_server.application.reaper import Reaper

    unit = Unit(settings=unit_settings(connection_tombstone_retention_seconds=60))
    vpc = vpc_of(unit)
    connector = await vpc.create_vpc_connector(ACCOUNT, "egress", SUBNETS)
    kept = await vpc.create_vpc_connector(ACCOUNT, "kept", SUBNETS)
    service = await private_service(unit)
    ingress = await vpc.create_vpc_ingress_connection(
        ACCOUNT, service.service_arn, "in-1", "vpc-1", "vpce-1"
    )
    await vpc.delete_vpc_connector(ACCOUNT, connector.arn)
    await vpc.delete_vpc_ingress_connection(ACCOUNT, ingress.arn)
    reaper = Reaper(unit.uow, unit.settings)
    counts = await reaper.reap_once()
    assert (counts["vpc_connectors"], counts["vpc_ingress_connections"]) == (0, 0)
    unit.clock.advance(61)
    counts = await reaper.reap_once()
    assert (counts["vpc_connectors"], counts["vpc_ingress_connections"]) == (1, 1)
    assert set(unit.db.tables.vpc_connectors) == {kept.connector_id}
    assert unit.db.tables.vpc_ingress_connections == {}
    assert [e.type for e in unit.db.events[-2:]] == [
        "vpc_connector.purged",
        "vpc_ingress_connection.purged",
    ]
    with pytest.raises(VpcConnectorNotFound):
        await vpc.describe_vpc_connector(ACCOUNT, connector.arn)
