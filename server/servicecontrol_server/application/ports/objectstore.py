"""The object-store port: the source registry and the services' image copies."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, BinaryIO, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


class ObjectStoreError(Exception):
    """Root of object-store failures. `transient` ones are worth retrying."""

    transient = True


class ObjectStoreUnavailable(ObjectStoreError):
    """The store could not be reached or answered with a server error."""


class ObjectNotFound(ObjectStoreError):
    transient = False


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str = ""


class ObjectStore(Protocol):
    """Blob storage: the source registry and the services' image copies live in it.

    Every method raises ObjectStoreUnavailable when the store cannot be reached, and
    ObjectNotFound where a missing object matters (get, copy, stat)."""

    def ensure_bucket(self, bucket: str) -> None: ...

    def put_object(self, bucket: str, key: str, data: BinaryIO, length: int) -> None: ...

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None: ...

    def get_bytes(self, bucket: str, key: str) -> bytes: ...

    def stat_object(self, bucket: str, key: str) -> ObjectInfo | None:
        """None when the object does not exist."""
        ...

    def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> None:
        """Server-side copy; the data does not pass through this process."""
        ...

    def compose_object(self, bucket: str, key: str, sources: Sequence[str]) -> None:
        """Writes key as the concatenation of the sources (keys in the same bucket, in
        order), server-side: the data does not pass through this process. Every source
        but the last must be at least 5 MiB, as S3 requires of a multipart upload's parts.
        Readers see the whole new object or none of it."""
        ...

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under prefix, streamed (never the whole listing in memory)."""
        ...

    def scan_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under prefix, streamed in no particular order, with memory
        bounded however many objects the prefix holds: the listing a delete walks.
        Objects deleted while the scan runs may or may not appear."""
        ...

    def delete_objects(self, bucket: str, keys: Iterable[str]) -> int:
        """Deletes keys in batches of up to 1000; missing keys are not an error.
        Returns how many keys were asked for."""
        ...

    def abort_incomplete_uploads(self, bucket: str, prefix: str) -> int:
        """Aborts every unfinished multipart upload under prefix; returns how many."""
        ...

    def reap_stale_uploads(self, bucket: str, prefix: str, before: datetime) -> int:
        """Removes what unfinished writes left behind before `before` (aware, UTC): under
        `prefix`, each group of objects sharing their first path part after it (one
        upload's parts, `<prefix><upload>/...`) whose newest object was written before
        `before`, whole; and in the whole bucket, the unfinished multipart uploads (or
        partly written files) begun before it. Returns how many it removed."""
        ...


@runtime_checkable
class RunsBlocking(Protocol):
    """A store that runs blocking work (a sequence of its calls) off the event loop on a
    bounded pool of its own, so that a hung store cannot starve the loop's default
    executor. Stores without it are run with asyncio.to_thread."""

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T: ...
