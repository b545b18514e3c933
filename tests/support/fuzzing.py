"""Fuzzing a running server: the server in a thread of its own (so that hypothesis drives
blocking clients from the test's thread), strategies that build requests for any RPC
from the contract's descriptors and for any App Runner action from botocore's model,
and a fingerprint of the whole database to prove that a refused call changed nothing."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import psycopg
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol.v1 import service_control_pb2_grpc as api_grpc
from servicecontrol.v1 import vpc_pb2
from servicecontrol_server.adapters.postgres.database import libpq_url
from servicecontrol_server.api.aws_json import start_aws_http
from servicecontrol_server.api.server import start_grpc
from servicecontrol_server.bootstrap import build
from servicecontrol_server.settings import Settings
from tests.support.access import ApiAccess, api_access
from tests.support.server import ACCOUNT, OTHER_ACCOUNT, bearer, create_test_keys

SERVICE = api.DESCRIPTOR.services_by_name["ServiceControl"]


@dataclass
class Seeds:
    """Real values from the server under test, to mix into random ones."""

    service_arns: list[str] = field(default_factory=list)
    operation_ids: list[str] = field(default_factory=list)
    page_tokens: list[str] = field(default_factory=list)
    connection_arns: list[str] = field(default_factory=list)
    vpc_connector_arns: list[str] = field(default_factory=list)
    vpc_ingress_arns: list[str] = field(default_factory=list)


@dataclass
class FuzzServer:
    access: ApiAccess
    database_url: str
    seeds: Seeds
    outcomes: Counter[str] = field(default_factory=Counter)
    _db: psycopg.Connection[Any] | None = None
    _last: dict[str, str] | None = None
    _channel: grpc.Channel | None = None

    def channel(self) -> grpc.Channel:
        if self._channel is None:
            self._channel = self.access.channel()
        return self._channel

    def database_state(self) -> dict[str, str]:
        """The fingerprint of the database now. Nothing but requests changes it, so the
        state after one call is the state before the next."""
        if self._db is None:
            self._db = psycopg.connect(libpq_url(self.database_url), autocommit=True)
        self._last = fingerprint(self._db)
        return self._last

    def state_before_call(self) -> dict[str, str]:
        return self._last if self._last is not None else self.database_state()

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
        if self._db is not None:
            self._db.close()


@contextlib.contextmanager
def fuzz_server(settings: Settings) -> Iterator[FuzzServer]:
    """The gRPC and App Runner endpoints on real PostgreSQL, without workers, relay or
    reaper: nothing but a request changes the database."""
    ready = threading.Event()
    state: dict[str, Any] = {}
    loop = asyncio.new_event_loop()

    async def main() -> None:
        app = await build(settings, settings.database_url, migrate=False)
        server, port, _ = await start_grpc(app.use_cases, settings.grpc_listen)
        runner, aws_port = await start_aws_http(app.use_cases, settings.aws_listen)
        stop = asyncio.Event()
        state.update(port=port, aws_port=aws_port, stop=stop)
        try:
            keys = await create_test_keys(app)
            state["tokens"] = {account: key.token for account, key in keys.items()}
            state["seeds"] = await _seed(port, state["tokens"][ACCOUNT])
        except BaseException as exc:
            state["error"] = exc
        ready.set()
        await stop.wait()
        await server.stop(0.5)
        await runner.cleanup()
        await app.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(60), "the fuzz server did not start"
    if "error" in state:
        raise state["error"]
    running = FuzzServer(
        api_access(state["port"], state["aws_port"], state["tokens"]),
        settings.database_url,
        state["seeds"],
    )
    try:
        yield running
    finally:
        running.close()
        loop.call_soon_threadsafe(state["stop"].set)
        thread.join(30)


async def _seed(port: int, token: str) -> Seeds:
    seeds = Seeds()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = api_grpc.ServiceControlStub(channel)
        meta = bearer(token)
        for name in ("seed-one", "seed-two", "seed-three"):
            created = await stub.CreateService(
                api.CreateServiceRequest(
                    service_name=name,
                    source_configuration=pb.SourceConfiguration(
                        image_repository=pb.ImageRepository(image_identifier="hello-web:1.0")
                    ),
                ),
                metadata=meta,
            )
            seeds.service_arns.append(created.service.service_arn)
            seeds.operation_ids.append(created.operation_id)
        page = await stub.ListServices(api.ListServicesRequest(page_size=1), metadata=meta)
        seeds.page_tokens.append(page.next_page_token)
        connection = await stub.CreateConnection(
            api.CreateConnectionRequest(connection_name="seed-conn", provider_type=1),
            metadata=meta,
        )
        seeds.connection_arns.append(connection.connection.connection_arn)
        connector = await stub.CreateVpcConnector(
            vpc_pb2.CreateVpcConnectorRequest(vpc_connector_name="seed-vpc", subnets=["s-1"]),
            metadata=meta,
        )
        seeds.vpc_connector_arns.append(connector.vpc_connector.vpc_connector_arn)
        private = await stub.CreateService(
            api.CreateServiceRequest(
                service_name="seed-private",
                source_configuration=pb.SourceConfiguration(
                    image_repository=pb.ImageRepository(image_identifier="hello-web:1.0")
                ),
                network_configuration=vpc_pb2.NetworkConfiguration(
                    ingress_configuration={"is_publicly_accessible": False}
                ),
            ),
            metadata=meta,
        )
        ingress = await stub.CreateVpcIngressConnection(
            vpc_pb2.CreateVpcIngressConnectionRequest(
                service_arn=private.service.service_arn,
                vpc_ingress_connection_name="seed-ingress",
                ingress_vpc_configuration={"vpc_id": "vpc-1", "vpc_endpoint_id": "vpce-1"},
            ),
            metadata=meta,
        )
        seeds.vpc_ingress_arns.append(ingress.vpc_ingress_connection.vpc_ingress_connection_arn)
    return seeds


# ----- the database, before and after -----


def fingerprint(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """A digest of every row of every table of the application's schema."""
    tables = [
        r[0]
        for r in conn.execute(
            # The audit log records refused calls too, by design (docs/security.md).
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'audit_log' ORDER BY 1"
        )
    ]
    query = " UNION ALL ".join(
        f"SELECT '{t}', md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM \"{t}\" x"
        for t in tables
    )
    return {str(name): str(digest) for name, digest in conn.execute(query)}


# ----- values -----


def _tampered(token: str) -> list[str]:
    if not token:
        return []
    middle = len(token) // 2
    flipped = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1 :]
    return [flipped, token[:-3], token + "AAAA", token[::-1], "x" + token]


def nasty_strings(seeds: Seeds) -> st.SearchStrategy[str]:
    other = [arn.replace(f":{ACCOUNT}:", f":{OTHER_ACCOUNT}:") for arn in seeds.service_arns] + [
        arn.replace(":us-east-1:", ":eu-west-1:") for arn in seeds.service_arns
    ]
    fixed = [
        "",
        "\x00",
        "a\x00b",
        "hello-web:1.0",
        "web",
        "x" * 70_000,
        "é" * 3000,
        "😀" * 500,
        "\u202e\u200b\ufeff",
        "../../etc/passwd",
        "' OR 1=1; --",
        "%s%n%x",
        "-1",
        "9" * 40,
        "00000000-0000-0000-0000-000000000000",
        f"arn:aws:apprunner:us-east-1:{ACCOUNT}:service/web/{'0' * 32}",
        f"arn:aws:apprunner:us-east-1:{ACCOUNT}:connection/gh/{'0' * 32}",
        "arn:aws:apprunner:us-east-1:",
        "arn:aws:apprunner:us-east-1:abc:service//",
        *seeds.service_arns,
        *seeds.vpc_connector_arns,
        *seeds.vpc_ingress_arns,
        *seeds.operation_ids,
        *seeds.page_tokens,
        *other,
        *(t for token in seeds.page_tokens for t in _tampered(token)),
    ]
    return st.one_of(
        st.sampled_from(fixed),
        st.text(max_size=40),
        # A NUL somewhere in an otherwise plausible value.
        st.tuples(st.sampled_from(fixed), st.integers(0, 50)).map(
            lambda p: p[0][: p[1]] + "\x00" + p[0][p[1] :]
        ),
        st.text(alphabet=st.characters(codec="utf-8"), min_size=100, max_size=3000),
        st.sampled_from(fixed).flatmap(lambda s: st.text(max_size=5).map(lambda t, s=s: s + t)),
    )


_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def _integers(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (low, high, -1, 0, 1, 2**31 - 1, 10**12) if low <= v <= high]
    return st.one_of(
        st.sampled_from(edges),
        st.integers(max(low, -1000), min(high, 1000)),
        st.integers(low, high),
    )


def _scalar(f: FieldDescriptor, strings: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    if f.type == FieldDescriptor.TYPE_STRING:
        return strings
    if f.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if f.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if f.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, allow_infinity=True, width=32)
    if f.type == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in f.enum_type.values]
        return st.one_of(st.sampled_from(known), _integers(-(2**31), 2**31 - 1))
    low, high = _INT_RANGES[f.type]
    return _integers(low, high)


def proto_message(
    descriptor: Descriptor, strings: st.SearchStrategy[str], depth: int = 0
) -> st.SearchStrategy[Message]:
    """Any message of the type, its fields set at random (unknown enum numbers, huge and
    negative numbers, nasty strings included), nested to a bounded depth."""
    from google.protobuf import message_factory

    cls = message_factory.GetMessageClass(descriptor)

    @st.composite
    def build(draw: Callable[..., Any]) -> Message:
        message = cls()
        for f in descriptor.fields:
            if draw(st.booleans()):
                _fill(draw, message, f, strings, depth)
        return message

    return build()


MAX_DEPTH = 4


def _is_map(f: FieldDescriptor) -> bool:
    return f.message_type is not None and f.message_type.GetOptions().map_entry


def _fill_map(
    draw: Callable[..., Any],
    target: Any,
    f: FieldDescriptor,
    value: Callable[[FieldDescriptor], Any],
    depth: int,
) -> None:
    value_f = f.message_type.fields_by_name["value"]
    if value_f.type == FieldDescriptor.TYPE_MESSAGE and depth >= MAX_DEPTH:
        return
    # Top-level maps (environment variables) may be long; nested ones stay small.
    for _ in range(draw(st.integers(0, 3 if depth else 120))):
        key = value(f.message_type.fields_by_name["key"])
        if value_f.type == FieldDescriptor.TYPE_MESSAGE:
            target[key].CopyFrom(value(value_f))
        else:
            target[key] = value(value_f)


def _fill(
    draw: Callable[..., Any],
    message: Message,
    f: FieldDescriptor,
    strings: st.SearchStrategy[str],
    depth: int,
) -> None:
    def value(of: FieldDescriptor) -> Any:
        if of.type == FieldDescriptor.TYPE_MESSAGE:
            return draw(proto_message(of.message_type, strings, depth + 1))
        return draw(_scalar(of, strings))

    nested = f.type == FieldDescriptor.TYPE_MESSAGE
    if _is_map(f):
        _fill_map(draw, getattr(message, f.name), f, value, depth)
    elif nested and depth >= MAX_DEPTH:
        return
    elif f.is_repeated:
        target = getattr(message, f.name)
        for _ in range(draw(st.integers(0, 3))):
            if nested:
                target.add().CopyFrom(value(f))
            else:
                target.append(value(f))
    elif nested:
        getattr(message, f.name).CopyFrom(value(f))
    else:
        setattr(message, f.name, value(f))


def valid_requests(seeds: Seeds) -> dict[str, dict[str, Any]]:
    """A request each RPC would accept, in proto field names: the base that mutations
    spoil a field or three at a time, so that a bad value gets past every other check."""
    arn, op, conn = seeds.service_arns[0], seeds.operation_ids[0], seeds.connection_arns[0]
    scope = arn.split(":service/")[0]
    scaling = f"{scope}:autoscalingconfiguration/DefaultConfiguration"
    tracing = f"{scope}:observabilityconfiguration/fuzzed-tracing"
    connector, ingress = seeds.vpc_connector_arns[0], seeds.vpc_ingress_arns[0]
    endpoint = {"vpc_id": "vpc-1", "vpc_endpoint_id": "vpce-1"}
    image = {
        "image_identifier": "hello-web:1.0",
        "image_configuration": {
            "port": "8080",
            "start_command": "serve",
            "runtime_environment_variables": {"GREETING": "hello"},
        },
    }
    upload = {
        "image_identifier": "fuzzed:1",
        "config": {"digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [
            {
                "digest": "sha256:" + "1" * 64,
                "size": 3,
                "media_type": "application/vnd.oci.image.layer.v1.tar",
            }
        ],
    }
    configs = {
        "source_configuration": {"image_repository": image, "auto_deployments_enabled": False},
        "instance_configuration": {"cpu": "1 vCPU", "memory": "2 GB"},
        "health_check_configuration": {"protocol": "HTTP", "path": "/health"},
    }
    return {
        "CreateService": {"service_name": "fuzzed", "request_id": "r-1", **configs},
        "DescribeService": {"service_arn": arn},
        "ListServices": {"page_size": 1, "page_token": seeds.page_tokens[0]},
        "UpdateService": {"service_arn": arn, "validate_only": True, **configs},
        "DeleteService": {"service_arn": arn, "validate_only": True},
        "PauseService": {"service_arn": arn, "validate_only": True},
        "ResumeService": {"service_arn": arn, "validate_only": True},
        "ListOperations": {"service_arn": arn, "page_size": 1},
        "DescribeOperation": {"operation_id": op},
        "WaitOperation": {"operation_id": op, "timeout": "1s"},
        "CreateConnection": {"connection_name": "fuzzed-conn", "provider_type": "GITHUB"},
        "ListConnections": {"connection_name": "seed-conn", "page_size": 1},
        "DeleteConnection": {"connection_arn": conn, "validate_only": True},
        "AssociateCustomDomain": {"service_arn": arn, "domain_name": "www.example.com"},
        "DisassociateCustomDomain": {"service_arn": arn, "domain_name": "www.example.com"},
        "DescribeCustomDomains": {"service_arn": arn, "page_size": 1},
        "ListCertificates": {"domain_name": "www.example.com", "page_size": 1},
        "WatchEvents": {"resource_arn": arn, "cursor": "0"},
        "GetImageUploadStatus": {"header": upload},
        "PushImage": {"header": upload},
        "StartDeployment": {"service_arn": arn, "validate_only": True},
        "TagResource": {"resource_arn": arn, "tags": {"team": "web"}},
        "UntagResource": {"resource_arn": arn, "tag_keys": ["team"]},
        "ListTagsForResource": {"resource_arn": arn},
        # Auto scaling and observability configurations: partial ARNs of the seed
        # service's account (the built-in DefaultConfiguration exists in every account).
        "CreateAutoScalingConfiguration": {
            "auto_scaling_configuration_name": "fuzzed-scaling",
            "max_concurrency": 50,
            "min_size": 1,
            "max_size": 5,
            "tags": {"team": "web"},
        },
        "DescribeAutoScalingConfiguration": {"auto_scaling_configuration_arn": scaling},
        "ListAutoScalingConfigurations": {"latest_only": False, "page_size": 1},
        "DeleteAutoScalingConfiguration": {"auto_scaling_configuration_arn": f"{scaling}x"},
        "UpdateDefaultAutoScalingConfiguration": {"auto_scaling_configuration_arn": scaling},
        "ListServicesForAutoScalingConfiguration": {
            "auto_scaling_configuration_arn": scaling,
            "page_size": 1,
        },
        "CreateObservabilityConfiguration": {
            "observability_configuration_name": "fuzzed-tracing",
            "trace_vendor": "AWSXRAY",
        },
        "DescribeObservabilityConfiguration": {"observability_configuration_arn": tracing},
        "ListObservabilityConfigurations": {"page_size": 1},
        "DeleteObservabilityConfiguration": {"observability_configuration_arn": tracing},
        # VPC connectors and ingress connections
        "CreateVpcConnector": {
            "vpc_connector_name": "fuzzed-vpc",
            "subnets": ["subnet-1"],
            "security_groups": ["sg-1"],
            "tags": {"team": "net"},
        },
        "DescribeVpcConnector": {"vpc_connector_arn": connector},
        "ListVpcConnectors": {"page_size": 1},
        "DeleteVpcConnector": {"vpc_connector_arn": connector, "validate_only": True},
        "CreateVpcIngressConnection": {
            "service_arn": arn,
            "vpc_ingress_connection_name": "fuzzed-ingress",
            "ingress_vpc_configuration": endpoint,
            "validate_only": True,
        },
        "DescribeVpcIngressConnection": {"vpc_ingress_connection_arn": ingress},
        "ListVpcIngressConnections": {"vpc_endpoint_id": "vpce-1", "page_size": 1},
        "UpdateVpcIngressConnection": {
            "vpc_ingress_connection_arn": ingress,
            "ingress_vpc_configuration": endpoint,
            "validate_only": True,
        },
        "DeleteVpcIngressConnection": {
            "vpc_ingress_connection_arn": ingress,
            "validate_only": True,
        },
    }


SPOILERS = ["\x00", "\x00\x00", "é", "😀", " ", "/", "%00", "x" * 70_000, "\u202e"]


def _is_text(f: FieldDescriptor) -> bool:
    return f.type == FieldDescriptor.TYPE_STRING and not f.is_repeated


def _leaf_paths(descriptor: Descriptor, depth: int = 0) -> list[tuple[FieldDescriptor, ...]]:
    """Every field a mutation may set: scalars and maps, through singular messages."""
    paths: list[tuple[FieldDescriptor, ...]] = []
    for f in descriptor.fields:
        if f.type != FieldDescriptor.TYPE_MESSAGE or _is_map(f):
            paths.append((f,))
        elif not f.is_repeated and depth < MAX_DEPTH:
            paths += [(f, *rest) for rest in _leaf_paths(f.message_type, depth + 1)]
    return paths


def mutated_message(
    descriptor: Descriptor, base: dict[str, Any], strings: st.SearchStrategy[str]
) -> st.SearchStrategy[Message]:
    """The valid base with one to three of its fields (set or not) given random values."""
    from google.protobuf import json_format, message_factory

    cls = message_factory.GetMessageClass(descriptor)
    paths = _leaf_paths(descriptor)

    @st.composite
    def build(draw: Callable[..., Any]) -> Message:
        message = json_format.ParseDict(base, cls())
        for path in draw(st.lists(st.sampled_from(paths), min_size=1, max_size=3)):
            target = message
            for step in path[:-1]:
                target = getattr(target, step.name)
            last = path[-1]
            if _is_text(last) and draw(st.booleans()):
                # The valid value, spoiled where a check may not look.
                current = getattr(target, last.name)
                at = draw(st.integers(0, len(current)))
                junk = draw(st.sampled_from(SPOILERS))
                setattr(target, last.name, current[:at] + junk + current[at:])
            else:
                _fill(draw, target, last, strings, len(path) - 1)
        return message

    return build()


def grpc_body(method: str, seeds: Seeds) -> st.SearchStrategy[bytes]:
    """The serialized request of `method`: a valid one with a field or three spoiled, a
    random message, or bytes that are not one."""
    descriptor = SERVICE.methods_by_name[method].input_type
    strings = nasty_strings(seeds)
    spoiled = mutated_message(descriptor, valid_requests(seeds)[method], strings).map(
        lambda m: m.SerializeToString()
    )
    random = proto_message(descriptor, strings).map(lambda m: m.SerializeToString())
    message = st.one_of(spoiled, spoiled, spoiled, random)

    def corrupt(raw: bytes, cut: int, junk: bytes) -> bytes:
        return raw[: cut % (len(raw) + 1)] + junk

    return st.one_of(
        message,
        message,
        message,
        st.builds(corrupt, message, st.integers(0, 10_000), st.binary(max_size=16)),
        st.binary(max_size=256),
    )


# ----- App Runner bodies, from botocore's model of each action -----


def shape_value(
    shape: Any, strings: st.SearchStrategy[str], depth: int = 0
) -> st.SearchStrategy[Any]:
    kind = shape.type_name
    if kind == "structure":
        if depth > 4:
            return st.just({})
        members = {
            name: shape_value(member, strings, depth + 1) for name, member in shape.members.items()
        }
        return st.fixed_dictionaries({}, optional=members)
    if kind == "list":
        return st.lists(shape_value(shape.member, strings, depth + 1), max_size=3)
    if kind == "map":
        return st.dictionaries(strings, shape_value(shape.value, strings, depth + 1), max_size=3)
    if kind == "string":
        enum = list(shape.enum or [])
        return st.one_of(st.sampled_from(enum), strings) if enum else strings
    if kind in ("integer", "long"):
        return _integers(-(2**63), 2**63)
    if kind == "boolean":
        return st.booleans()
    return st.floats(allow_nan=False)


def junk_json() -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=10), children, max_size=3)
        ),
        max_leaves=8,
    )
