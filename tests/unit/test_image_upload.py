"""The image push use case on the in-memory object store: an unreachable store is an
outage the caller may retry, and what was staged before it stays for the resume."""

from __future__ import annotations

import hashlib
import os

import pytest

from servicecontrol_server.application.image_upload import (
    MIN_PART_SIZE,
    ImageUploads,
    UploadBlob,
    UploadHeader,
)
from servicecontrol_server.application.images import LAYER_MEDIA_TYPE
from servicecontrol_server.domain.errors import BackendUnavailable

from .fakes import FakeObjectStore

BUCKET = "source"


def _blob(data: bytes, media_type: str = "") -> UploadBlob:
    return UploadBlob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), media_type)


async def test_an_unreachable_store_is_an_outage_and_keeps_what_was_staged() -> None:
    store = FakeObjectStore()
    store.ensure_bucket(BUCKET)
    uploads = ImageUploads(store, BUCKET, part_size=MIN_PART_SIZE)
    config, layer = b"{}", os.urandom(MIN_PART_SIZE + 10)
    header = UploadHeader("app:1", _blob(config), (_blob(layer, LAYER_MEDIA_TYPE),))
    session = await uploads.start(header)
    await session.write(_blob(config).digest, 0, config)
    await session.write(_blob(layer).digest, 0, layer[:MIN_PART_SIZE])  # one whole part
    store.failing = {"put_bytes"}
    with pytest.raises(BackendUnavailable):
        await session.write(_blob(layer).digest, MIN_PART_SIZE, layer[MIN_PART_SIZE:])
    store.failing = set()
    status = {s.digest: s.received_bytes for s in await uploads.status(header)}
    assert status == {_blob(config).digest: len(config), _blob(layer).digest: MIN_PART_SIZE}
    resumed = await uploads.start(header)
    await resumed.write(_blob(layer).digest, MIN_PART_SIZE, layer[MIN_PART_SIZE:])
    pushed = await resumed.finish()
    assert pushed.objects == 3
    assert store.get_bytes(BUCKET, f"app/blobs/{_blob(layer).digest}") == layer
    store.down = True
    with pytest.raises(BackendUnavailable):
        await uploads.status(header)
