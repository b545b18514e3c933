"""The connection RPCs, mixed into ServiceControlServicer."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api

from ..application.connection_commands import ConnectionCommands
from . import convert

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Handler = Callable[[Any, Req, grpc.aio.ServicerContext], Awaitable[Resp]]


def translated(fn: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """servicer.translated (domain errors to rich statuses), looked up when called:
    servicer.py imports this module, so it cannot be imported from here at load time."""

    @functools.wraps(fn)
    async def wrapper(self: Any, request: Req, context: grpc.aio.ServicerContext) -> Resp:
        from .servicer import translated as translate

        return await translate(fn)(self, request, context)

    return wrapper


def enum_name(enum: Any, value: int) -> str:
    """The value's name, or "" for a number the contract does not define."""
    try:
        return str(enum.Name(value))
    except ValueError:
        return ""


class ConnectionsRpc:
    connections: ConnectionCommands
    account: Callable[[grpc.aio.ServicerContext], str]

    @translated
    async def CreateConnection(
        self, request: api.CreateConnectionRequest, context: grpc.aio.ServicerContext
    ) -> api.CreateConnectionResponse:
        connection = await self.connections.create_connection(
            self.account(context),
            request.connection_name,
            enum_name(pb.Connection.ProviderType, request.provider_type),
            request.request_id,
            request.validate_only,
        )
        return api.CreateConnectionResponse(connection=convert.connection(connection))

    @translated
    async def ListConnections(
        self, request: api.ListConnectionsRequest, context: grpc.aio.ServicerContext
    ) -> api.ListConnectionsResponse:
        page = await self.connections.list_connections(
            self.account(context), request.connection_name, request.page_size, request.page_token
        )
        return api.ListConnectionsResponse(
            connections=[convert.connection(c) for c in page.items],
            next_page_token=page.next_page_token,
        )

    @translated
    async def DeleteConnection(
        self, request: api.DeleteConnectionRequest, context: grpc.aio.ServicerContext
    ) -> api.DeleteConnectionResponse:
        connection = await self.connections.delete_connection(
            self.account(context),
            request.connection_arn,
            request.request_id,
            request.validate_only,
        )
        return api.DeleteConnectionResponse(connection=convert.connection(connection))
