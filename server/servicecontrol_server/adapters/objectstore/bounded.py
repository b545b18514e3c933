"""An ObjectStore whose every call is bounded in time and runs on a pool of its own.

A hung object store (a proxy that accepts and never answers, a server that stalls) must
not take anything else down with it. Two things make sure of that:

- Every call of the port runs on this wrapper's own bounded thread pool and is waited for
  at most `call_timeout` seconds; past that the caller gets ObjectStoreUnavailable at once
  (the thread is left to finish or fail on the client's own socket timeout). When every
  thread of the pool is busy, a new call waits for one at most `call_timeout` too (a
  healthy store frees one in milliseconds), then fails instead of queueing without end
  behind threads stuck in a hung store.
- `run_blocking` runs a sequence of store calls (an inventory, an image copy) off the event
  loop on a second bounded pool of this wrapper's, never on the loop's default executor,
  which the database driver needs for name resolution and everything else uses too.

Bootstrap builds one wrapper for the request path and one for the job workers, so a
store that hangs under a burst of requests cannot starve the jobs, nor the other way
round, and neither can starve a request that does not touch the store."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, BinaryIO, TypeVar

from ...application.ports import ObjectInfo, ObjectStore, ObjectStoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

# Objects per bounded call of a listing: S3's page size, so a chunk spans at most one
# page fetch.
_LISTING_CHUNK = 1000
# How often a call waiting for a free thread looks again.
_SLOT_POLL_SECONDS = 0.01


class BoundedObjectStore:
    """Delegates to `inner`: each call on at most `threads` threads of its own, bounded by
    `call_timeout`; sequences of calls through `run_blocking`, at most `threads` at once.
    `lane` names the pool in logs and errors ("request", "jobs")."""

    def __init__(self, inner: ObjectStore, *, lane: str, call_timeout: float, threads: int) -> None:
        if call_timeout <= 0:
            raise ValueError("call_timeout must be positive")
        if threads < 1:
            raise ValueError("threads must be at least 1")
        self.inner = inner
        self.lane = lane
        self.call_timeout = call_timeout
        self.threads = threads
        self._calls = _DaemonPool(threads, f"objectstore-{lane}-call")
        self._runs = _DaemonPool(threads, f"objectstore-{lane}-run")
        # Slots are taken when a call or a run is submitted and given back when its
        # thread is done with it (not when its caller stopped waiting), so the counts
        # say how many threads are really busy.
        self._call_slots = threading.BoundedSemaphore(threads)
        self._run_slots = threading.BoundedSemaphore(threads)

    # -- the port ------------------------------------------------------------------

    def ensure_bucket(self, bucket: str) -> None:
        self._call("ensure_bucket", self.inner.ensure_bucket, bucket)

    def put_object(self, bucket: str, key: str, data: BinaryIO, length: int) -> None:
        self._call("put_object", self.inner.put_object, bucket, key, data, length)

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        self._call("put_bytes", self.inner.put_bytes, bucket, key, data)

    def get_bytes(self, bucket: str, key: str) -> bytes:
        return self._call("get_bytes", self.inner.get_bytes, bucket, key)

    def stat_object(self, bucket: str, key: str) -> ObjectInfo | None:
        return self._call("stat_object", self.inner.stat_object, bucket, key)

    def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> None:
        self._call("copy_object", self.inner.copy_object, src_bucket, src_key, dst_bucket, dst_key)

    def compose_object(self, bucket: str, key: str, sources: Sequence[str]) -> None:
        self._call("compose_object", self.inner.compose_object, bucket, key, list(sources))

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        return self._listing("list_objects", self.inner.list_objects, bucket, prefix)

    def scan_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        return self._listing("scan_objects", self.inner.scan_objects, bucket, prefix)

    def delete_objects(self, bucket: str, keys: Iterable[str]) -> int:
        # The keys may be a lazy listing: gather them here, where each page is bounded.
        return self._call("delete_objects", self.inner.delete_objects, bucket, list(keys))

    def abort_incomplete_uploads(self, bucket: str, prefix: str) -> int:
        return self._call(
            "abort_incomplete_uploads", self.inner.abort_incomplete_uploads, bucket, prefix
        )

    def reap_stale_uploads(self, bucket: str, prefix: str, before: datetime) -> int:
        return self._call(
            "reap_stale_uploads", self.inner.reap_stale_uploads, bucket, prefix, before
        )

    # -- off the event loop --------------------------------------------------------

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs `fn(*args)` (blocking object-store work) on this lane's own pool. When
        every thread of the pool stays busy for `call_timeout`, the store is, for this
        caller, unavailable: the call fails rather than waiting behind work that may be
        hung. Cancelling the awaiting task (the caller's deadline passed) stops waiting
        at once; the thread finishes within the per-call bound."""
        await self._run_slot()
        try:
            future = self._runs.submit(fn, *args)
        except BaseException:
            self._run_slots.release()
            raise
        future.add_done_callback(lambda _: self._run_slots.release())
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Stops the pools' idle threads; threads still stuck in a hung store are not
        waited for (they are daemon threads: they never hold the process's exit)."""
        self._calls.close()
        self._runs.close()

    # -- internals -----------------------------------------------------------------

    def _listing(
        self, what: str, start: Callable[[str, str], Iterator[ObjectInfo]], bucket: str, prefix: str
    ) -> Iterator[ObjectInfo]:
        """A listing read in chunks of up to _LISTING_CHUNK objects, each chunk one
        bounded call: a chunk no longer than an S3 page holds at most one page fetch, so
        each fetch stays bounded, and the hand-off to the pool is paid per chunk, not per
        object (a delete of 100,000 local objects made 100,000 of them)."""
        listing = self._call(what, start, bucket, prefix)
        try:
            while True:
                chunk = self._call(what, _take, listing, _LISTING_CHUNK)
                yield from chunk
                if len(chunk) < _LISTING_CHUNK:
                    return
        finally:
            close = getattr(listing, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()

    async def _run_slot(self) -> None:
        """Takes a slot of the run pool, waiting without blocking the event loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.call_timeout
        while not self._run_slots.acquire(blocking=False):
            if loop.time() >= deadline:
                raise ObjectStoreUnavailable(
                    f"object store {self.lane} pool busy: {self.threads} calls outstanding"
                )
            await asyncio.sleep(_SLOT_POLL_SECONDS)

    def _call(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        # Called on a thread of the run pool (or a caller's own), never on the loop.
        if not self._call_slots.acquire(timeout=self.call_timeout):
            raise ObjectStoreUnavailable(
                f"{what}: object store {self.lane} pool busy: {self.threads} calls outstanding"
            )
        try:
            future = self._calls.submit(fn, *args)
        except BaseException:
            self._call_slots.release()
            raise
        future.add_done_callback(lambda _: self._call_slots.release())
        try:
            return future.result(timeout=self.call_timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ObjectStoreUnavailable(
                f"{what}: no answer from the object store within {self.call_timeout:g}s"
            ) from None


def _take(listing: Iterator[T], n: int) -> list[T]:
    return list(itertools.islice(listing, n))


class _DaemonPool:
    """A fixed pool of daemon threads. Unlike ThreadPoolExecutor's, whose threads the
    interpreter joins at exit, a thread stuck in a hung store cannot keep a stopping
    process alive."""

    def __init__(self, threads: int, name: str) -> None:
        self._queue: queue.SimpleQueue[
            tuple[concurrent.futures.Future[Any], Callable[[], Any]] | None
        ] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        # The submitter's context variables travel with the work (as asyncio.to_thread
        # does): the log scope and the trace span of the call or job attempt.
        context = contextvars.copy_context()
        self._queue.put((future, functools.partial(context.run, fn, *args)))
        return future

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                future.set_exception(exc)
            else:
                future.set_result(result)
