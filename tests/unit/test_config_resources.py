"""The auto scaling and observability configuration use cases
(application/config_commands.py) on the fakes, and services that use them."""

from __future__ import annotations

import dataclasses

import pytest

from servicecontrol_server.application.results import Configs
from servicecontrol_server.domain.config_resources import (
    ConfigKind,
    ConfigStatus,
    ConfigurationInactive,
    ConfigurationInUse,
    default_config_id,
)
from servicecontrol_server.domain.errors import (
    InvalidPageToken,
    InvalidRequest,
    NotFound,
    QuotaExceeded,
)
from servicecontrol_server.domain.model import ServiceStatus

from .harness import ACCOUNT, IMAGE, OTHER_ACCOUNT, REGION, Unit, image_source

AS = ConfigKind.AUTO_SCALING
OBS = ConfigKind.OBSERVABILITY
PREFIX = f"arn:aws:apprunner:{REGION}:{ACCOUNT}:autoscalingconfiguration"
OBS_PREFIX = f"arn:aws:apprunner:{REGION}:{ACCOUNT}:observabilityconfiguration"
DEFAULT_ARN = f"{PREFIX}/DefaultConfiguration/1/{default_config_id(REGION, ACCOUNT)}"


async def test_a_second_create_of_a_name_makes_its_next_revision_with_app_runners_defaults() -> (
    None
):
    unit = Unit()
    first = await unit.configs.create_auto_scaling(ACCOUNT, "high-avail", tags=[("team", "web")])
    second = await unit.configs.create_auto_scaling(ACCOUNT, "high-avail", 50, 3, 10)

    assert (first.revision, second.revision) == (1, 2)
    assert first.settings == {"max_concurrency": 100, "min_size": 1, "max_size": 25}
    assert second.settings == {"max_concurrency": 50, "min_size": 3, "max_size": 10}
    assert first.arn.startswith(f"{PREFIX}/high-avail/1/") and len(first.arn.rsplit("/")[-1]) == 32
    assert first.status is ConfigStatus.ACTIVE and not first.is_default
    again = await unit.configs.describe(ACCOUNT, AS, first.arn)
    assert (again.latest, again.has_associated_service) == (False, False)
    assert (await unit.configs.describe(ACCOUNT, AS, f"{PREFIX}/high-avail")).arn == second.arn
    assert (await unit.configs.describe(ACCOUNT, AS, f"{PREFIX}/high-avail/1")).arn == first.arn
    assert unit.db.tables.resource_tags[(first.arn, "team")] == (ACCOUNT, "web")
    assert unit.db.event_types()[-2:] == ["auto_scaling_configuration.created"] * 2


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ((0, None, None), "max_concurrency"),
        ((201, None, None), "max_concurrency"),
        ((None, 0, None), "min_size"),
        ((None, 26, None), "min_size"),
        ((None, None, 26), "max_size"),
        ((None, 5, 4), "min_size"),
    ],
)
async def test_out_of_range_values_are_refused_and_change_nothing(
    values: tuple[int | None, int | None, int | None], field: str
) -> None:
    unit = Unit()
    with pytest.raises(InvalidRequest) as refused:
        await unit.configs.create_auto_scaling(ACCOUNT, "scaling", *values)
    assert [v.field for v in refused.value.violations] == [field]
    assert unit.db.tables.config_resources == {}


@pytest.mark.parametrize("name", ["", "abc", "x" * 33, "-leading", "has space"])
async def test_bad_names_are_refused(name: str) -> None:
    unit = Unit()
    with pytest.raises(InvalidRequest):
        await unit.configs.create_auto_scaling(ACCOUNT, name)
    with pytest.raises(InvalidRequest):
        await unit.configs.create_observability(ACCOUNT, name)


async def test_quotas_of_revisions_per_name_and_names_per_account() -> None:
    unit = Unit()
    for _ in range(5):
        await unit.configs.create_auto_scaling(ACCOUNT, "scaling")
    with pytest.raises(QuotaExceeded) as refused:
        await unit.configs.create_auto_scaling(ACCOUNT, "scaling")
    assert (refused.value.limit, refused.value.usage) == (5, 5)
    # DefaultConfiguration and "scaling" are 2 of the 10 names.
    for i in range(8):
        await unit.configs.create_auto_scaling(ACCOUNT, f"name-{i}")
    with pytest.raises(QuotaExceeded) as refused:
        await unit.configs.create_auto_scaling(ACCOUNT, "one-more")
    assert refused.value.reason == "AUTO_SCALING_CONFIGURATION_QUOTA_EXCEEDED"
    # A deleted revision frees its slot.
    await unit.configs.delete(ACCOUNT, AS, f"{PREFIX}/scaling")
    assert (await unit.configs.create_auto_scaling(ACCOUNT, "scaling")).revision == 5


async def test_every_account_has_the_built_in_default_revision() -> None:
    unit = Unit()
    page = await unit.configs.list(ACCOUNT, AS, "", True, 0, "")
    [default] = page.items
    assert (default.arn, default.name, default.revision) == (DEFAULT_ARN, "DefaultConfiguration", 1)
    assert default.is_default and default.latest and default.status is ConfigStatus.ACTIVE
    assert default.settings == {"max_concurrency": 100, "min_size": 1, "max_size": 25}
    # Another account's default is its own.
    [other] = (await unit.configs.list(OTHER_ACCOUNT, AS, "", True, 0, "")).items
    assert other.arn != default.arn and other.account_id == OTHER_ACCOUNT


async def test_listing_latest_only_all_revisions_by_name_and_in_pages() -> None:
    unit = Unit()
    for name in ("alpha", "alpha", "beta", "alpha"):
        await unit.configs.create_auto_scaling(ACCOUNT, name)
    latest = await unit.configs.list(ACCOUNT, AS, "", True, 0, "")
    assert [(c.name, c.revision) for c in latest.items] == [
        ("DefaultConfiguration", 1),
        ("alpha", 3),
        ("beta", 1),
    ]
    every = await unit.configs.list(ACCOUNT, AS, "alpha", False, 0, "")
    assert [c.revision for c in every.items] == [1, 2, 3]
    assert [c.latest for c in every.items] == [False, False, True]
    seen, token = [], ""
    while True:
        page = await unit.configs.list(ACCOUNT, AS, "", False, 2, token)
        seen += [(c.name, c.revision) for c in page.items]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == 5 and seen == sorted(seen)
    first = await unit.configs.list(ACCOUNT, AS, "", False, 2, "")
    with pytest.raises(InvalidPageToken):
        await unit.configs.list(ACCOUNT, AS, "alpha", False, 2, first.next_page_token)


async def test_deleting_a_revision_keeps_it_inactive_and_moves_latest_back() -> None:
    unit = Unit()
    one = await unit.configs.create_auto_scaling(ACCOUNT, "scaling", tags=[("a", "b")])
    two = await unit.configs.create_auto_scaling(ACCOUNT, "scaling", tags=[("a", "b")])

    deleted = await unit.configs.delete(ACCOUNT, AS, f"{PREFIX}/scaling")

    assert deleted.arn == two.arn and deleted.status is ConfigStatus.INACTIVE
    assert deleted.deleted_at is not None and not deleted.latest
    described = await unit.configs.describe(ACCOUNT, AS, two.arn)
    assert described.status is ConfigStatus.INACTIVE
    assert (await unit.configs.describe(ACCOUNT, AS, one.arn)).latest
    assert (two.arn, "a") not in unit.db.tables.resource_tags
    assert (one.arn, "a") in unit.db.tables.resource_tags
    with pytest.raises(ConfigurationInactive):
        await unit.configs.delete(ACCOUNT, AS, two.arn)
    with pytest.raises(NotFound):
        await unit.configs.describe(ACCOUNT, AS, f"{PREFIX}/scaling/2")
    assert unit.db.event_types()[-1] == "auto_scaling_configuration.deleted"


async def test_delete_all_revisions_needs_the_name_alone() -> None:
    unit = Unit()
    for _ in range(3):
        await unit.configs.create_auto_scaling(ACCOUNT, "scaling")
    with pytest.raises(InvalidRequest):
        await unit.configs.delete(ACCOUNT, AS, f"{PREFIX}/scaling/1", all_revisions=True)
    await unit.configs.delete(ACCOUNT, AS, f"{PREFIX}/scaling", all_revisions=True)
    page = await unit.configs.list(ACCOUNT, AS, "scaling", False, 0, "")
    assert page.items == []
    assert unit.db.event_types()[-3:] == ["auto_scaling_configuration.deleted"] * 3
    with pytest.raises(NotFound):
        await unit.configs.delete(ACCOUNT, AS, f"{PREFIX}/scaling", all_revisions=True)


async def test_the_default_moves_and_the_default_cannot_be_deleted() -> None:
    unit = Unit()
    with pytest.raises(ConfigurationInUse) as refused:
        await unit.configs.delete(ACCOUNT, AS, DEFAULT_ARN)
    assert "reserved" in refused.value.message
    mine = await unit.configs.create_auto_scaling(ACCOUNT, "mine")

    made = await unit.configs.update_default(ACCOUNT, f"{PREFIX}/mine")

    assert made.arn == mine.arn and made.is_default
    assert not (await unit.configs.describe(ACCOUNT, AS, DEFAULT_ARN)).is_default
    assert unit.db.event_types()[-1] == "auto_scaling_configuration.default_changed"
    # The built-in one is deletable now, and does not come back.
    await unit.configs.delete(ACCOUNT, AS, DEFAULT_ARN)
    names = [c.name for c in (await unit.configs.list(ACCOUNT, AS, "", True, 0, "")).items]
    assert names == ["mine"]
    # A new service uses the default.
    unit.push_image(IMAGE)
    created = await unit.services.create_service(ACCOUNT, "web-app", image_source())
    assert created.service.configuration is not None
    assert created.service.configuration.auto_scaling_configuration_arn == mine.arn


async def test_another_accounts_configuration_is_not_found() -> None:
    unit = Unit()
    mine = await unit.configs.create_auto_scaling(ACCOUNT, "mine")
    for call in (
        unit.configs.describe(OTHER_ACCOUNT, AS, mine.arn),
        unit.configs.delete(OTHER_ACCOUNT, AS, mine.arn),
        unit.configs.update_default(OTHER_ACCOUNT, mine.arn),
        unit.configs.list_services(OTHER_ACCOUNT, mine.arn, 0, ""),
    ):
        with pytest.raises(NotFound):
            await call
    with pytest.raises(InvalidRequest):
        await unit.configs.describe(ACCOUNT, AS, mine.arn.replace("autoscaling", "observability"))


async def test_a_service_uses_a_revision_which_then_cannot_be_deleted() -> None:
    unit = Unit()
    unit.push_image(IMAGE)
    scaling = await unit.configs.create_auto_scaling(ACCOUNT, "scaling")
    configs = dataclasses.replace(
        image_source(), auto_scaling_configuration_arn=f"{PREFIX}/scaling"
    )
    created = await unit.services.create_service(ACCOUNT, "web-app", configs)
    assert created.service.configuration is not None
    assert created.service.configuration.auto_scaling_configuration_arn == scaling.arn
    assert ("config_resources", scaling.config_id) in unit.uow.made[-1].locks
    await unit.run_jobs()

    assert (await unit.configs.describe(ACCOUNT, AS, scaling.arn)).has_associated_service
    page = await unit.configs.list_services(ACCOUNT, scaling.arn, 0, "")
    assert page.items == [created.service.service_arn]
    with pytest.raises(ConfigurationInUse) as refused:
        await unit.configs.delete(ACCOUNT, AS, scaling.arn)
    assert "used by one or more services" in refused.value.message

    await unit.services.delete_service(ACCOUNT, created.service.service_arn)
    await unit.run_jobs()
    assert unit.db.service(created.service.service_id).status is ServiceStatus.DELETED
    assert not (await unit.configs.describe(ACCOUNT, AS, scaling.arn)).has_associated_service
    await unit.configs.delete(ACCOUNT, AS, scaling.arn)


async def test_an_update_names_another_revision_applied_by_its_job() -> None:
    unit = Unit()
    service = await unit.running_service()
    scaling = await unit.configs.create_auto_scaling(ACCOUNT, "scaling")

    result = await unit.services.update_service(
        ACCOUNT, service.service_arn, Configs(auto_scaling_configuration_arn=scaling.arn)
    )

    # The answer shows the configuration being applied; the pending update holds it.
    assert result.service.configuration is not None
    assert result.service.configuration.auto_scaling_configuration_arn == scaling.arn
    with pytest.raises(ConfigurationInUse):
        await unit.configs.delete(ACCOUNT, AS, scaling.arn)
    await unit.run_jobs()
    stored = unit.db.tables.configurations[service.service_id]
    assert stored.auto_scaling_configuration_arn == scaling.arn


async def test_a_service_cannot_use_a_deleted_or_unknown_revision() -> None:
    unit = Unit()
    unit.push_image(IMAGE)
    gone = await unit.configs.create_auto_scaling(ACCOUNT, "gone")
    await unit.configs.delete(ACCOUNT, AS, gone.arn)
    for arn, error in (
        (gone.arn, ConfigurationInactive),
        (f"{PREFIX}/gone", NotFound),
        (f"{PREFIX}/never", NotFound),
        (f"arn:aws:apprunner:{REGION}:{OTHER_ACCOUNT}:autoscalingconfiguration/x-y-z", NotFound),
        ("not-an-arn", InvalidRequest),
    ):
        configs = dataclasses.replace(image_source(), auto_scaling_configuration_arn=arn)
        with pytest.raises(error):
            await unit.services.create_service(ACCOUNT, "web-app", configs)
    assert unit.db.tables.services == {}


async def test_observability_revisions_and_services_that_trace() -> None:
    unit = Unit()
    unit.push_image(IMAGE)
    with pytest.raises(InvalidRequest):
        await unit.configs.create_observability(ACCOUNT, "DefaultConfiguration")
    with pytest.raises(InvalidRequest):
        await unit.configs.create_observability(ACCOUNT, "tracing", "JAEGER")
    plain = await unit.configs.create_observability(ACCOUNT, "tracing")
    traced = await unit.configs.create_observability(ACCOUNT, "tracing", "AWSXRAY")
    assert (plain.revision, plain.settings) == (1, {})
    assert (traced.revision, traced.settings) == (2, {"trace_vendor": "AWSXRAY"})
    assert traced.arn.startswith(f"{OBS_PREFIX}/tracing/2/")

    with pytest.raises(InvalidRequest):
        await unit.services.create_service(
            ACCOUNT,
            "web-app",
            dataclasses.replace(image_source(), observability={"observability_enabled": True}),
        )
    created = await unit.services.create_service(
        ACCOUNT,
        "web-app",
        dataclasses.replace(
            image_source(),
            observability={
                "observability_enabled": True,
                "observability_configuration_arn": f"{OBS_PREFIX}/tracing",
            },
        ),
    )
    assert created.service.configuration is not None
    assert created.service.configuration.observability_configuration_arn == traced.arn
    await unit.run_jobs()
    with pytest.raises(ConfigurationInUse):
        await unit.configs.delete(ACCOUNT, OBS, traced.arn)
    await unit.configs.delete(ACCOUNT, OBS, plain.arn)
    # Turning it off frees the revision once the update is applied.
    await unit.services.update_service(
        ACCOUNT,
        created.service.service_arn,
        Configs(observability={"observability_enabled": False}),
    )
    await unit.run_jobs()
    assert (
        unit.db.tables.configurations[created.service.service_id].observability_configuration_arn
        is None
    )
    deleted = await unit.configs.delete(ACCOUNT, OBS, traced.arn)
    assert deleted.status is ConfigStatus.INACTIVE
    assert unit.db.event_types().count("observability_configuration.deleted") == 2
