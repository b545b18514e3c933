"""Reflection answers for a method's name too (`grpcurl describe pkg.Service.Method`), with
the contract's comments, as it does for services and messages."""

from __future__ import annotations

from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.support.server import Harness


async def _file_of(harness: Harness, symbol: str) -> reflection_pb2.ServerReflectionResponse:
    stub = reflection_pb2_grpc.ServerReflectionStub(harness.channel)
    request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
    async for response in stub.ServerReflectionInfo(iter([request])):
        return response
    raise AssertionError("no answer")


def _comments(file: descriptor_pb2.FileDescriptorProto) -> str:
    return "\n".join(loc.leading_comments for loc in file.source_code_info.location)


async def test_a_method_s_name_finds_its_file_with_comments(harness: Harness) -> None:
    response = await _file_of(harness, "servicecontrol.v1.ServiceControl.PauseService")
    assert response.HasField("file_descriptor_response"), response
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    (contract,) = [f for f in files if f.name == "servicecontrol/v1/service_control.proto"]
    (service,) = contract.service
    assert "PauseService" in {m.name for m in service.method}
    assert "Pauses a RUNNING service" in _comments(contract)

    health = await _file_of(harness, "grpc.health.v1.Health.Check")
    assert health.HasField("file_descriptor_response"), health


async def test_an_unknown_method_is_still_not_found(harness: Harness) -> None:
    for symbol in ("servicecontrol.v1.ServiceControl.NoSuchMethod", "no.such.Service.Method"):
        response = await _file_of(harness, symbol)
        assert response.HasField("error_response"), response
        assert response.error_response.error_code == 5  # NOT_FOUND
