"""Isolation between regions: in another region served by the same server, the same
account's resources behave exactly as missing ones, in every RPC and every App Runner
action (the cross-account walk's cases, asked in the other region); names are free
there, and a region not served is refused."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_client import InvalidRequestException, ServiceControlClient
from tests.integration.test_isolation import (
    CONNECTION,
    DOMAIN,
    GRPC_CREATES,
    GRPC_EMPTY_LISTS,
    GRPC_NOT_FOUND,
    GRPC_SHARED_REGISTRY,
    VPC_INGRESS,
    Resources,
    _error,
    _normalised,
    _unchanged,
    first,  # noqa: F401 - the fixture, made in the default region
    walk_actions_from_elsewhere,
)
from tests.support import identity
from tests.support.aws import AppRunnerClient, Recorder
from tests.support.rpc import parse
from tests.support.server import Harness, harness_settings, running_harness

HOME, AWAY = "us-east-1", "eu-west-1"
SCCTL = Path(sys.executable).parent / "scctl"
REGION_KEY = "x-servicecontrol-region"


@pytest.fixture
async def harness(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    settings = harness_settings(database_url, s3_server, tmp_path, regions=f"{HOME},{AWAY}")
    async with running_harness(settings, tmp_path) as h:
        h.push_image()
        yield h


def _leaked(text: str, resources: Resources) -> bool:
    shown = (f":{HOME}:", DOMAIN, CONNECTION, VPC_INGRESS, resources.service_arn)
    return any(value in text for value in shown)


async def _not_found_leaks(
    harness: Harness,
    first: Resources,  # noqa: F811
    rpcs: dict[str, Any],
    away: tuple[tuple[str, str], ...],
    ids: tuple[str, ...],
) -> list[str]:
    leaks: list[str] = []
    for name, make in GRPC_NOT_FOUND.items():
        if name in ("DescribeOperation", "WaitOperation"):
            continue  # operation ids are not ARNs: an account's operations, any region
        method = rpcs[name]
        foreign = await _error(identity.call(harness.channel, method, make(first, True), away))
        missing = await _error(identity.call(harness.channel, method, make(first, False), away))
        assert missing is not None, f"{name}: a missing resource was found"
        if foreign is None:
            leaks.append(f"{name}: succeeded on another region's resource")
            continue
        if foreign.code != grpc.StatusCode.NOT_FOUND:
            leaks.append(f"{name}: {foreign.code} {foreign.message}")
        if _normalised(foreign, ids) != _normalised(missing, ids):
            leaks.append(f"{name}: {_normalised(foreign, ids)} != {_normalised(missing, ids)}")
    return leaks


async def test_every_rpc_treats_another_regions_resources_as_missing(
    harness: Harness,
    first: Resources,  # noqa: F811
) -> None:
    rpcs = identity.methods()
    covered = set(GRPC_NOT_FOUND) | set(GRPC_EMPTY_LISTS) | set(GRPC_CREATES) | GRPC_SHARED_REGISTRY
    assert covered == set(rpcs), f"RPCs without an isolation case: {set(rpcs) - covered}"
    away = (*harness.meta(), (REGION_KEY, AWAY))
    ids = (
        first.service_arn,
        first.missing_service_arn,
        first.operation_id,
        first.missing_operation_id,
        first.connection_arn,
        first.missing_connection_arn,
        first.scaling_arn,
        first.missing_scaling_arn,
        first.observability_arn,
        first.missing_observability_arn,
        *first.ids,
    )
    leaks = await _not_found_leaks(harness, first, rpcs, away, ids)
    for name, make_list in GRPC_EMPTY_LISTS.items():
        answers = await identity.call(
            harness.channel, rpcs[name], make_list(first), away, timeout=1.5
        )
        seen = " ".join(str(a) for a in answers)
        if _leaked(seen, first):
            leaks.append(f"{name}: answered {seen[:300]}")
    for name, make_create in GRPC_CREATES.items():
        answers = await identity.call(harness.channel, rpcs[name], make_create(first), away)
        if f":{HOME}:" in str(answers):
            leaks.append(f"{name}: answered {answers}")
    watched = await identity.call(
        harness.channel,
        rpcs["WatchEvents"],
        api.WatchEventsRequest(cursor="0", resource_arn=first.service_arn),
        away,
        timeout=1.5,
    )
    if watched:
        leaks.append(f"WatchEvents by ARN: {watched}")
    assert leaks == []
    await _unchanged(harness, first)


async def test_the_same_name_is_a_new_service_in_another_region(harness: Harness) -> None:
    home = await harness.running_service("web-app")
    away_meta = (*harness.meta(), (REGION_KEY, AWAY))
    away = await harness.stub.CreateService(
        api.CreateServiceRequest(
            service_name="web-app",
            source_configuration={"image_repository": {"image_identifier": "hello-web:1.0"}},
        ),
        metadata=away_meta,
    )
    assert away.service.service_arn.split(":")[3] == AWAY
    assert home.service_arn.split(":")[3] == HOME
    listed = await harness.stub.ListServices(api.ListServicesRequest(), metadata=away_meta)
    assert [s.service_arn for s in listed.services] == [away.service.service_arn]
    listed = await harness.stub.ListServices(api.ListServicesRequest(), metadata=harness.meta())
    assert [s.service_arn for s in listed.services] == [home.service_arn]
    # An operation is named by its id, not an ARN: it is found from any region.
    await harness.wait(away.operation_id)
    described = await harness.stub.DescribeService(
        api.DescribeServiceRequest(service_arn=away.service.service_arn), metadata=away_meta
    )
    assert described.service.status == described.service.RUNNING


async def test_a_region_not_served_is_invalid_argument_with_its_reason(harness: Harness) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await harness.stub.ListServices(
            api.ListServicesRequest(), metadata=(*harness.meta(), (REGION_KEY, "ap-south-1"))
        )
    error = parse(refused.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "REGION_NOT_SERVED"
    assert list(error.field_violations) == [REGION_KEY]
    assert error.metadata["servedRegions"] == f"{HOME}, {AWAY}"


async def test_every_action_treats_another_regions_resources_as_missing(
    harness: Harness,
    first: Resources,  # noqa: F811
) -> None:
    recorder = Recorder()
    aws = AppRunnerClient(harness.aws_port, recorder, harness.aws_credentials(), region=AWAY)
    await walk_actions_from_elsewhere(
        harness,
        first,
        aws,
        recorder,
        listed_leak=lambda answer: _leaked(answer, first),
        created_leak=lambda answer: f":{HOME}:" in answer,
    )


async def test_the_python_client_acts_in_the_region_it_is_given(harness: Harness) -> None:
    key = harness.meta()[0][1].removeprefix("Bearer ")
    target = f"127.0.0.1:{harness.port}"

    def in_two_regions() -> tuple[str, list[str]]:
        with ServiceControlClient(target, api_key=key, region=AWAY) as away:
            made = away.create_connection(connection_name="github", provider_type="GITHUB")
        with ServiceControlClient(target, api_key=key) as home:
            listed = home.list_connections()
        return made.connection.connection_arn, [c.connection_arn for c in listed.connections]

    arn, at_home = await asyncio.to_thread(in_two_regions)
    assert arn.split(":")[3] == AWAY
    assert at_home == []

    def unserved() -> None:
        with ServiceControlClient(target, api_key=key, region="ap-south-1") as client:
            client.list_connections()

    with pytest.raises(InvalidRequestException) as refused:
        await asyncio.to_thread(unserved)
    assert refused.value.reason == "REGION_NOT_SERVED"


async def test_scctl_acts_in_the_region_it_is_given(harness: Harness, tmp_path: Path) -> None:
    key = harness.meta()[0][1].removeprefix("Bearer ")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SCCTL_", "SERVICECONTROL_"))}
    env |= {
        "SCCTL_ENDPOINT": f"127.0.0.1:{harness.port}",
        "SCCTL_API_KEY": key,
        "SCCTL_CONFIG_FILE": str(tmp_path / "scctl.ini"),
    }

    async def scctl(*args: str) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            str(SCCTL),
            *args,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    code, out, err = await scctl(
        "connections",
        "create",
        "--connection-name",
        "github",
        "--provider-type",
        "GITHUB",
        "--region",
        AWAY,
    )
    assert code == 0, err
    arn = json.loads(out)["connection"]["connectionArn"]
    assert arn.split(":")[3] == AWAY
    code, out, err = await scctl("connections", "list")
    assert code == 0, err
    assert arn not in out
    code, out, err = await scctl("connections", "list", "--region", AWAY)
    assert code == 0, err
    assert arn in out
    code, out, err = await scctl("connections", "list", "--region", "ap-south-1")
    assert code != 0 and "REGION_NOT_SERVED" in err, err
