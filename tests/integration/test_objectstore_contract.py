"""One contract for every ObjectStore adapter: the S3 one (against a real S3-compatible
server) and the local-directory one must be interchangeable behind the port."""

from __future__ import annotations

import io
import os
import random
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from servicecontrol_server.adapters.objectstore.local_store import LocalDirectoryObjectStore
from servicecontrol_server.adapters.objectstore.minio_store import MinioObjectStore
from servicecontrol_server.application.ports import (
    ObjectNotFound,
    ObjectStore,
    ObjectStoreError,
    ObjectStoreUnavailable,
)
from tests.support.faults import FlakyObjectStore
from tests.support.s3 import StoreUnderTest


def keys(store: ObjectStore, bucket: str, prefix: str) -> list[str]:
    return [info.key for info in store.list_objects(bucket, prefix)]


def test_put_get_stat_round_trip(any_store: StoreUnderTest) -> None:
    store, bucket = any_store.store, any_store.image_bucket
    store.put_bytes(bucket, "svc/small", b"hello")
    payload = random.randbytes(300_000)
    store.put_object(bucket, "svc/streamed", io.BytesIO(payload), len(payload))

    assert store.get_bytes(bucket, "svc/small") == b"hello"
    assert store.get_bytes(bucket, "svc/streamed") == payload
    small = store.stat_object(bucket, "svc/small")
    assert small is not None and (small.key, small.size) == ("svc/small", 5)
    streamed = store.stat_object(bucket, "svc/streamed")
    assert streamed is not None and streamed.size == len(payload)


def test_put_overwrites(any_store: StoreUnderTest) -> None:
    store, bucket = any_store.store, any_store.image_bucket
    store.put_bytes(bucket, "k", b"first version")
    store.put_bytes(bucket, "k", b"second")
    assert store.get_bytes(bucket, "k") == b"second"
    assert keys(store, bucket, "") == ["k"]


def test_missing_objects(any_store: StoreUnderTest) -> None:
    store, bucket = any_store.store, any_store.image_bucket
    assert store.stat_object(bucket, "nothing/here") is None
    assert store.stat_object("no-such-bucket-0a1b2c", "x") is None
    with pytest.raises(ObjectNotFound):
        store.get_bytes(bucket, "nothing/here")
    with pytest.raises(ObjectNotFound):
        store.get_bytes("no-such-bucket-0a1b2c", "x")
    with pytest.raises(ObjectNotFound):
        store.copy_object(bucket, "nothing/here", bucket, "copy")
    assert store.stat_object(bucket, "copy") is None


def test_not_found_is_not_transient(any_store: StoreUnderTest) -> None:
    with pytest.raises(ObjectNotFound) as caught:
        any_store.store.get_bytes(any_store.image_bucket, "missing")
    assert caught.value.transient is False


def test_copy_across_buckets(any_store: StoreUnderTest) -> None:
    store = any_store.store
    payload = random.randbytes(70_000)
    store.put_bytes(any_store.source_bucket, "repo/blobs/one", payload)
    store.copy_object(any_store.source_bucket, "repo/blobs/one", any_store.image_bucket, "a/b/c")

    assert store.get_bytes(any_store.image_bucket, "a/b/c") == payload
    assert store.get_bytes(any_store.source_bucket, "repo/blobs/one") == payload
    copied = store.stat_object(any_store.image_bucket, "a/b/c")
    assert copied is not None and copied.size == len(payload)


def test_compose_concatenates_parts_in_order(any_store: StoreUnderTest) -> None:
    store, bucket = any_store.store, any_store.source_bucket
    first = os.urandom(5 * 1024 * 1024)  # S3's smallest part but the last
    store.put_bytes(bucket, "parts/0", first)
    store.put_bytes(bucket, "parts/1", b"tail")
    store.compose_object(bucket, "whole", ["parts/0", "parts/1"])
    assert store.get_bytes(bucket, "whole") == first + b"tail"
    store.compose_object(bucket, "single", ["parts/1"])
    assert store.get_bytes(bucket, "single") == b"tail"


def test_compose_of_a_missing_part_is_not_found(any_store: StoreUnderTest) -> None:
    store, bucket = any_store.store, any_store.source_bucket
    store.put_bytes(bucket, "parts/0", b"x")
    with pytest.raises(ObjectNotFound):
        store.compose_object(bucket, "whole", ["parts/missing"])
    assert store.stat_object(bucket, "whole") is None


def test_list_is_prefix_isolated_and_in_key_order(any_store: StoreUnderTest) -> None:
    store, bucket = any_store.store, any_store.image_bucket
    # "a-c" sorts before "a/..." ('-' < '/'), "ab" after: a directory walk that sorted by
    # directory name instead of full key would get this wrong.
    names = [
        "a/1",
        "a/2",
        "a/b/c",
        "a/b/d/e",
        "a-c",
        "ab",
        "b/1",
        "services/s1/x",
        "services/s10/x",
    ]
    for name in random.sample(names, len(names)):
        store.put_bytes(bucket, name, name.encode())

    assert keys(store, bucket, "") == sorted(names)
    assert keys(store, bucket, "a/") == ["a/1", "a/2", "a/b/c", "a/b/d/e"]
    assert keys(store, bucket, "a") == ["a-c", "a/1", "a/2", "a/b/c", "a/b/d/e", "ab"]
    assert keys(store, bucket, "a/b") == ["a/b/c", "a/b/d/e"]
    assert keys(store, bucket, "services/s1/") == ["services/s1/x"]
    assert keys(store, bucket, "zzz/") == []
    assert [(i.key, i.size) for i in store.list_objects(bucket, "b/")] == [("b/1", 3)]
    assert keys(store, any_store.source_bucket, "") == []


def test_list_of_missing_bucket_is_empty(any_store: StoreUnderTest) -> None:
    assert keys(any_store.store, "no-such-bucket-0a1b2c", "") == []


def test_many_keys_list_and_delete(any_store: StoreUnderTest) -> None:
    """More than one listing page and more than one multi-object delete."""
    store, bucket = any_store.store, any_store.image_bucket
    names = [f"many/{i:05d}" for i in range(1100)]
    for name in names:
        store.put_bytes(bucket, name, b"x")
    store.put_bytes(bucket, "many-neighbour", b"stays")

    assert keys(store, bucket, "many/") == names
    # Deleting while the listing streams, as delete_image_copy does.
    listing = store.list_objects(bucket, "many/")
    assert store.delete_objects(bucket, (info.key for info in listing)) == 1100
    assert keys(store, bucket, "many") == ["many-neighbour"]


def test_s3_multi_object_deletes_carry_at_most_1000_keys(minio_store: StoreUnderTest) -> None:
    store = minio_store.store
    assert isinstance(store, MinioObjectStore)
    bucket = minio_store.image_bucket
    names = [f"d/{i:04d}" for i in range(2001)]
    trace = io.StringIO()
    store.client.trace_on(trace)
    try:
        assert store.delete_objects(bucket, iter(names)) == 2001
    finally:
        store.client.trace_off()
    requests = trace.getvalue().split("---------START-HTTP---------")
    deletes = [r for r in requests if "POST /" in r and "delete=" in r]
    assert len(deletes) == 3
    assert [r.count("<Object><Key>") for r in deletes] == [1000, 1000, 1]


def test_delete_missing_keys_is_not_an_error(any_store: StoreUnderTest) -> None:
    store, bucket = any_store.store, any_store.image_bucket
    store.put_bytes(bucket, "present", b"1")
    assert store.delete_objects(bucket, ["present", "absent", "also/absent"]) == 3
    assert store.stat_object(bucket, "present") is None
    assert store.delete_objects(bucket, ["present"]) == 1
    assert store.delete_objects(bucket, []) == 0
    assert store.delete_objects("no-such-bucket-0a1b2c", ["x"]) == 1


def test_abort_incomplete_uploads_only_under_prefix(any_store: StoreUnderTest) -> None:
    store, bucket = any_store.store, any_store.image_bucket
    any_store.start_upload(bucket, "services/s1/blobs/big")
    any_store.start_upload(bucket, "services/s1/manifest.json")
    any_store.start_upload(bucket, "services/s10/blobs/big")
    store.put_bytes(bucket, "services/s1/done", b"complete objects are not uploads")

    assert keys(store, bucket, "") == ["services/s1/done"]  # unfinished uploads are invisible
    assert store.abort_incomplete_uploads(bucket, "services/s1/") == 2
    assert store.abort_incomplete_uploads(bucket, "services/s1/") == 0
    assert store.abort_incomplete_uploads(bucket, "services/s10/") == 1
    assert keys(store, bucket, "") == ["services/s1/done"]
    assert store.abort_incomplete_uploads("no-such-bucket-0a1b2c", "x/") == 0


def test_abort_incomplete_uploads_with_a_partial_name_prefix(any_store: StoreUnderTest) -> None:
    store, bucket = any_store.store, any_store.image_bucket
    for key in ("up/a1/x", "up/a10/x", "up/b/x", "up-c"):
        any_store.start_upload(bucket, key)
    assert store.abort_incomplete_uploads(bucket, "up/a") == 2
    assert store.abort_incomplete_uploads(bucket, "up") == 2
    assert store.abort_incomplete_uploads(bucket, "") == 0


def test_ensure_bucket_is_idempotent(any_store: StoreUnderTest) -> None:
    store, bucket = any_store.store, any_store.image_bucket
    store.put_bytes(bucket, "kept", b"1")
    store.ensure_bucket(bucket)
    assert store.get_bytes(bucket, "kept") == b"1"


# The local store on its own: what a directory tree adds to the contract.


@pytest.mark.parametrize("bad", ["../escape", "a/../../escape", "/absolute", "a//b", "", "a/./b"])
def test_local_store_refuses_keys_that_leave_the_bucket(
    local_store: StoreUnderTest, bad: str
) -> None:
    with pytest.raises(ValueError):
        local_store.store.put_bytes(local_store.image_bucket, bad, b"x")
    with pytest.raises(ValueError):
        local_store.store.get_bytes(local_store.image_bucket, bad)


def test_local_store_refuses_bad_prefixes(local_store: StoreUnderTest) -> None:
    with pytest.raises(ValueError):
        list(local_store.store.list_objects(local_store.image_bucket, "../"))
    with pytest.raises(ValueError):
        local_store.store.abort_incomplete_uploads(local_store.image_bucket, "a/../../")


def test_local_store_failed_write_leaves_nothing(tmp_path: Path) -> None:
    store = LocalDirectoryObjectStore(tmp_path)
    store.ensure_bucket("bucket")
    store.put_bytes("bucket", "k", b"old")
    with pytest.raises(ValueError):
        store.put_object("bucket", "k", io.BytesIO(b"short"), 100)
    assert store.get_bytes("bucket", "k") == b"old"  # the old version stays whole
    assert store.abort_incomplete_uploads("bucket", "") == 0  # and no temporary file remains
    assert sorted(p.name for p in (tmp_path / "bucket").iterdir()) == ["k"]


def test_local_store_delete_leaves_no_empty_directories(tmp_path: Path) -> None:
    store = LocalDirectoryObjectStore(tmp_path)
    store.ensure_bucket("bucket")
    store.put_bytes("bucket", "services/s1/blobs/a", b"1")
    store.put_bytes("bucket", "services/s2/x", b"2")
    store.delete_objects("bucket", ["services/s1/blobs/a"])
    assert not (tmp_path / "bucket" / "services" / "s1").exists()
    assert (tmp_path / "bucket" / "services" / "s2" / "x").exists()


def test_local_store_writes_into_a_missing_bucket_fail(tmp_path: Path) -> None:
    store = LocalDirectoryObjectStore(tmp_path)
    with pytest.raises(ObjectStoreError) as caught:
        store.put_bytes("never-created", "k", b"1")
    assert not isinstance(caught.value, ObjectNotFound)
    assert not (tmp_path / "never-created").exists()


# The S3 adapter when the store is down: every call fails fast with the transient error.


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


CALLS: dict[str, Callable[[ObjectStore], object]] = {
    "ensure_bucket": lambda s: s.ensure_bucket("bucket"),
    "put_bytes": lambda s: s.put_bytes("bucket", "k", b"1"),
    "put_object": lambda s: s.put_object("bucket", "k", io.BytesIO(b"1"), 1),
    "get_bytes": lambda s: s.get_bytes("bucket", "k"),
    "stat_object": lambda s: s.stat_object("bucket", "k"),
    "copy_object": lambda s: s.copy_object("bucket", "k", "bucket", "k2"),
    "compose_object": lambda s: s.compose_object("bucket", "k", ["a", "b"]),
    "list_objects": lambda s: list(s.list_objects("bucket", "p/")),
    "delete_objects": lambda s: s.delete_objects("bucket", ["k"]),
    "abort_incomplete_uploads": lambda s: s.abort_incomplete_uploads("bucket", "p/"),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_unreachable_store_is_unavailable(call: str) -> None:
    store = MinioObjectStore(f"127.0.0.1:{closed_port()}", "testing", "testing")
    with pytest.raises(ObjectStoreUnavailable) as caught:
        CALLS[call](store)
    assert caught.value.transient is True


class _Overloaded(BaseHTTPRequestHandler):
    """A store front that answers everything with 503 SlowDown, as S3 does under load."""

    def _refuse(self) -> None:
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>"
        )
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(503)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _refuse

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def overloaded_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Overloaded)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.mark.parametrize("call", ["stat_object", "get_bytes", "put_bytes", "delete_objects"])
def test_server_errors_are_unavailable(overloaded_endpoint: str, call: str) -> None:
    store = MinioObjectStore(overloaded_endpoint, "testing", "testing")
    with pytest.raises(ObjectStoreUnavailable):
        CALLS[call](store)


# The fault wrapper other suites rely on.


def test_flaky_store_fails_every_call_while_down(local_store: StoreUnderTest) -> None:
    flaky = FlakyObjectStore(local_store.store)
    local_store.store.put_bytes(local_store.image_bucket, "k", b"1")
    flaky.down = True
    for call in CALLS.values():
        with pytest.raises(ObjectStoreUnavailable):
            call(flaky)
    assert sum(flaky.failures.values()) == len(CALLS)
    assert flaky.calls == flaky.failures

    flaky.down = False
    flaky.fail_next = 2
    for _ in range(2):
        with pytest.raises(ObjectStoreUnavailable):
            flaky.get_bytes(local_store.image_bucket, "k")
    assert flaky.get_bytes(local_store.image_bucket, "k") == b"1"
    assert flaky.calls["get_bytes"] == 4 and flaky.failures["get_bytes"] == 3


def test_flaky_store_breaks_a_listing_mid_stream(local_store: StoreUnderTest) -> None:
    store, bucket = local_store.store, local_store.image_bucket
    for i in range(3):
        store.put_bytes(bucket, f"k{i}", b"1")
    flaky = FlakyObjectStore(store)
    listing = flaky.list_objects(bucket, "")
    assert next(listing).key == "k0"
    flaky.down = True
    with pytest.raises(ObjectStoreUnavailable):
        next(listing)
