"""Object storage for tests: one real S3-compatible server (moto's, in a thread) for the
session, and stores on fresh buckets for every test that asks. Registered as a pytest
plugin from tests/conftest.py."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from servicecontrol_server.adapters.objectstore.local_store import (
    UPLOADS,
    LocalDirectoryObjectStore,
)
from servicecontrol_server.adapters.objectstore.minio_store import MinioObjectStore
from servicecontrol_server.application.ports import ObjectStore


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # host:port
    access_key: str = "testing"
    secret_key: str = "testing"
    region: str = "us-east-1"

    def store(self) -> MinioObjectStore:
        return MinioObjectStore(
            self.endpoint, self.access_key, self.secret_key, secure=False, region=self.region
        )


@dataclass(frozen=True)
class StoreUnderTest:
    """A store with two buckets of its own: one for the source registry, one for the
    services' image copies (the same split the server uses)."""

    name: str
    store: ObjectStore
    source_bucket: str
    image_bucket: str
    # Leaves an unfinished upload of (bucket, key) behind, as a writer that died would.
    start_upload: Callable[[str, str], None]


def unique_bucket(kind: str) -> str:
    # S3 bucket names: 3-63 lowercase letters, digits and hyphens.
    return f"{kind}-{uuid.uuid4().hex[:16]}"


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    # The server logs every request through werkzeug; failures are what matter here.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(endpoint=f"{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def minio_store(s3_server: S3Server) -> StoreUnderTest:
    store = s3_server.store()
    source, images = unique_bucket("source"), unique_bucket("images")
    store.ensure_bucket(source)
    store.ensure_bucket(images)

    def start_upload(bucket: str, key: str) -> None:
        store.client._create_multipart_upload(bucket, key, {})

    return StoreUnderTest("minio", store, source, images, start_upload)


@pytest.fixture
def local_store(tmp_path: Path) -> StoreUnderTest:
    store = LocalDirectoryObjectStore(tmp_path / "objects")
    source, images = unique_bucket("source"), unique_bucket("images")
    store.ensure_bucket(source)
    store.ensure_bucket(images)

    def start_upload(bucket: str, key: str) -> None:
        # What a write killed before its rename leaves (see local_store's layout).
        part = store.root / bucket / UPLOADS / f"{key}.{uuid.uuid4().hex}.part"
        part.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(b"half an object")

    return StoreUnderTest("local", store, source, images, start_upload)


@pytest.fixture(params=["minio", "local"])
def any_store(request: pytest.FixtureRequest) -> StoreUnderTest:
    """Each adapter in turn, so that one suite holds both to the same contract."""
    fixture: StoreUnderTest = request.getfixturevalue(f"{request.param}_store")
    return fixture
