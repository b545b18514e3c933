"""The image push RPCs, mixed into ServiceControlServicer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from servicecontrol.v1 import service_control_pb2 as api

from ..application.image_upload import ImageUploads, UploadBlob, UploadHeader
from ..domain.errors import FieldViolation, InvalidRequest
from .errors import translated


class ImagesRpc:
    # Set by the server once built; a servicer without it refuses pushes.
    image_uploads: ImageUploads | None = None

    def _uploads(self) -> ImageUploads:
        assert self.image_uploads is not None, "the servicer was built without image uploads"
        return self.image_uploads

    @translated
    async def GetImageUploadStatus(
        self, request: api.GetImageUploadStatusRequest, context: grpc.aio.ServicerContext
    ) -> api.GetImageUploadStatusResponse:
        statuses = await self._uploads().status(_header(request.header))
        return api.GetImageUploadStatusResponse(
            blobs=[
                api.ImageBlobStatus(
                    digest=s.digest, size=s.size, received_bytes=s.received_bytes, stored=s.stored
                )
                for s in statuses
            ]
        )

    @translated
    async def PushImage(
        self, request_iterator: Any, context: grpc.aio.ServicerContext
    ) -> api.PushImageResponse:
        """request_iterator: an AsyncIterator of PushImageRequest (typed Any for the
        shared error translation, which is written for unary requests)."""
        messages: AsyncIterator[api.PushImageRequest] = request_iterator
        first = await anext(aiter(messages), None)
        if first is None or first.WhichOneof("content") != "header":
            raise InvalidRequest([FieldViolation("header", "the first message must be the header")])
        session = await self._uploads().start(_header(first.header))
        async for message in messages:
            if message.WhichOneof("content") != "chunk":
                raise InvalidRequest(
                    [FieldViolation("header", "only the first message is a header")]
                )
            chunk = message.chunk
            await session.write(chunk.digest, chunk.offset, chunk.data)
        pushed = await session.finish()
        return api.PushImageResponse(
            image_identifier=f"{pushed.repository}:{pushed.tag}",
            manifest_digest=pushed.manifest_digest,
            objects=pushed.objects,
            bytes=pushed.bytes,
            bytes_received=session.bytes_received,
        )


def _blob(message: api.ImageBlob) -> UploadBlob:
    return UploadBlob(message.digest, message.size, message.media_type)


def _header(message: api.ImageUploadHeader) -> UploadHeader:
    return UploadHeader(
        image_identifier=message.image_identifier,
        config=_blob(message.config) if message.HasField("config") else None,
        layers=tuple(_blob(layer) for layer in message.layers),
    )
