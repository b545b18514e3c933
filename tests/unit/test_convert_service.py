"""A service converts to the same message as the plain conversion gives (timestamps through
`Timestamp.FromDatetime`, each stored configuration through protobuf's JSON parser, the
network with App Runner's defaults), whatever the memos hold: the listed page's shortcuts
(timestamps by arithmetic, one memo key per service) change nothing a caller sees."""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from google.protobuf import json_format

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import vpc_pb2
from servicecontrol_server.api import convert
from servicecontrol_server.domain.model import Service, ServiceConfiguration, ServiceStatus
from servicecontrol_server.domain.vpc import default_network, normalized_network


def plain(svc: Service) -> pb.Service:
    """The conversion without shortcuts."""
    out = pb.Service(
        service_name=svc.service_name,
        service_id=svc.service_id,
        service_arn=svc.service_arn,
        service_url=svc.service_url,
        status=pb.Service.Status.Value(svc.status.value),
        etag=svc.etag,
        current_operation_id=svc.current_operation_id or "",
        status_message=svc.status_message,
    )
    for name in ("created_at", "updated_at", "deleted_at", "purge_at"):
        value = getattr(svc, name)
        if value is not None:
            getattr(out, name).FromDatetime(value)

    def parse(data: dict[str, Any], message: Any) -> None:
        json_format.ParseDict(data, message, ignore_unknown_fields=True)

    config = svc.configuration
    if config is not None:
        parse(config.source, out.source_configuration)
        parse(config.instance, out.instance_configuration)
        parse(config.health_check, out.health_check_configuration)
        out.auto_scaling_configuration_arn = config.auto_scaling_configuration_arn or ""
        out.observability_configuration_arn = config.observability_configuration_arn or ""
    network = config.network if config is not None else None
    parsed = vpc_pb2.NetworkConfiguration()
    parse(normalized_network(network) if network else default_network(), parsed)
    out.network_configuration.CopyFrom(parsed)
    return out


AT = datetime(2026, 12, 1, 12, 30, 15, 123456, tzinfo=UTC)
CONFIGURATION = ServiceConfiguration(
    source={
        "image_repository": {
            "image_identifier": "shop/web:v1",
            "image_repository_type": "ECR",
            "image_configuration": {"port": "8080", "runtime_environment_variables": {"A": "1"}},
        },
        "auto_deployments_enabled": True,
    },
    instance={"cpu": "1024", "memory": "2048"},
    health_check={"protocol": "HTTP", "path": "/", "interval": 5, "healthy_threshold": 1},
    image_identifier="shop/web:v1",
    image_bucket="images",
    image_prefix="services/s1/",
    auto_scaling_configuration_arn="arn:asc/1",
    observability_configuration_arn=None,
)


def service(**changes: Any) -> Service:
    base = Service(
        service_id="s1",
        account_id="100000000001",
        region="us-east-1",
        service_name="web",
        service_arn="arn:aws:apprunner:us-east-1:100000000001:service/web/s1",
        service_url="x.example",
        status=ServiceStatus.RUNNING,
        version=4,
        created_at=AT,
        updated_at=AT + timedelta(minutes=5),
        configuration=copy.deepcopy(CONFIGURATION),
    )
    return dataclasses.replace(base, **changes)


def configured(**changes: Any) -> ServiceConfiguration:
    return dataclasses.replace(copy.deepcopy(CONFIGURATION), **changes)


CASES: dict[str, Service] = {
    "running": service(),
    "no configuration record": service(configuration=None),
    "deleted, with its tombstone's times": service(
        status=ServiceStatus.DELETED,
        deleted_at=AT + timedelta(hours=1),
        purge_at=AT + timedelta(days=7, microseconds=1),
        current_operation_id="6f1c2a0e-0000-4000-8000-000000000001",
        status_message="deleted",
    ),
    "naive times are UTC": service(
        created_at=datetime(2026, 1, 2, 3, 4, 5, 6), updated_at=datetime(2026, 1, 2, 3, 4, 6)
    ),
    "another offset": service(created_at=AT.astimezone(timezone(timedelta(hours=-7, minutes=-30)))),
    "before the epoch": service(
        created_at=datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
        updated_at=datetime(1970, 1, 1, tzinfo=UTC),
    ),
    "a private network": service(
        configuration=configured(
            network={
                "egress_configuration": {"egress_type": "VPC", "vpc_connector_arn": "arn:vc/1"},
                "ingress_configuration": {"is_publicly_accessible": False},
            }
        )
    ),
    "a partial network": service(configuration=configured(network={"ingress_configuration": {}})),
    "empty configurations and unknown keys": service(
        configuration=configured(source={}, instance={"not_a_field": 1}, health_check={})
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_service_converts_as_the_plain_conversion_does(name: str) -> None:
    svc = CASES[name]
    expected = plain(svc)
    for _ in range(2):  # the memos empty, then holding it
        got = convert.service(svc)
        assert got == expected
        assert got.SerializeToString(deterministic=True) == expected.SerializeToString(
            deterministic=True
        )
        present = [field.name for field, _ in got.ListFields()]
        assert present == [field.name for field, _ in expected.ListFields()]


def test_services_sharing_configurations_do_not_share_messages() -> None:
    first = convert.service(CASES["running"])
    first.source_configuration.image_repository.image_identifier = "changed"
    first.network_configuration.ingress_configuration.is_publicly_accessible = False
    second = convert.service(CASES["running"])
    assert second == plain(CASES["running"])


def test_the_configuration_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(convert, "_CONFIGURED", {})
    monkeypatch.setattr(convert, "_CONFIGURED_MAX", 3)
    for i in range(10):
        svc = service(configuration=configured(instance={"cpu": str(256 * (i + 1))}))
        assert convert.service(svc) == plain(svc)
        assert len(convert._CONFIGURED) <= 3


def test_a_timestamp_is_set_as_from_datetime_sets_it() -> None:
    for value in (AT, datetime(1969, 7, 20, 20, 17, 40, 999999), datetime(1970, 1, 1, tzinfo=UTC)):
        expected = convert.timestamp_pb2.Timestamp()
        expected.FromDatetime(value)
        assert convert.ts(value) == expected
