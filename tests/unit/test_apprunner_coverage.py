"""docs/apprunner.md's coverage table against botocore's `apprunner` model (every action,
37), the App Runner action table and the gRPC contract; and every action the table says
is not served answers UnknownOperationException, as an AWS endpoint does."""

from __future__ import annotations

import re
from pathlib import Path

import botocore.session
from aiohttp.test_utils import TestClient, TestServer

from servicecontrol.v1 import service_control_pb2
from servicecontrol_server.api.aws_json.actions import ACTIONS
from servicecontrol_server.api.aws_json.http import create_app
from tests.unit.test_error_translation import Authenticated, outage, use_cases

ROOT = Path(__file__).resolve().parents[2]
RPCS = {m.name for m in service_control_pb2.DESCRIPTOR.services_by_name["ServiceControl"].methods}


def model_actions() -> set[str]:
    model = botocore.session.get_session().get_service_model("apprunner")
    return set(model.operation_names)


def documented() -> dict[str, tuple[bool, str]]:
    """The table: action -> (served, gRPC twin or "")."""
    rows = {}
    for line in (ROOT / "docs" / "apprunner.md").read_text().splitlines():
        match = re.fullmatch(r"\| ([A-Za-z]+) \| (yes|no) \| ([A-Za-z]+|—) \|", line)
        if match:
            twin = match.group(3)
            rows[match.group(1)] = (match.group(2) == "yes", "" if twin == "—" else twin)
    return rows


def test_the_table_lists_every_action_of_the_model() -> None:
    assert len(model_actions()) == 37
    assert set(documented()) == model_actions()


def test_served_actions_are_the_action_table_and_have_their_grpc_twin() -> None:
    table = documented()
    served = {name for name, (yes, _) in table.items() if yes}
    assert served == set(ACTIONS)
    assert set(ACTIONS) <= model_actions()
    for name, (yes, twin) in table.items():
        assert bool(twin) == yes, name
        if twin:
            assert twin in RPCS, f"{name}: no RPC {twin} in the contract"
    count = re.search(r"Served: (\d+) of 37", (ROOT / "docs" / "apprunner.md").read_text())
    assert count is not None and int(count.group(1)) == len(served)


async def test_actions_not_served_answer_unknown_operation() -> None:
    cases, failing = use_cases(outage)
    app = create_app(cases, Authenticated())
    not_served = sorted(name for name, (yes, _) in documented().items() if not yes)
    async with TestClient(TestServer(app)) as client:
        for name in not_served:
            response = await client.post(
                "/",
                data=b"{}",
                headers={
                    "X-Amz-Target": f"AppRunner.{name}",
                    "Content-Type": "application/x-amz-json-1.0",
                },
            )
            body = await response.json(content_type=None)
            assert (response.status, body["__type"]) == (400, "UnknownOperationException"), name
    # Refused before any use case runs.
    assert failing.calls == []
