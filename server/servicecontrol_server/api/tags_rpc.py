"""The tag RPCs, mixed into ServiceControlServicer."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from servicecontrol.v1 import service_control_pb2 as api

from ..application.tag_commands import TagCommands
from .errors import translated


class TagsRpc:
    tags: TagCommands
    account: Callable[[grpc.aio.ServicerContext], str]

    @translated
    async def TagResource(
        self, request: api.TagResourceRequest, context: grpc.aio.ServicerContext
    ) -> api.TagResourceResponse:
        await self.tags.tag_resource(
            self.account(context), request.resource_arn, sorted(request.tags.items())
        )
        return api.TagResourceResponse()

    @translated
    async def UntagResource(
        self, request: api.UntagResourceRequest, context: grpc.aio.ServicerContext
    ) -> api.UntagResourceResponse:
        await self.tags.untag_resource(
            self.account(context), request.resource_arn, list(request.tag_keys)
        )
        return api.UntagResourceResponse()

    @translated
    async def ListTagsForResource(
        self, request: api.ListTagsForResourceRequest, context: grpc.aio.ServicerContext
    ) -> api.ListTagsForResourceResponse:
        tags = await self.tags.list_tags(self.account(context), request.resource_arn)
        return api.ListTagsForResourceResponse(tags=tags)
