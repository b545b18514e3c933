"""Instance sizes as App Runner offers them: CPU and memory in either spelling (`1 vCPU` or
`1024`, `2 GB` or `2048`), only in the combinations App Runner allows, kept in the
spelling the request used; role ARNs and start commands as App Runner's model has them.
One rule in the use case, so both APIs answer alike."""

from __future__ import annotations

import itertools

import pytest

from servicecontrol_server.application.results import Configs
from servicecontrol_server.domain.configuration import validate_instance, validate_source
from servicecontrol_server.domain.errors import InvalidRequest

from .harness import ACCOUNT, Unit, image_source

# App Runner's supported configurations (vCPU → GB).
OFFERED = {
    ("0.25", "0.5"),
    ("0.25", "1"),
    ("0.5", "1"),
    ("1", "2"),
    ("1", "3"),
    ("1", "4"),
    ("2", "4"),
    ("2", "6"),
    ("4", "8"),
    ("4", "10"),
    ("4", "12"),
}
CPUS = {"0.25": "256", "0.5": "512", "1": "1024", "2": "2048", "4": "4096"}
MEMORIES = {
    "0.5": "512",
    "1": "1024",
    "2": "2048",
    "3": "3072",
    "4": "4096",
    "6": "6144",
    "8": "8192",
    "10": "10240",
    "12": "12288",
}


@pytest.mark.parametrize(
    ("vcpu", "gb"), list(itertools.product(CPUS, MEMORIES)), ids=lambda v: str(v)
)
def test_only_the_offered_pairs_in_either_spelling(vcpu: str, gb: str) -> None:
    for cpu, memory in itertools.product((f"{vcpu} vCPU", CPUS[vcpu]), (f"{gb} GB", MEMORIES[gb])):
        violations = validate_instance({"cpu": cpu, "memory": memory})
        if (vcpu, gb) in OFFERED:
            assert violations == [], (cpu, memory)
        else:
            assert [v.field for v in violations] == ["instance_configuration.memory"]
            assert f"not offered with {vcpu} vCPU" in violations[0].description


def test_a_size_left_out_is_the_default_and_must_pair_with_the_other() -> None:
    assert validate_instance({}) == []
    assert validate_instance({"memory": "4 GB"}) == []  # with the default 1 vCPU
    (refused,) = validate_instance({"cpu": "4 vCPU"})  # with the default 2 GB
    assert (
        refused.description == "2 GB is not offered with 4 vCPU, which takes 8 GB, 10 GB or 12 GB"
    )


def test_role_arns_and_start_commands_follow_app_runners_model() -> None:
    good = "arn:aws:iam::111122223333:role/service-role/AppRunnerECRAccessRole"
    assert validate_instance({"instance_role_arn": good}) == []
    assert [v.field for v in validate_instance({"instance_role_arn": "admin"})] == [
        "instance_configuration.instance_role_arn"
    ]
    image = {"image_repository": {"image_identifier": "shop/web:v1"}}
    refused = validate_source(
        {
            **image,
            "authentication_configuration": {"access_role_arn": "arn:aws:s3:::bucket"},
        }
    )
    assert [v.field for v in refused] == [
        "source_configuration.authentication_configuration.access_role_arn"
    ]
    one_line = {
        "image_repository": {
            "image_identifier": "shop/web:v1",
            "image_configuration": {"start_command": "serve\nmore"},
        }
    }
    assert [v.field for v in validate_source(one_line)] == [
        "source_configuration.image_repository.image_configuration.start_command"
    ]


async def test_the_use_case_refuses_a_pair_not_offered_and_keeps_the_spelling_used() -> None:
    unit = Unit()
    unit.push_image()
    source = image_source().source
    with pytest.raises(InvalidRequest) as refused:
        await unit.services.create_service(
            ACCOUNT, "web-app", Configs(source=source, instance={"cpu": "4096", "memory": "2048"})
        )
    assert [v.field for v in refused.value.violations] == ["instance_configuration.memory"]
    created = await unit.services.create_service(
        ACCOUNT, "web-app", Configs(source=source, instance={"cpu": "4096", "memory": "12 GB"})
    )
    assert created.service.configuration is not None
    assert created.service.configuration.instance["cpu"] == "4096"
    assert created.service.configuration.instance["memory"] == "12 GB"
    await unit.run_jobs()
    with pytest.raises(InvalidRequest):
        await unit.services.update_service(
            ACCOUNT,
            created.service.service_arn,
            Configs(instance={"cpu": "0.5 vCPU", "memory": "2 GB"}),
        )
