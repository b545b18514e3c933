"""Regions on the fakes: each regional resource belongs to the region of the request
that made it (application/regions.py); names, listings, counts, quotas and the built-in
default configuration are per account and region, and an ARN of another region is not
found."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import grpc
import pytest

from servicecontrol_server.api.region import RegionInterceptor
from servicecontrol_server.application.regions import in_region, request_region, served_region
from servicecontrol_server.application.tag_commands import TagCommands
from servicecontrol_server.application.vpc_commands import VpcCommands
from servicecontrol_server.domain.config_resources import ConfigKind
from servicecontrol_server.domain.errors import (
    ConnectionNameTaken,
    ConnectionNotFound,
    InvalidPageToken,
    NotFound,
    QuotaExceeded,
    RegionNotServed,
    ServiceNameTaken,
    ServiceNotFound,
)
from servicecontrol_server.domain.model import ServiceStatus
from servicecontrol_server.settings import Settings

from .harness import ACCOUNT, IMAGE, REGION, Unit, image_source, unit_settings

OTHER = "eu-west-1"


def two_regions() -> Unit:
    return Unit(settings=unit_settings(regions=f"{REGION},{OTHER}"))


async def test_the_same_service_name_lives_once_in_each_region_and_lists_stay_apart() -> None:
    unit = two_regions()
    unit.push_image(IMAGE)
    home = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    with in_region(OTHER):
        away = await unit.services.create_service(ACCOUNT, "web-app", image_source())
        with pytest.raises(ServiceNameTaken):
            await unit.services.create_service(ACCOUNT, "web-app", image_source())
        listed = [s.service_arn for s in (await unit.services.list_services(ACCOUNT, 0, "")).items]
    # The worker runs outside any request: each job acts on its service, whatever its region.
    await unit.run_jobs()
    for made in (home, away):
        assert unit.db.service(made.service.service_id).status is ServiceStatus.RUNNING
    assert home.service.service_arn.split(":")[3] == REGION
    assert away.service.service_arn.split(":")[3] == OTHER
    assert away.service.region == OTHER
    assert listed == [away.service.service_arn]
    at_home = (await unit.services.list_services(ACCOUNT, 0, "")).items
    assert [s.service_arn for s in at_home] == [home.service.service_arn]
    # An ARN of the other region is not found, as another account's is.
    with pytest.raises(ServiceNotFound) as refused:
        await unit.services.describe_service(ACCOUNT, away.service.service_arn)
    assert f"the ARN names region {OTHER}, but this call acts in region {REGION}" in str(
        refused.value
    )
    with in_region(OTHER):
        described = await unit.services.describe_service(ACCOUNT, away.service.service_arn)
        deleting = await unit.services.delete_service(ACCOUNT, away.service.service_arn)
    assert described.service_id == away.service.service_id
    await unit.run_jobs()
    assert unit.db.service(deleting.service.service_id).status is ServiceStatus.DELETED
    assert unit.image_keys(away.service.service_id) == []
    assert unit.db.service(home.service.service_id).status is ServiceStatus.RUNNING


async def test_a_service_url_names_the_region_its_service_lives_in() -> None:
    unit = two_regions()
    unit.push_image(IMAGE)
    home = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    with in_region(OTHER):
        away = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    assert home.service.service_url.endswith(f".{REGION}.servicecontrol.local")
    assert away.service.service_url.endswith(f".{OTHER}.servicecontrol.local")
    # A domain without the placeholder is one domain for every region.
    unit = Unit(settings=unit_settings(regions=f"{REGION},{OTHER}", service_domain="apps.test"))
    unit.push_image(IMAGE)
    with in_region(OTHER):
        away = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    label, domain = away.service.service_url.split(".", 1)
    assert len(label) == 10 and domain == "apps.test"


async def test_the_service_quota_counts_per_region() -> None:
    unit = two_regions()  # a quota of 3 services
    unit.push_image(IMAGE)
    for i in range(3):
        await unit.services.create_service(ACCOUNT, f"home-{i}", image_source())
    with pytest.raises(QuotaExceeded) as refused:
        await unit.services.create_service(ACCOUNT, "home-3", image_source())
    assert f"in {REGION}" in refused.value.subject
    with in_region(OTHER):
        for i in range(3):
            await unit.services.create_service(ACCOUNT, f"away-{i}", image_source())
        with pytest.raises(QuotaExceeded) as refused:
            await unit.services.create_service(ACCOUNT, "away-3", image_source())
    assert f"in {OTHER}" in refused.value.subject


async def test_connections_are_named_counted_and_listed_per_region() -> None:
    unit = two_regions()  # a quota of 2 connections
    await unit.connections.create_connection(ACCOUNT, "github-one", "GITHUB")
    await unit.connections.create_connection(ACCOUNT, "github-two", "GITHUB")
    with pytest.raises(QuotaExceeded):
        await unit.connections.create_connection(ACCOUNT, "github-three", "GITHUB")
    with in_region(OTHER):
        away = await unit.connections.create_connection(ACCOUNT, "github-one", "GITHUB")
        with pytest.raises(ConnectionNameTaken):
            await unit.connections.create_connection(ACCOUNT, "github-one", "GITHUB")
        page = await unit.connections.list_connections(ACCOUNT, "", 0, "")
    assert [c.connection_arn for c in page.items] == [away.connection_arn]
    with pytest.raises(ConnectionNotFound):
        await unit.connections.delete_connection(ACCOUNT, away.connection_arn)


async def test_each_region_has_its_own_built_in_default_configuration() -> None:
    unit = two_regions()
    [home] = (await unit.configs.list(ACCOUNT, ConfigKind.AUTO_SCALING, "", True, 0, "")).items
    with in_region(OTHER):
        [away] = (await unit.configs.list(ACCOUNT, ConfigKind.AUTO_SCALING, "", True, 0, "")).items
        mine = await unit.configs.create_auto_scaling(ACCOUNT, "scaling")
        await unit.configs.update_default(ACCOUNT, mine.arn)
        defaults = [
            c.arn
            for c in (
                await unit.configs.list(ACCOUNT, ConfigKind.AUTO_SCALING, "", True, 0, "")
            ).items
            if c.is_default
        ]
    assert home.name == away.name == "DefaultConfiguration"
    assert home.arn.split(":")[3] == REGION and away.arn.split(":")[3] == OTHER
    assert defaults == [mine.arn]
    # Moving the default in one region leaves the other's where it was.
    [still] = (await unit.configs.list(ACCOUNT, ConfigKind.AUTO_SCALING, "", True, 0, "")).items
    assert still.arn == home.arn and still.is_default
    with pytest.raises(NotFound):
        await unit.configs.describe(ACCOUNT, ConfigKind.AUTO_SCALING, mine.arn)


async def test_configuration_name_quotas_count_per_region() -> None:
    unit = two_regions()
    # DefaultConfiguration is 1 of the 10 names in each region.
    for i in range(9):
        await unit.configs.create_auto_scaling(ACCOUNT, f"name-{i}")
    with pytest.raises(QuotaExceeded):
        await unit.configs.create_auto_scaling(ACCOUNT, "one-more")
    with in_region(OTHER):
        made = await unit.configs.create_auto_scaling(ACCOUNT, "one-more")
    assert made.revision == 1 and made.arn.split(":")[3] == OTHER


async def test_vpc_connectors_and_tags_belong_to_their_region() -> None:
    unit = two_regions()
    vpc = VpcCommands(unit.uow, unit.settings)
    tags = TagCommands(unit.uow, unit.settings)
    home = await vpc.create_vpc_connector(ACCOUNT, "egress", ["subnet-1"], tags=[("team", "a")])
    with in_region(OTHER):
        away = await vpc.create_vpc_connector(ACCOUNT, "egress", ["subnet-1"])
        assert away.revision == 1
        listed = [c.arn for c in (await vpc.list_vpc_connectors(ACCOUNT, 0, "")).items]
        with pytest.raises(NotFound):
            await tags.list_tags(ACCOUNT, home.arn)
    assert listed == [away.arn]
    assert await tags.list_tags(ACCOUNT, home.arn) == {"team": "a"}


async def test_a_page_token_of_one_region_is_refused_in_another() -> None:
    unit = two_regions()
    await unit.connections.create_connection(ACCOUNT, "github-one", "GITHUB")
    await unit.connections.create_connection(ACCOUNT, "github-two", "GITHUB")
    page = await unit.connections.list_connections(ACCOUNT, "", 1, "")
    assert page.next_page_token
    with in_region(OTHER), pytest.raises(InvalidPageToken):
        await unit.connections.list_connections(ACCOUNT, "", 1, page.next_page_token)


def test_the_request_region_is_the_default_outside_a_request_and_unknown_ones_are_refused() -> None:
    settings = unit_settings(regions=f"{REGION},{OTHER}")
    assert request_region(settings) == REGION
    with in_region(OTHER):
        assert request_region(settings) == OTHER
    assert served_region(settings, "", "x-servicecontrol-region") == REGION
    assert served_region(settings, OTHER, "x-servicecontrol-region") == OTHER
    with pytest.raises(RegionNotServed) as refused:
        served_region(settings, "ap-south-1", "x-servicecontrol-region")
    assert refused.value.reason == "REGION_NOT_SERVED"
    assert refused.value.violations[0].field == "x-servicecontrol-region"
    assert refused.value.metadata["servedRegions"] == f"{REGION}, {OTHER}"


@pytest.mark.parametrize(
    ("values", "served", "default"),
    [
        ({}, ("us-east-1",), "us-east-1"),
        ({"region": "eu-west-1"}, ("eu-west-1",), "eu-west-1"),
        ({"regions": "eu-west-1, us-east-1"}, ("eu-west-1", "us-east-1"), "eu-west-1"),
        ({"regions": "eu-west-1,us-east-1", "region": "eu-west-1"}, None, "eu-west-1"),
    ],
)
def test_the_regions_setting(
    values: dict[str, str], served: tuple[str, ...] | None, default: str
) -> None:
    settings = Settings(**values)  # type: ignore[arg-type]
    assert settings.region == default
    if served is not None:
        assert settings.served_regions == served


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"regions": "us-east-1,mars-1"}, "'mars-1' is not a region name"),
        ({"region": "US_EAST"}, "'US_EAST' is not a region name"),
        ({"regions": "us-east-1,us-east-1"}, "names a region twice"),
        (
            {"regions": "eu-west-1,us-east-1", "region": "us-east-1"},
            "its first region is the default",
        ),
    ],
)
def test_a_bad_regions_setting_is_refused(values: dict[str, str], said: str) -> None:
    with pytest.raises(ValueError, match=said):
        Settings(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("domain", "said"),
    [
        ("{region}.{account}.example.com", "the only placeholder it may hold is {region}"),
        ("localhost", "is not a domain name"),
        ("bad_label.example.com", "is not a domain name"),
        ("", "is not a domain name"),
    ],
)
def test_a_bad_service_domain_is_refused(domain: str, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        Settings(service_domain=domain)


def test_the_service_domain_is_kept_in_one_spelling() -> None:
    settings = Settings(service_domain="Apps.{region}.Example.COM.")
    assert settings.service_domain_for("eu-west-1") == "apps.eu-west-1.example.com"


class _Call:
    """The server's side of one call, as far as the region interceptor reads it."""

    def __init__(self, region: str) -> None:
        self.metadata = (("x-servicecontrol-region", region),) if region else ()
        self.aborted: object = None

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    async def abort_with_status(self, status: object) -> None:
        self.aborted = status
        raise grpc.aio.AbortError()


async def _intercepted(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    interceptor = RegionInterceptor(unit_settings(regions=f"{REGION},{OTHER}"))

    async def continuation(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return handler

    details = SimpleNamespace(
        method="/servicecontrol.v1.ServiceControl/Any", invocation_metadata=()
    )
    return await interceptor.intercept_service(continuation, details)


async def test_every_call_shape_runs_in_the_region_its_metadata_names() -> None:
    settings = unit_settings(regions=f"{REGION},{OTHER}")

    async def unary(request: object, context: object) -> str:
        return request_region(settings)

    async def server_stream(request: object, context: object) -> AsyncIterator[str]:
        yield request_region(settings)
        yield request_region(settings)

    async def client_stream(requests: object, context: object) -> str:
        return request_region(settings)

    for region, expected in ((OTHER, OTHER), ("", REGION)):
        once = await _intercepted(grpc.unary_unary_rpc_method_handler(unary))
        assert await once.unary_unary(None, _Call(region)) == expected
        streamed = await _intercepted(grpc.unary_stream_rpc_method_handler(server_stream))
        assert [r async for r in streamed.unary_stream(None, _Call(region))] == [expected] * 2
        gathered = await _intercepted(grpc.stream_unary_rpc_method_handler(client_stream))
        assert await gathered.stream_unary(iter(()), _Call(region)) == expected
        assert gathered.request_streaming and not gathered.response_streaming


async def test_a_call_for_a_region_not_served_never_reaches_its_behaviour() -> None:
    reached: list[str] = []

    async def unary(request: object, context: object) -> None:
        reached.append("unary")

    async def server_stream(request: object, context: object) -> AsyncIterator[None]:
        reached.append("stream")
        yield None

    once = await _intercepted(grpc.unary_unary_rpc_method_handler(unary))
    refused = _Call("ap-south-1")
    with pytest.raises(grpc.aio.AbortError):
        await once.unary_unary(None, refused)
    assert refused.aborted is not None
    streamed = await _intercepted(grpc.unary_stream_rpc_method_handler(server_stream))
    with pytest.raises(grpc.aio.AbortError):
        _ = [r async for r in streamed.unary_stream(None, _Call("ap-south-1"))]
    assert reached == []
