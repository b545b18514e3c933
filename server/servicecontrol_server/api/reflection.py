"""Server reflection that serves the contract's files with their comments.

The generated modules embed descriptors without source info, so reflection built on them
alone shows no comments. Each contract file in a reflection answer gets the source info
(the comments) of the descriptor set generated beside the modules; the descriptors
themselves stay as the modules have them."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from importlib import resources
from typing import Any

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import _async, reflection_pb2, reflection_pb2_grpc

DESCRIPTOR_SET = "descriptor_set.binpb"


def source_info() -> dict[str, descriptor_pb2.SourceCodeInfo]:
    """The contract files' source info (locations and their comments), by file name."""
    data = (resources.files("servicecontrol.v1") / DESCRIPTOR_SET).read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data).file
    return {f.name: f.source_code_info for f in files}


class CommentedReflectionServicer(_async.ReflectionServicer):
    def __init__(self, service_names: Any, info: dict[str, descriptor_pb2.SourceCodeInfo]):
        super().__init__(service_names)
        self._info = info

    async def ServerReflectionInfo(  # noqa: N802 - the RPC's name
        self,
        request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        async for response in super().ServerReflectionInfo(request_iterator, context):
            if response.HasField("file_descriptor_response"):
                protos = response.file_descriptor_response.file_descriptor_proto
                replaced = [self._commented(serialized) for serialized in protos]
                del protos[:]
                protos.extend(replaced)
            yield response

    def _file_containing_symbol(
        self, request: reflection_pb2.ServerReflectionRequest, fully_qualified_name: str
    ) -> reflection_pb2.ServerReflectionResponse:
        """Also a method's file (`grpcurl describe pkg.Service.Method`), which the
        descriptor pool does not look up by the method's name."""
        service, _, method = fully_qualified_name.rpartition(".")
        try:
            self._pool.FindFileContainingSymbol(fully_qualified_name)
        except KeyError:
            try:
                found = self._pool.FindServiceByName(service)
            except KeyError:
                found = None
            if found is not None and method in found.methods_by_name:
                fully_qualified_name = service
        return super()._file_containing_symbol(request, fully_qualified_name)

    def _commented(self, serialized: bytes) -> bytes:
        file = descriptor_pb2.FileDescriptorProto.FromString(serialized)
        info = self._info.get(file.name)
        if info is None:
            return serialized
        file.source_code_info.CopyFrom(info)
        return file.SerializeToString()


def enable_reflection(service_names: tuple[str, ...], server: grpc.aio.Server) -> None:
    servicer = CommentedReflectionServicer(service_names, source_info())
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
