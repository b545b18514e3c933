"""The RPCs of the contract, enumerated from its descriptor, callable by name."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor

from servicecontrol.v1 import service_control_pb2

SERVICE = service_control_pb2.DESCRIPTOR.services_by_name["ServiceControl"]


def methods() -> dict[str, MethodDescriptor]:
    return {m.name: m for m in SERVICE.methods}


def request_of(method: MethodDescriptor, **fields: Any) -> Any:
    return message_factory.GetMessageClass(method.input_type)(**fields)


async def call(
    channel: grpc.aio.Channel,
    method: MethodDescriptor,
    request: Any,
    metadata: tuple[tuple[str, str], ...] = (),
    timeout: float = 10,
) -> list[Any]:
    """Calls `method`; a server-streaming one is read until it ends or `timeout` passes
    (a deadline that ends a stream with nothing wrong in it counts as its end)."""
    path = f"/{SERVICE.full_name}/{method.name}"
    response_class = message_factory.GetMessageClass(method.output_type)
    if not method.server_streaming:
        unary = channel.unary_unary(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        return [await unary(request, metadata=metadata, timeout=timeout)]
    stream = channel.unary_stream(
        path,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response_class.FromString,
    )
    got: list[Any] = []
    try:
        async for item in stream(request, metadata=metadata, timeout=timeout):
            got.append(item)
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
            raise
    return got
