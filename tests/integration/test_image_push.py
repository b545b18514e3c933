"""Pushing images through the server (PushImage, GetImageUploadStatus): into the object
store the server reads, resumable, checked against every blob's digest, and visible only
once whole."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import grpc

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_client import ServiceControlClient
from servicecontrol_client.images import LAYER_MEDIA_TYPE, LocalImage, docker_archive, sample_image
from servicecontrol_server.application.image_upload import PART_SIZE, STAGING
from servicecontrol_server.application.images import blob_key, manifest_key
from tests.support.images import build_docker_archive
from tests.support.rpc import expect_error
from tests.support.server import ACCOUNT, Harness

MiB = 1024 * 1024


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _header(identifier: str, config: bytes, layers: Iterable[bytes]) -> api.ImageUploadHeader:
    return api.ImageUploadHeader(
        image_identifier=identifier,
        config=api.ImageBlob(digest=_digest(config), size=len(config)),
        layers=[
            api.ImageBlob(digest=_digest(layer), size=len(layer), media_type=LAYER_MEDIA_TYPE)
            for layer in layers
        ],
    )


async def _messages(
    header: api.ImageUploadHeader, chunks: Iterable[tuple[str, int, bytes]]
) -> AsyncIterator[api.PushImageRequest]:
    yield api.PushImageRequest(header=header)
    for digest, offset, data in chunks:
        yield api.PushImageRequest(chunk=api.ImageChunk(digest=digest, offset=offset, data=data))


def _chunks(digest: str, data: bytes, start: int = 0, size: int = MiB) -> list:
    return [(digest, o, data[o : o + size]) for o in range(start, len(data), size)]


def _client(h: Harness) -> ServiceControlClient:
    return ServiceControlClient(f"127.0.0.1:{h.port}", account=ACCOUNT)


def _push(h: Harness, identifier: str, image: LocalImage) -> api.PushImageResponse:
    with _client(h) as client:
        return client.push_image(identifier, image)


async def test_a_pushed_archive_is_what_create_service_finds(
    harness: Harness, tmp_path: Path
) -> None:
    # A layer bigger than one staging part: it is stored in parts, then composed.
    path = build_docker_archive(
        tmp_path / "big.tar", layers=2, layer_size=PART_SIZE + MiB, legacy=False, repo_tag="big:1"
    )
    seen: list[tuple[int, int]] = []

    def push() -> api.PushImageResponse:
        with docker_archive(path, "big:1") as image, _client(harness) as client:
            return client.push_image(
                "big:1", image, on_progress=lambda done, total: seen.append((done, total))
            )

    pushed = await asyncio.to_thread(push)
    assert pushed.image_identifier == "big:1"
    assert pushed.bytes_received == seen[-1][1] > 2 * PART_SIZE
    assert seen[-1][0] == seen[-1][1] and seen[0][0] == 0
    store, bucket = harness.app.store, harness.settings.source_bucket
    assert store.stat_object(bucket, manifest_key("big", "1")) is not None
    assert list(store.list_objects(bucket, STAGING)) == []
    service = await harness.running_service("big-web", image="big:1")
    assert service.status == pb.Service.RUNNING

    # Pushing it again sends nothing but the header: every blob is stored already.
    again = await asyncio.to_thread(push)
    assert again.bytes_received == 0
    assert again.manifest_digest == pushed.manifest_digest


async def test_a_broken_off_push_resumes_where_it_stopped(harness: Harness) -> None:
    config = b'{"architecture":"amd64","os":"linux"}'
    layer = os.urandom(PART_SIZE + 3 * MiB)
    header = _header("resumed:1", config, [layer])
    digest = _digest(layer)
    # The call ends after 10 MiB of the layer: the one whole part is kept.
    error = await expect_error(
        harness.stub.PushImage(
            _messages(header, _chunks(digest, layer[: PART_SIZE + 2 * MiB])),
            metadata=harness.meta(),
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error.reason == "IMAGE_UPLOAD_INCOMPLETE"
    assert error.metadata["digest"] in (digest, _digest(config))
    store, bucket = harness.app.store, harness.settings.source_bucket
    assert store.stat_object(bucket, manifest_key("resumed", "1")) is None
    status = await harness.stub.GetImageUploadStatus(
        api.GetImageUploadStatusRequest(header=header), metadata=harness.meta()
    )
    received = {blob.digest: blob.received_bytes for blob in status.blobs}
    assert received == {_digest(config): 0, digest: PART_SIZE}

    # A chunk that does not start where the server's copy ends is refused.
    error = await expect_error(
        harness.stub.PushImage(
            _messages(header, [(digest, 0, layer[:MiB])]), metadata=harness.meta()
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error.reason == "IMAGE_UPLOAD_OFFSET_MISMATCH"
    assert error.metadata == {"digest": digest, "expectedOffset": str(PART_SIZE)}

    pushed = await harness.stub.PushImage(
        _messages(header, [(_digest(config), 0, config), *_chunks(digest, layer, start=PART_SIZE)]),
        metadata=harness.meta(),
    )
    assert pushed.bytes_received == len(config) + len(layer) - PART_SIZE
    assert store.get_bytes(bucket, blob_key("resumed", digest)) == layer
    assert list(store.list_objects(bucket, STAGING)) == []


async def test_content_that_does_not_match_its_digest_never_becomes_visible(
    harness: Harness,
) -> None:
    config = b"{}"
    layer = os.urandom(2 * MiB)
    header = _header("tampered:1", config, [layer])
    digest = _digest(layer)
    forged = bytearray(layer)
    forged[MiB] ^= 0xFF
    error = await expect_error(
        harness.stub.PushImage(
            _messages(header, [(_digest(config), 0, config), *_chunks(digest, bytes(forged))]),
            metadata=harness.meta(),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error.reason == "IMAGE_CHECKSUM_MISMATCH"
    assert error.metadata == {"digest": digest}
    store, bucket = harness.app.store, harness.settings.source_bucket
    assert store.stat_object(bucket, manifest_key("tampered", "1")) is None
    assert store.stat_object(bucket, blob_key("tampered", digest)) is None
    # What was received of it is discarded: a new push starts the blob from 0.
    status = await harness.stub.GetImageUploadStatus(
        api.GetImageUploadStatusRequest(header=header), metadata=harness.meta()
    )
    assert {b.digest: b.received_bytes for b in status.blobs}[digest] == 0


async def test_a_bad_header_is_refused_with_every_bad_field(harness: Harness) -> None:
    header = api.ImageUploadHeader(
        image_identifier="Not An Image",
        config=api.ImageBlob(digest="md5:abc", size=-1),
        layers=[api.ImageBlob(digest=_digest(b"x"), size=1, media_type="text/plain")],
    )
    error = await expect_error(
        harness.stub.PushImage(_messages(header, []), metadata=harness.meta()),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert error.reason == "INVALID_REQUEST"
    assert set(error.field_violations) == {
        "header.image_identifier",
        "header.config.digest",
        "header.config.size",
        "header.layers[0].media_type",
    }
    error = await expect_error(
        harness.stub.PushImage(
            _messages(_header("x:1", b"{}", [b"layer"]), [(_digest(b"other"), 0, b"o")]),
            metadata=harness.meta(),
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert set(error.field_violations) == {"chunk.digest"}


async def test_the_sample_image_pushes_and_runs(harness: Harness) -> None:
    pushed = await asyncio.to_thread(_push, harness, "sample-web:2", sample_image("sample-web:2"))
    assert pushed.objects == 4  # config, two layers, the manifest
    service = await harness.running_service("sample-web", image="sample-web:2")
    assert service.status == pb.Service.RUNNING
