"""The connection RPCs, mixed into ServiceControlServicer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api

from ..application.connection_commands import ConnectionCommands
from . import convert
from .errors import translated


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
            tags=sorted(request.tags.items()),
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
