"""Random and malformed requests to every RPC of the contract and every App Runner action
of a running server: never INTERNAL, UNKNOWN or HTTP 500, the server stays up, and a
refused call changes nothing in the database.

The CI size is small; SERVICECONTROL_FUZZ_EXAMPLES sets the examples per test (the long
run in docs/security.md uses 5000 for each endpoint), SERVICECONTROL_FUZZ_REPORT a file
for the tallies of answers."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import urllib3
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import service_control_pb2_grpc as api_grpc
from servicecontrol_server.api.aws_json.actions import ACTIONS
from tests.support.aws import service_model
from tests.support.fuzzing import (
    SERVICE,
    FuzzServer,
    fuzz_server,
    grpc_body,
    junk_json,
    nasty_strings,
    shape_value,
)
from tests.support.server import OTHER_ACCOUNT, harness_settings

# Examples per endpoint, shared out between its RPCs or actions.
EXAMPLES = int(os.environ.get("SERVICECONTROL_FUZZ_EXAMPLES", "200"))
SMOKE = "SERVICECONTROL_FUZZ_EXAMPLES" not in os.environ


def _fuzz(count: int) -> settings:
    return settings(
        max_examples=max(EXAMPLES // count, 5),
        deadline=None,
        database=None,
        # The CI size is the same examples every run; a long run explores.
        derandomize=SMOKE,
        suppress_health_check=list(HealthCheck),
    )


READ_ONLY_WAITS = {"WaitOperation", "WatchEvents"}
NEVER_GRPC = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
# A client deadline on a call that waits by design is not the server's answer.
STREAM_WAIT_SECONDS = 1.0


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory,
    s3_server: Any,
    postgres_admin_url: str,
    template_database: str,
) -> Iterator[FuzzServer]:
    import uuid

    import psycopg

    from servicecontrol_server.adapters.postgres.database import with_database

    name = f"fuzz_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    tmp = tmp_path_factory.mktemp("fuzz")
    values = harness_settings(
        with_database(postgres_admin_url, name),
        s3_server,
        tmp,
        # The limit would refuse most mutations before their checks; tested on its own.
        mutation_rate_per_second=0,
        rpc_deadline_seconds=10,
    )
    try:
        with fuzz_server(values) as running:
            yield running
            _still_up(running)
            _report(running)
    finally:
        with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _still_up(server: FuzzServer) -> None:
    with server.access.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=5
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        api_grpc.ServiceControlStub(channel).ListServices(
            api.ListServicesRequest(), metadata=server.access.metadata(), timeout=5
        )


def _report(server: FuzzServer) -> None:
    tallies = dict(sorted(server.outcomes.items()))
    print("fuzz outcomes:", json.dumps(tallies))
    target = os.environ.get("SERVICECONTROL_FUZZ_REPORT")
    if target:
        Path(target).write_text(json.dumps(tallies, indent=2) + "\n")


def _methods() -> list[str]:
    return sorted(SERVICE.methods_by_name)


def _call_grpc(server: FuzzServer, method: str, body: bytes, metadata: Any) -> grpc.StatusCode:
    path = f"/servicecontrol.v1.ServiceControl/{method}"
    descriptor = SERVICE.methods_by_name[method]
    channel = server.channel()
    try:
        if descriptor.server_streaming:
            stream = channel.unary_stream(path)(
                body, metadata=metadata, timeout=STREAM_WAIT_SECONDS
            )
            for _ in stream:
                break
            stream.cancel()
            return grpc.StatusCode.OK
        timeout = STREAM_WAIT_SECONDS * 3 if method == "WaitOperation" else 15
        channel.unary_unary(path)(body, metadata=metadata, timeout=timeout)
        return grpc.StatusCode.OK
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
        if code in NEVER_GRPC:
            raise AssertionError(f"{method}: {code}: {exc.details()}") from exc  # type: ignore[attr-defined]
        return code


def _metadata(server: FuzzServer) -> st.SearchStrategy[Any]:
    return st.sampled_from(
        [
            server.access.metadata(),
            server.access.metadata(OTHER_ACCOUNT),
            server.access.metadata("not-an-account"),
            (),
        ]
    )


@pytest.mark.parametrize("method", _methods())
def test_every_rpc_answers_random_requests_without_internal_errors(
    server: FuzzServer, method: str
) -> None:
    @_fuzz(len(_methods()))
    @given(grpc_body(method, server.seeds), _metadata(server))
    def check(body: bytes, metadata: Any) -> None:
        before = server.state_before_call()
        code = _call_grpc(server, method, body, metadata)
        after = server.database_state()
        server.outcomes[f"grpc {code.name}"] += 1
        if code == grpc.StatusCode.OK:
            return
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and method in READ_ONLY_WAITS:
            return
        assert after == before, f"{method} refused ({code}) wrote"

    check()


def _aws_request(server: FuzzServer, name: str) -> st.SearchStrategy[tuple[str | None, bytes]]:
    """A target (mostly the action's own) and a body: one the model describes with
    nasty values, unknown members, any JSON, bytes that are not JSON, or a giant one."""
    shape = service_model().operation_model(name).input_shape
    body = shape_value(shape, nasty_strings(server.seeds)) if shape is not None else st.just({})
    encoded = st.one_of(
        body.map(lambda b: json.dumps(b).encode()),
        body.map(lambda b: json.dumps(b).encode()),
        st.tuples(body, junk_json()).map(
            lambda p: json.dumps({**p[0], "Unexpected": p[1]}).encode()
        ),
        junk_json().map(lambda j: json.dumps(j).encode()),
        st.binary(max_size=200),
        st.sampled_from([b"{", b'{"ServiceArn": "\\ud800"}', b"[]", b"null", b"", b"{}" * 50]),
        st.just(b'{"A": "' + b"x" * (1024 * 1024 + 10) + b'"}'),
    )
    target = st.sampled_from(
        [
            *[f"AppRunner.{name}"] * 12,
            f"apprunner.{name}",
            "AppRunner.StartDeployment",
            "DynamoDB_20120810.ListTables",
            None,
        ]
    )
    return st.tuples(target, encoded)


@pytest.mark.parametrize("action", sorted(ACTIONS))
def test_every_app_runner_action_answers_random_requests_without_500(
    server: FuzzServer, action: str
) -> None:
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=20))

    @_fuzz(len(ACTIONS))
    # One request in ten is unsigned.
    @given(_aws_request(server, action), st.integers(0, 9).map(bool))
    def check(request: tuple[str | None, bytes], signed: bool) -> None:
        target, body = request
        headers = (
            server.access.aws_headers(target, body)
            if signed
            else {
                "Content-Type": "application/x-amz-json-1.0",
                **({"X-Amz-Target": target} if target else {}),
            }
        )
        before = server.state_before_call()
        response = http.request("POST", server.access.aws_url, body=body, headers=headers)
        after = server.database_state()
        server.outcomes[f"aws {response.status}"] += 1
        assert response.status < 500, (
            action,
            response.status,
            response.data[:300],
        )
        if response.status == 200:
            return
        answer = json.loads(response.data)
        server.outcomes[f"aws {answer['__type']}"] += 1
        assert answer["__type"] != "InternalServiceErrorException", answer
        assert after == before, f"{action} refused ({answer}) wrote"

    check()
