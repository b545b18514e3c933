"""Fault injection around a real ObjectStore, for tests of the retry paths above it."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import BinaryIO

from servicecontrol_server.application.ports import ObjectInfo, ObjectStore, ObjectStoreUnavailable


class FlakyObjectStore:
    """Delegates to inner, except that every call raises ObjectStoreUnavailable while
    `down` is true, and the next `fail_next` calls raise it too. `calls` counts every
    call by method name (failed ones included), `failures` the ones that raised.

    A listing checks before every item, so flipping `down` mid-stream breaks it where it
    stands, as a dropped connection would. Safe to share between worker threads."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.down = False
        self.fail_next = 0
        self.calls: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _enter(self, method: str) -> None:
        with self._lock:
            self.calls[method] += 1
        self._check(method)

    def _check(self, method: str) -> None:
        with self._lock:
            if self.fail_next > 0:
                self.fail_next -= 1
                reason = "injected failure"
            elif self.down:
                reason = "object store is down"
            else:
                return
            self.failures[method] += 1
        raise ObjectStoreUnavailable(f"{method}: {reason}")

    def ensure_bucket(self, bucket: str) -> None:
        self._enter("ensure_bucket")
        self.inner.ensure_bucket(bucket)

    def put_object(self, bucket: str, key: str, data: BinaryIO, length: int) -> None:
        self._enter("put_object")
        self.inner.put_object(bucket, key, data, length)

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        self._enter("put_bytes")
        self.inner.put_bytes(bucket, key, data)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        self._enter("get_bytes")
        return self.inner.get_bytes(bucket, key)

    def stat_object(self, bucket: str, key: str) -> ObjectInfo | None:
        self._enter("stat_object")
        return self.inner.stat_object(bucket, key)

    def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> None:
        self._enter("copy_object")
        self.inner.copy_object(src_bucket, src_key, dst_bucket, dst_key)

    def compose_object(self, bucket: str, key: str, sources: Sequence[str]) -> None:
        self._enter("compose_object")
        self.inner.compose_object(bucket, key, sources)

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        # A generator, like the real adapters: the first failure shows at the first next().
        self._enter("list_objects")
        for info in self.inner.list_objects(bucket, prefix):
            if self.down:
                self._check("list_objects")
            yield info

    def scan_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        self._enter("scan_objects")
        for info in self.inner.scan_objects(bucket, prefix):
            if self.down:
                self._check("scan_objects")
            yield info

    def delete_objects(self, bucket: str, keys: Iterable[str]) -> int:
        self._enter("delete_objects")
        return self.inner.delete_objects(bucket, keys)

    def abort_incomplete_uploads(self, bucket: str, prefix: str) -> int:
        self._enter("abort_incomplete_uploads")
        return self.inner.abort_incomplete_uploads(bucket, prefix)

    def reap_stale_uploads(self, bucket: str, prefix: str, before: datetime) -> int:
        self._enter("reap_stale_uploads")
        return self.inner.reap_stale_uploads(bucket, prefix, before)
