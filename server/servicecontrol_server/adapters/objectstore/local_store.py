"""The ObjectStore port on a local directory: the embedded default for a single machine,
so that a fresh install works without an S3 endpoint.

Layout: `<root>/<bucket>/<key>`, one file per object. Every write goes to a temporary
file under `<root>/<bucket>/.uploads/` (mirroring the key's path, on the same file
system) and is renamed into place, so readers only ever see whole objects; a temporary
file left by a crash is this store's "incomplete multipart upload"."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from stat import S_ISREG
from typing import Any, BinaryIO, cast

from ... import faults
from ...application.ports import (
    ObjectInfo,
    ObjectNotFound,
    ObjectStoreError,
    ObjectStoreUnavailable,
)
from . import local_reaping

UPLOADS = ".uploads"
_UPLOADS_WRAPPED = f"/{UPLOADS}/"
_PART_SUFFIX = ".part"
_CHUNK = 1024 * 1024

_Fill = Callable[[BinaryIO], object]
# A delete prunes the directories it emptied once this many are pending (and at its end),
# so that a call with millions of keys in as many directories stays bounded in memory.
_MAX_PENDING_PARENTS = 1000


def _check_bucket(bucket: str) -> None:
    if not bucket or bucket.startswith(".") or "/" in bucket or "\\" in bucket:
        raise ValueError(f"invalid bucket name {bucket!r}")


def _parts(key: str, *, prefix: bool = False) -> list[str]:
    """The path components of a key (or of a key prefix). Rejects anything that could
    leave the bucket's directory or collide with the store's own bookkeeping."""
    if key.startswith("/") or "\\" in key or "\0" in key:
        raise ValueError(f"invalid object key {key!r}")
    parts = key.split("/")
    # A prefix's last part is a name prefix ("" for "a/b/"); a key's must be a name.
    inner = parts[:-1] if prefix else parts
    if any(part in ("", ".", "..") for part in inner) or ".." in parts:
        raise ValueError(f"invalid object key {key!r}")
    if parts and parts[0] == UPLOADS:
        raise ValueError(f"object keys may not start with {UPLOADS}/: {key!r}")
    return parts


def _check_key(key: str) -> None:
    """_parts(key)'s checks without building the list (the delete loop's, once per key):
    wrapped in slashes, a key has an empty, "." or ".." component exactly when it holds
    "//", "/./" or "/../", and starts with the uploads directory exactly when it begins
    with "/{UPLOADS}/"."""
    wrapped = f"/{key}/"
    if (
        "//" in wrapped
        or "/./" in wrapped
        or "/../" in wrapped
        or "\\" in key
        or "\0" in key
        or wrapped.startswith(_UPLOADS_WRAPPED)
    ):
        _parts(key)  # raises, with the reason
        raise ValueError(f"invalid object key {key!r}")


class LocalDirectoryObjectStore:
    """Listings are in S3 order (by UTF-8 bytes of the key) and read one directory at a
    time. OS errors other than a missing file surface as ObjectStoreUnavailable, like a
    sick remote store would."""

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.root = Path(root)
        # The rename is atomic either way; fsync before it keeps a crash from leaving a
        # renamed file whose data never reached the disk.
        self.durable = durable

    def _bucket(self, bucket: str) -> Path:
        _check_bucket(bucket)
        return self.root / bucket

    def _existing_bucket(self, bucket: str) -> Path:
        path = self._bucket(bucket)
        if not path.is_dir():
            raise ObjectStoreError(f"bucket {bucket} does not exist")
        return path

    def _path(self, bucket: str, key: str) -> Path:
        return self._bucket(bucket).joinpath(*_parts(key))

    def ensure_bucket(self, bucket: str) -> None:
        with _os_errors(f"ensure bucket {bucket}"):
            self._bucket(bucket).mkdir(parents=True, exist_ok=True)

    def put_object(self, bucket: str, key: str, data: BinaryIO, length: int) -> None:
        def write(out: BinaryIO) -> None:
            left = length
            while left > 0:
                chunk = data.read(min(_CHUNK, left))
                if not chunk:
                    raise ValueError(f"stream ended {left} bytes short of {length}")
                out.write(chunk)
                left -= len(chunk)

        self._write(bucket, key, write)

    def put_bytes(self, bucket: str, key: str, data: bytes) -> None:
        self._write(bucket, key, lambda out: out.write(data))

    def get_bytes(self, bucket: str, key: str) -> bytes:
        path = self._path(bucket, key)
        with _os_errors(f"get {bucket}/{key}"):
            try:
                return path.read_bytes()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
                raise ObjectNotFound(f"{bucket}/{key}") from exc

    def stat_object(self, bucket: str, key: str) -> ObjectInfo | None:
        path = self._path(bucket, key)
        with _os_errors(f"stat {bucket}/{key}"):
            try:
                found = path.stat()
            except (FileNotFoundError, NotADirectoryError):
                return None
        if not _is_file(found):
            return None
        return ObjectInfo(key=key, size=found.st_size)

    def copy_object(self, src_bucket: str, src_key: str, dst_bucket: str, dst_key: str) -> None:
        src = self._path(src_bucket, src_key)
        with _os_errors(f"copy {src_bucket}/{src_key}"):
            try:
                source = src.open("rb")
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
                raise ObjectNotFound(f"{src_bucket}/{src_key}") from exc
        with source:
            self._write(dst_bucket, dst_key, lambda out: shutil.copyfileobj(source, out, _CHUNK))

    def compose_object(self, bucket: str, key: str, sources: Sequence[str]) -> None:
        if not sources:
            raise ValueError("compose_object needs at least one source")
        paths = [self._path(bucket, source) for source in sources]

        def concatenate(out: BinaryIO) -> None:
            for source, path in zip(sources, paths, strict=True):
                try:
                    part = path.open("rb")
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
                    raise ObjectNotFound(f"{bucket}/{source}") from exc
                with part:
                    shutil.copyfileobj(part, out, _CHUNK)

        self._write(bucket, key, concatenate)

    def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        root = self._bucket(bucket)
        parts = _parts(prefix, prefix=True) if prefix else [""]
        start = root.joinpath(*parts[:-1])
        with _os_errors(f"list {bucket}/{prefix}"):
            yield from self._walk(start, "/".join(parts[:-1]), parts[-1], at_root=start == root)

    def _walk(
        self, directory: Path, base: str, first: str, *, at_root: bool
    ) -> Iterator[ObjectInfo]:
        """Entries sort as S3 keys do: a directory `d` sorts as `d/`, so that `d-x` comes
        before everything under `d/`."""
        try:
            with os.scandir(directory) as scan:
                entries = [
                    (entry.name + "/" if entry.is_dir(follow_symlinks=False) else entry.name, entry)
                    for entry in scan
                    if entry.name.startswith(first) and not (at_root and entry.name == UPLOADS)
                ]
        except (FileNotFoundError, NotADirectoryError):
            # A missing bucket or prefix lists as empty; so does a directory removed by a
            # concurrent delete.
            return
        entries.sort(key=lambda item: item[0])
        for name, entry in entries:
            key = f"{base}/{entry.name}" if base else entry.name
            if name.endswith("/"):
                yield from self._walk(Path(entry.path), key, "", at_root=False)
                continue
            try:
                found = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if _is_file(found):
                yield ObjectInfo(key=key, size=found.st_size)

    def scan_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """A depth-first walk over open directory streams: memory is one stream per
        level, however many objects a directory holds. Directories are read in the file
        system's order, not sorted. Empty directories met on the way (what a delete
        killed between its unlinks and its pruning leaves) are removed."""
        root = self._bucket(bucket)
        parts = _parts(prefix, prefix=True) if prefix else [""]
        start = root.joinpath(*parts[:-1])
        whole_directory = parts[-1] == "" and start != root
        with _os_errors(f"scan {bucket}/{prefix}"):
            yield from _scan(start, "/".join(parts[:-1]), parts[-1], at_root=start == root)
            if whole_directory:
                _prune_empty(start, root)

    def delete_objects(self, bucket: str, keys: Iterable[str]) -> int:
        """Unlinks each key, then removes the directories the call emptied: each
        distinct parent once, deepest first (not one rmdir attempt per key)."""
        root = self._bucket(bucket)
        base = str(root)
        asked = 0
        parents: set[str] = set()
        key = ""
        # Plain strings and one error handler for the whole loop: it runs once per object.
        try:
            for key in keys:
                asked += 1
                _check_key(key)
                path = f"{base}/{key}"
                try:
                    os.unlink(path)
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    # Missing, or only a "directory" of longer keys: nothing to delete.
                    continue
                parents.add(path.rpartition("/")[0])
                if len(parents) > _MAX_PENDING_PARENTS:
                    self._prune_all(parents, root)
        except OSError as exc:
            raise ObjectStoreUnavailable(f"delete {bucket}/{key}: {exc}") from exc
        # A kill here leaves emptied directories behind; the next scan removes them.
        faults.checkpoint("local_store:before_prune")
        with _os_errors(f"delete from {bucket}"):
            self._prune_all(parents, root)
        return asked

    @staticmethod
    def _prune_all(parents: set[str], root: Path) -> None:
        for parent in sorted(parents, key=lambda p: p.count(os.sep), reverse=True):
            _prune_empty(Path(parent), root)
        parents.clear()

    def abort_incomplete_uploads(self, bucket: str, prefix: str) -> int:
        root = self._bucket(bucket)
        uploads = root / UPLOADS
        parts = _parts(prefix, prefix=True) if prefix else [""]
        aborted = 0
        with _os_errors(f"abort uploads in {bucket}/{prefix}"):
            start = uploads.joinpath(*parts[:-1])
            if not start.is_dir():
                return 0
            for directory, _dirs, files in os.walk(start):
                rel = Path(directory).relative_to(uploads).as_posix()
                for name in files:
                    key = _key_of_part(f"{rel}/{name}" if rel != "." else name)
                    if key is None or not key.startswith(prefix):
                        continue
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(directory, name))
                        aborted += 1
            _prune_tree(start, uploads)
        return aborted

    def reap_stale_uploads(self, bucket: str, prefix: str, before: datetime) -> int:
        root = self._bucket(bucket)
        parts = _parts(prefix, prefix=True)
        if not prefix.endswith("/") or len(parts) < 2:
            raise ValueError(f"reap_stale_uploads needs a folder prefix: {prefix!r}")
        cutoff = before.timestamp()
        with _os_errors(f"reap stale uploads in {bucket}/{prefix}"):
            removed = local_reaping.reap_groups(root.joinpath(*parts[:-1]), cutoff)
            return removed + local_reaping.reap_partial_files(root / UPLOADS, _PART_SUFFIX, cutoff)

    def _write(self, bucket: str, key: str, fill: _Fill) -> None:
        root = self._existing_bucket(bucket)
        parts = _parts(key)
        final = root.joinpath(*parts)
        temp = root.joinpath(UPLOADS, *parts[:-1], f"{parts[-1]}.{uuid.uuid4().hex}{_PART_SUFFIX}")
        with _os_errors(f"put {bucket}/{key}"):
            out = _create(temp)
            try:
                with out:
                    fill(out)
                    if self.durable:
                        out.flush()
                        os.fsync(out.fileno())
                # A concurrent delete may prune the (empty) target directory between the
                # mkdir and the rename; the second round recreates it.
                for attempt in range(3):
                    try:
                        final.parent.mkdir(parents=True, exist_ok=True)
                        os.replace(temp, final)
                        break
                    except FileNotFoundError:
                        if attempt == 2:
                            raise
                    except (FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
                        # S3 allows both `a` and `a/b`; a directory tree cannot.
                        raise ObjectStoreError(
                            f"put {bucket}/{key}: key collides with another key's path"
                        ) from exc
            except BaseException:
                with contextlib.suppress(OSError):
                    temp.unlink()
                raise
            finally:
                _prune_empty(temp.parent, root / UPLOADS)


def _create(path: Path) -> BinaryIO:
    """Creates path and its directories. Retried because a concurrent writer that just
    finished may prune the (then empty) directory between the mkdir and the open."""
    for attempt in range(3):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            return path.open("xb")
        except FileNotFoundError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _key_of_part(relative: str) -> str | None:
    """`a/b.<32 hex>.part` -> `a/b`: the key a temporary file was going to become."""
    if not relative.endswith(_PART_SUFFIX):
        return None
    stem = relative[: -len(_PART_SUFFIX)]
    key, dot, token = stem.rpartition(".")
    if not dot or len(token) != 32:
        return None
    return key


def _is_file(found: os.stat_result) -> bool:
    return stat.S_ISREG(found.st_mode)


def _prune_empty(directory: Path, stop: Path) -> None:
    """Removes now-empty directories up to (not including) stop, so that deleted prefixes
    leave nothing behind; a directory that is not empty (or is being filled) stays."""
    while directory != stop and stop in directory.parents:
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def _scan(directory: Path, base: str, first: str, *, at_root: bool) -> Iterator[ObjectInfo]:
    """The objects under directory whose first path component starts with `first`,
    depth first over open directory streams. Directories below the first level that
    turn out empty once walked are removed."""
    try:
        top = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return
    # (stream, its directory, the key of that directory, remove it if found empty)
    stack: list[tuple[Iterator[os.DirEntry[str]], str, str, bool]] = [
        (top, str(directory), base, False)
    ]
    try:
        while stack:
            stream, path, key_base, prunable = stack[-1]
            entry = next(stream, None)
            if entry is None:
                cast(Any, stream).close()
                stack.pop()
                if prunable:
                    with contextlib.suppress(OSError):
                        os.rmdir(path)
                continue
            name = entry.name
            if len(stack) == 1 and (not name.startswith(first) or (at_root and name == UPLOADS)):
                continue
            key = f"{key_base}/{name}" if key_base else name
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append((os.scandir(entry.path), entry.path, key, True))
                    continue
                found = entry.stat(follow_symlinks=False)
            except (FileNotFoundError, NotADirectoryError):
                # Removed by a concurrent delete since the directory was read.
                continue
            if S_ISREG(found.st_mode):
                yield ObjectInfo(key=key, size=found.st_size)
    finally:
        for stream, *_ in stack:
            cast(Any, stream).close()


def _prune_tree(start: Path, stop: Path) -> None:
    for directory, _dirs, _files in os.walk(start, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(directory)
    _prune_empty(start.parent, stop)


@contextlib.contextmanager
def _os_errors(what: str) -> Iterator[None]:
    try:
        yield
    except ObjectStoreError:
        raise
    except OSError as exc:
        raise ObjectStoreUnavailable(f"{what}: {exc}") from exc
