"""Pushing an image through the server, in chunks: resumable and checksummed.

A push names the image's blobs (config and layers: sha256 digest and size) first, then
sends their content in chunks. Content is staged in the source bucket as parts,
content-addressed so that any push of the same blob (from any repository) resumes it:
    _uploads/sha256:<hex>/<offset, 15 digits>
Every part but a blob's last is PART_SIZE bytes, so at most one part per blob is ever in
memory, and a push that broke off keeps every whole part it sent. Once a blob is whole,
its parts are read back one at a time and hashed; only content that matches its digest
is composed (server-side) into `<repository>/blobs/<digest>`, and the manifest, which
makes the image visible, is written after every blob (the format of images.py).
Repository names start with a letter or digit, so `_uploads/` is never a repository.
The reaper removes a blob's parts once nobody has added to them for the upload
retention (application/reaper.py)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..domain.errors import (
    BackendUnavailable,
    FailedPrecondition,
    FieldViolation,
    InvalidRequest,
)
from ..domain.names import is_digest, parse_image_identifier
from .images import (
    CONFIG_MEDIA_TYPE,
    LAYER_MEDIA_TYPE,
    PushedImage,
    _Blob,
    _manifest_body,
    _sha256,
    blob_key,
    store_manifest,
)
from .offload import off_loop
from .ports import ObjectStore, ObjectStoreUnavailable

# S3 requires every part of a multipart object but the last to be at least 5 MiB.
PART_SIZE = 8 * 1024 * 1024
MIN_PART_SIZE = 5 * 1024 * 1024
STAGING = "_uploads/"
LAYER_MEDIA_TYPES = frozenset(
    {LAYER_MEDIA_TYPE, f"{LAYER_MEDIA_TYPE}+gzip", f"{LAYER_MEDIA_TYPE}+zstd"}
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_OFFSET_DIGITS = 15
T = TypeVar("T")


class ImageChecksumMismatch(InvalidRequest):
    reason = "IMAGE_CHECKSUM_MISMATCH"

    def __init__(self, field_path: str, digest: str, description: str) -> None:
        super().__init__([FieldViolation(field_path, description)])
        self.metadata["digest"] = digest


class ImageUploadIncomplete(FailedPrecondition):
    reason = "IMAGE_UPLOAD_INCOMPLETE"


class ImageUploadOffsetMismatch(FailedPrecondition):
    reason = "IMAGE_UPLOAD_OFFSET_MISMATCH"


@dataclass(frozen=True)
class UploadBlob:
    digest: str
    size: int
    media_type: str = ""


@dataclass(frozen=True)
class UploadHeader:
    image_identifier: str
    config: UploadBlob | None
    layers: tuple[UploadBlob, ...]


@dataclass(frozen=True)
class BlobStatus:
    digest: str
    size: int
    received_bytes: int
    stored: bool


@dataclass
class _Staged:
    """One blob of a push in progress: what is persisted, and the part being filled."""

    blob: UploadBlob
    persisted: int
    stored: bool
    buffer: bytearray = field(default_factory=bytearray)

    @property
    def next_offset(self) -> int:
        return self.persisted + len(self.buffer)


async def _in_thread(store: ObjectStore, fn: Callable[..., T], *args: Any) -> T:
    """A blocking object-store call, off the event loop. An unreachable store is an
    outage the caller may retry (UNAVAILABLE), not a bug."""
    try:
        return await off_loop(store, fn, *args)
    except ObjectStoreUnavailable as exc:
        raise BackendUnavailable(f"the object store is unavailable; retry: {exc}") from exc


def staging_prefix(digest: str) -> str:
    return f"{STAGING}{digest}/"


def part_key(digest: str, offset: int) -> str:
    return f"{staging_prefix(digest)}{offset:0{_OFFSET_DIGITS}d}"


class ImageUploads:
    """The push use case. Object-store calls are blocking, so they run in threads."""

    def __init__(self, store: ObjectStore, bucket: str, *, part_size: int = PART_SIZE) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE}")
        self.store = store
        self.bucket = bucket
        self.part_size = part_size

    async def status(self, header: UploadHeader) -> list[BlobStatus]:
        repository, blobs = _validated(header)
        return await _in_thread(self.store, self._status, repository, blobs)

    async def start(self, header: UploadHeader) -> UploadSession:
        repository, blobs = _validated(header)
        statuses = await _in_thread(self.store, self._status, repository, blobs)
        staged = {
            s.digest: _Staged(blob, s.received_bytes, s.stored)
            for s, blob in zip(statuses, blobs, strict=True)
        }
        return UploadSession(self, header, repository, staged)

    def _status(self, repository: str, blobs: list[UploadBlob]) -> list[BlobStatus]:
        found: list[BlobStatus] = []
        for blob in blobs:
            stored = self.store.stat_object(self.bucket, blob_key(repository, blob.digest))
            if stored is not None and stored.size == blob.size:
                found.append(BlobStatus(blob.digest, blob.size, blob.size, True))
            else:
                received = sum(size for _key, size in self._parts(blob.digest))
                found.append(BlobStatus(blob.digest, blob.size, min(received, blob.size), False))
        return found

    def _parts(self, digest: str) -> list[tuple[str, int]]:
        """The staged parts of a blob that follow one another from offset 0."""
        prefix = staging_prefix(digest)
        parts: list[tuple[str, int]] = []
        expected = 0
        for info in self.store.list_objects(self.bucket, prefix):
            name = info.key[len(prefix) :]
            if not (len(name) == _OFFSET_DIGITS and name.isdigit()) or int(name) != expected:
                break
            parts.append((info.key, info.size))
            expected += info.size
        return parts

    def _discard(self, digest: str) -> None:
        keys = (info.key for info in self.store.list_objects(self.bucket, staging_prefix(digest)))
        self.store.delete_objects(self.bucket, keys)

    def _commit_blob(self, repository: str, blob: UploadBlob, where: str) -> None:
        """Checks a whole staged blob against its digest and makes it a registry blob."""
        parts = self._parts(blob.digest)
        hasher = hashlib.sha256()
        size = 0
        for key, _size in parts:
            data = self.store.get_bytes(self.bucket, key)
            hasher.update(data)
            size += len(data)
        actual = "sha256:" + hasher.hexdigest()
        if size != blob.size or actual != blob.digest:
            self._discard(blob.digest)
            raise ImageChecksumMismatch(
                where,
                blob.digest,
                f"the {size} bytes received hash to {actual}, not the declared {blob.digest} "
                f"of {blob.size} bytes; they were discarded: push the blob again",
            )
        target = blob_key(repository, blob.digest)
        if parts:
            self.store.compose_object(self.bucket, target, [key for key, _ in parts])
        else:
            self.store.put_bytes(self.bucket, target, b"")
        self._discard(blob.digest)


class UploadSession:
    """One PushImage call: chunks in, then finish() writes the manifest."""

    def __init__(
        self,
        uploads: ImageUploads,
        header: UploadHeader,
        repository: str,
        staged: dict[str, _Staged],
    ) -> None:
        self.uploads = uploads
        self.header = header
        self.repository = repository
        self.staged = staged
        self.bytes_received = 0
        self._filling: str | None = None

    async def write(self, digest: str, offset: int, data: bytes) -> None:
        entry = self.staged.get(digest)
        if entry is None:
            raise InvalidRequest(
                [FieldViolation("chunk.digest", f"{digest!r} is not a blob of the header")]
            )
        if self._filling not in (None, digest):
            raise InvalidRequest(
                [
                    FieldViolation(
                        "chunk.digest",
                        f"blob {self._filling} is not whole yet: send each blob's chunks "
                        "in one run",
                    )
                ]
            )
        if offset != entry.next_offset:
            expected = entry.next_offset
            raise ImageUploadOffsetMismatch(
                f"the chunk of {digest} starts at {offset}, but the server's copy ends at "
                f"{expected}: resume from {expected}",
                {"digest": digest, "expectedOffset": str(expected)},
            )
        if offset + len(data) > entry.blob.size:
            raise ImageChecksumMismatch(
                "chunk.data",
                digest,
                f"the chunk at {offset} runs past the declared size {entry.blob.size}",
            )
        self.bytes_received += len(data)
        entry.buffer += data
        self._filling = digest
        while len(entry.buffer) >= self.uploads.part_size:
            await self._flush(entry, self.uploads.part_size)
        if entry.next_offset == entry.blob.size:
            if entry.buffer:
                await self._flush(entry, len(entry.buffer))
            self._filling = None

    async def _flush(self, entry: _Staged, length: int) -> None:
        part = bytes(entry.buffer[:length])
        key = part_key(entry.blob.digest, entry.persisted)
        await _in_thread(
            self.uploads.store, self.uploads.store.put_bytes, self.uploads.bucket, key, part
        )
        del entry.buffer[:length]
        entry.persisted += length

    async def finish(self) -> PushedImage:
        for index, entry in enumerate(self.staged.values()):
            if entry.stored:
                continue
            if entry.persisted != entry.blob.size:
                raise ImageUploadIncomplete(
                    f"blob {entry.blob.digest} has {entry.persisted} of {entry.blob.size} "
                    f"bytes: resume the push from {entry.persisted}",
                    {"digest": entry.blob.digest, "receivedBytes": str(entry.persisted)},
                )
            where = "header.config" if index == 0 else "header.layers"
            await _in_thread(
                self.uploads.store, self.uploads._commit_blob, self.repository, entry.blob, where
            )
        return await _in_thread(self.uploads.store, self._write_manifest)

    def _write_manifest(self) -> PushedImage:
        config = self.header.config
        assert config is not None
        layers = [_Blob(b.digest, b.size, b.media_type) for b in self.header.layers]
        body = _manifest_body(_Blob(config.digest, config.size, CONFIG_MEDIA_TYPE), layers)
        _repository, tag = parse_image_identifier(self.header.image_identifier)
        store = self.uploads.store
        store_manifest(store, self.uploads.bucket, self.repository, tag, body)
        sizes = {entry.blob.digest: entry.blob.size for entry in self.staged.values()}
        return PushedImage(
            repository=self.repository,
            tag=tag,
            manifest_digest=_sha256(body),
            objects=len(sizes) + 1,
            bytes=sum(sizes.values()) + len(body),
        )


def _pushed_repository(identifier: str) -> tuple[str, str]:
    """The repository a push names, and what is wrong with its identifier ("" if nothing)."""
    try:
        repository, tag = parse_image_identifier(identifier)
    except ValueError as exc:
        return "", str(exc)
    if is_digest(tag):
        return repository, "push by tag: the digest is what the pushed manifest hashes to"
    return repository, ""


def _validated(header: UploadHeader) -> tuple[str, list[UploadBlob]]:
    """The repository and the distinct blobs (config first) of a well-formed header."""
    violations: list[FieldViolation] = []
    repository = ""
    repository, problem = _pushed_repository(header.image_identifier)
    if problem:
        violations.append(FieldViolation("header.image_identifier", problem))
    if header.config is None:
        violations.append(FieldViolation("header.config", "required"))
    else:
        violations += _blob_violations("header.config", header.config)
    if not header.layers:
        violations.append(FieldViolation("header.layers", "an image has at least one layer"))
    for index, layer in enumerate(header.layers):
        where = f"header.layers[{index}]"
        violations += _blob_violations(where, layer)
        if layer.media_type not in LAYER_MEDIA_TYPES:
            violations.append(
                FieldViolation(
                    f"{where}.media_type", f"one of {', '.join(sorted(LAYER_MEDIA_TYPES))}"
                )
            )
    blobs: dict[str, UploadBlob] = {}
    for blob in (header.config, *header.layers):
        if blob is None:
            continue
        known = blobs.setdefault(blob.digest, blob)
        if known.size != blob.size:
            violations.append(
                FieldViolation("header.layers", f"{blob.digest} is declared with two sizes")
            )
    if violations:
        raise InvalidRequest(violations)
    return repository, list(blobs.values())


def _blob_violations(where: str, blob: UploadBlob) -> list[FieldViolation]:
    found = []
    if not _DIGEST.fullmatch(blob.digest):
        found.append(FieldViolation(f"{where}.digest", "must be sha256: and 64 lowercase hex"))
    if blob.size < 0:
        found.append(FieldViolation(f"{where}.size", "must not be negative"))
    return found
