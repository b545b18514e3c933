"""The ObjectStore port on any S3-compatible endpoint, through the minio SDK."""

from __future__ import annotations

import http.client
import io
import itertools
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import BinaryIO

import certifi
import urllib3
from minio import Minio
from minio.commonconfig import ComposeSource, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import InvalidResponseError, MinioException, S3Error, ServerError

from ...application.ports import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStoreError,
    ObjectStoreUnavailable,
)

# S3 refuses multi-object deletes of more than 1000 keys.
MAX_DELETE_BATCH = 1000

_MISSING_OBJECT = frozenset({"NoSuchKey", "NoSuchObject", "NotFound"})
_MISSING_BUCKET = frozenset({"NoSuchBucket"})
# Codes some servers send with a 4xx status although a retry is the right answer.
_TRANSIENT_CODES = frozenset(
    {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout", "OperationAborted"}
)
_FAILURES: tuple[type[BaseException], ...] = (
    MinioException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
)


def _status(exc: S3Error) -> int:
    response = getattr(exc, "response", None)
    return int(getattr(response, "status", 0) or 0)


def _translate(exc: BaseException, what: str) -> ObjectStoreError:
    """Maps an SDK or transport failure to the port's errors. Anything the store might
    answer differently a moment later is ObjectStoreUnavailable, so the job engine retries."""
    if isinstance(exc, S3Error):
        if _status(exc) >= 500 or exc.code in _TRANSIENT_CODES:
            return ObjectStoreUnavailable(f"{what}: {exc.code}: {exc.message}")
        return ObjectStoreError(f"{what}: {exc.code}: {exc.message}")
    if isinstance(exc, ServerError):
        if exc.status_code >= 500:
            return ObjectStoreUnavailable(f"{what}: HTTP {exc.status_code}")
        return ObjectStoreError(f"{what}: HTTP {exc.status_code}")
    if isinstance(exc, InvalidResponseError):
        # A non-S3 answer: usually a proxy or load balancer in front of a sick store.
        return ObjectStoreUnavailable(f"{what}: {exc}")
    return ObjectStoreUnavailable(f"{what}: {type(exc).__name__}: {exc}")


@contextmanager
def _calling(what: str) -> Iterator[None]:
    try:
        yield
    except _FAILURES as exc:
        raise _translate(exc, what) from exc


def _s3_code(exc: ObjectStoreError) -> str | None:
    """The S3 error code behind a translated failure, if the store answered with one."""
    cause = exc.__cause__
    return cause.code if isinstance(cause, S3Error) else None


class MinioObjectStore:
    """Each method is one short blocking call sequence; callers on an event loop run it in
    a thread. Transport retries are deliberately few and quick: an unreachable store must
    fail in seconds, because the job engine retries with its own backoff."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        *,
        secure: bool = False,
        region: str = "us-east-1",
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        max_connections: int = 16,
    ) -> None:
        self.endpoint = endpoint
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
            maxsize=max_connections,
            cert_reqs="CERT_REQUIRED",
            ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
            retries=urllib3.Retry(
                total=2, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
            ),
        )
        # An explicit region spares a GetBucketLocation round trip before every first call.
        self._client = Minio(
            endpoint,
            access_key=access_key or None,
            secret_key=secret_key or None,
            secure=secure,
            region=region,
            http_client=http,
        )

    @property
    def client(self) -> Minio:
        """The SDK client, for tests that need calls outside the port (multipart setup)."""
        return self._client

    def ensure_bucket(self, bucket: str) -> None:
        with _calling(f"ensure bucket {bucket}"):
            if self._client.bucket_exists(bucket):
                return
            try:
                self._client.make_bucket(bucket)
            except S3Error as exc:
                # Another process created it between the check and the create.
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
                if not self._client.bucket_exists(bucket):
                    raise

    def put_object(self, bucket: str, key: str, data: BinaryIO, length: int) -> None:
        with _calling(f"put {bucket}/{key}"):
            self._client.put_object(bucket, key, data, length)

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        self.put_object(bucket, key, io.BytesIO(data), len(data))

    def get_bytes(self, bucket: str, key: str) -> bytes:
        what = f"get {bucket}/{key}"
        try:
            with _calling(what):
                response = self._client.get_object(bucket, key)
                try:
                    return bytes(response.read())
                finally:
                    response.close()
                    response.release_conn()
        except ObjectStoreError as exc:
            if _s3_code(exc) in _MISSING_OBJECT | _MISSING_BUCKET:
                raise ObjectNotFound(f"{bucket}/{key}") from exc.__cause__
            raise

    def stat_object(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            with _calling(f"stat {bucket}/{key}"):
                found = self._client.stat_object(bucket, key)
        except ObjectStoreError as exc:
            if _s3_code(exc) in _MISSING_OBJECT | _MISSING_BUCKET:
                return None
            raise
        return ObjectInfo(key=key, size=int(found.size or 0), etag=(found.etag or "").strip('"'))

    def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> None:
        try:
            with _calling(f"copy {src_bucket}/{src_key} to {dst_bucket}/{dst_key}"):
                self._client.copy_object(dst_bucket, dst_key, CopySource(src_bucket, src_key))
        except ObjectStoreError as exc:
            # Only a missing source is "not found": a missing destination bucket is a
            # deployment fault, and must not read as a missing image upstream.
            if _s3_code(exc) in _MISSING_OBJECT:
                raise ObjectNotFound(f"{src_bucket}/{src_key}") from exc.__cause__
            raise

    def compose_object(self, bucket: str, key: str, sources: Sequence[str]) -> None:
        if not sources:
            raise ValueError("compose_object needs at least one source")
        try:
            with _calling(f"compose {bucket}/{key} from {len(sources)} objects"):
                self._client.compose_object(
                    bucket, key, [ComposeSource(bucket, source) for source in sources]
                )
        except ObjectStoreError as exc:
            if _s3_code(exc) in _MISSING_OBJECT:
                raise ObjectNotFound(f"{bucket}: a source of {key}") from exc.__cause__
            raise

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        try:
            with _calling(f"list {bucket}/{prefix}"):
                for found in self._client.list_objects(bucket, prefix=prefix, recursive=True):
                    if found.is_dir or found.object_name is None:
                        continue
                    yield ObjectInfo(
                        key=found.object_name,
                        size=int(found.size or 0),
                        etag=(found.etag or "").strip('"'),
                    )
        except ObjectStoreError as exc:
            if _s3_code(exc) in _MISSING_BUCKET:
                return
            raise

    def scan_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """S3 lists a page of up to 1000 keys per request: streamed as it is."""
        return self.list_objects(bucket, prefix)

    def delete_objects(self, bucket: str, keys: Iterable[str]) -> int:
        asked = 0
        remaining = iter(keys)
        while batch := list(itertools.islice(remaining, MAX_DELETE_BATCH)):
            asked += len(batch)
            self._delete_batch(bucket, batch)
        return asked

    def _delete_batch(self, bucket: str, batch: list[str]) -> None:
        what = f"delete {len(batch)} objects from {bucket}"
        try:
            with _calling(what):
                failed = [
                    error
                    for error in self._client.remove_objects(
                        bucket, [DeleteObject(key) for key in batch]
                    )
                    if error.code not in _MISSING_OBJECT
                ]
        except ObjectStoreError as exc:
            if _s3_code(exc) in _MISSING_BUCKET:
                return
            raise
        if failed:
            first = failed[0]
            raise ObjectStoreUnavailable(
                f"{what}: {len(failed)} not deleted, e.g. {first.name}: {first.code}"
            )

    def abort_incomplete_uploads(self, bucket: str, prefix: str) -> int:
        """The SDK's listing result drops the next-upload-id marker, so pages are walked
        by key marker only; a pass that aborted anything is followed by a fresh pass, which
        catches uploads a key-only marker may have skipped. Ends when a pass finds nothing
        new, so an upload that cannot be aborted never loops forever."""
        aborted = 0
        seen: set[str] = set()
        while True:
            found_new = False
            key_marker: str | None = None
            while True:
                page = self._list_uploads(bucket, prefix, key_marker)
                if page is None:
                    return aborted
                uploads, truncated, next_marker = page
                for key, upload_id in uploads:
                    if upload_id in seen or not key.startswith(prefix):
                        continue
                    seen.add(upload_id)
                    found_new = True
                    if self._abort_upload(bucket, key, upload_id):
                        aborted += 1
                if not truncated or not next_marker or next_marker == key_marker:
                    break
                key_marker = next_marker
            if not found_new:
                return aborted

    def reap_stale_uploads(self, bucket: str, prefix: str, before: datetime) -> int:
        """The listing is in key order, so one group's parts come together: one group is
        held at a time however many the prefix has."""
        removed = 0
        group, newest = "", None
        keys: list[str] = []
        try:
            with _calling(f"list {bucket}/{prefix}"):
                for found in self._client.list_objects(bucket, prefix=prefix, recursive=True):
                    if found.is_dir or found.object_name is None:
                        continue
                    name = found.object_name[len(prefix) :].split("/", 1)[0]
                    if name != group:
                        removed += self._reap_group(bucket, keys, newest, before)
                        group, newest, keys = name, None, []
                    keys.append(found.object_name)
                    written = found.last_modified
                    if written is not None and (newest is None or written > newest):
                        newest = written
        except ObjectStoreError as exc:
            if _s3_code(exc) in _MISSING_BUCKET:
                return removed
            raise
        removed += self._reap_group(bucket, keys, newest, before)
        return removed + self._abort_uploads_before(bucket, before)

    def _reap_group(
        self, bucket: str, keys: list[str], newest: datetime | None, before: datetime
    ) -> int:
        if not keys or newest is None or newest >= before:
            return 0
        return self.delete_objects(bucket, keys)

    def _abort_uploads_before(self, bucket: str, before: datetime) -> int:
        """Multipart uploads of the whole bucket begun before `before` (a compose that
        died half-way leaves one), walked by key marker as abort_incomplete_uploads does."""
        aborted = 0
        key_marker: str | None = None
        while True:
            try:
                with _calling(f"list multipart uploads in {bucket}"):
                    result = self._client._list_multipart_uploads(
                        bucket, key_marker=key_marker, max_uploads=1000
                    )
            except ObjectStoreError as exc:
                if _s3_code(exc) in _MISSING_BUCKET:
                    return aborted
                raise
            for upload in result.uploads:
                begun = upload.initiated_time
                if upload.upload_id and upload.object_name and begun is not None and begun < before:
                    aborted += self._abort_upload(bucket, upload.object_name, upload.upload_id)
            next_marker = result.next_key_marker
            if not result.is_truncated or not next_marker or next_marker == key_marker:
                return aborted
            key_marker = next_marker

    def _list_uploads(
        self, bucket: str, prefix: str, key_marker: str | None
    ) -> tuple[list[tuple[str, str]], bool, str | None] | None:
        """None when the bucket does not exist (so nothing is in flight there)."""
        try:
            with _calling(f"list multipart uploads in {bucket}/{prefix}"):
                result = self._client._list_multipart_uploads(
                    bucket, prefix=prefix, key_marker=key_marker, max_uploads=1000
                )
        except ObjectStoreError as exc:
            if _s3_code(exc) in _MISSING_BUCKET:
                return None
            raise
        uploads = [(u.object_name, u.upload_id) for u in result.uploads if u.upload_id]
        return uploads, result.is_truncated, result.next_key_marker

    def _abort_upload(self, bucket: str, key: str, upload_id: str) -> bool:
        """False when the upload had already ended (completed or aborted elsewhere)."""
        try:
            with _calling(f"abort multipart upload {bucket}/{key}"):
                self._client._abort_multipart_upload(bucket, key, upload_id)
        except ObjectStoreError as exc:
            if _s3_code(exc) in ("NoSuchUpload", *_MISSING_OBJECT):
                return False
            raise
        return True
