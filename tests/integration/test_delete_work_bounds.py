"""Deleting an image copy does work in proportion to its objects: one scan of the prefix
(and one confirming pass that finds nothing), one multi-object delete per batch of at most
1000 keys, progress of one batch's size saved per batch, and, in the local store, each
directory read once and removed once rather than an `rmdir` per key. Counted with
counting stores and a counting `os`, never timed."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from servicecontrol_server.adapters.objectstore import local_store
from servicecontrol_server.adapters.objectstore.local_store import LocalDirectoryObjectStore
from servicecontrol_server.application.images import DeleteProgress, delete_image_copy
from servicecontrol_server.application.ports import ObjectInfo, ObjectStore
from tests.support.faults import FlakyObjectStore

BUCKET = "images"
PREFIX = "services/s1/"


class CountingStore(FlakyObjectStore):
    """Counts the objects each scan yields and the keys each delete is asked for."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.scanned: list[int] = []
        self.delete_batches: list[int] = []

    def scan_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        self.scanned.append(0)
        for info in super().scan_objects(bucket, prefix):
            self.scanned[-1] += 1
            yield info

    def delete_objects(self, bucket: str, keys: Iterable[str]) -> int:
        batch = list(keys)
        self.delete_batches.append(len(batch))
        return super().delete_objects(bucket, batch)


def seed(store: LocalDirectoryObjectStore, directories: int, per_directory: int) -> int:
    """Written straight into the store's layout (one file per key): quicker than puts."""
    store.ensure_bucket(BUCKET)
    for d in range(directories):
        directory = store.root / BUCKET / PREFIX / "blobs" / f"d{d}"
        directory.mkdir(parents=True)
        for i in range(per_directory):
            (directory / f"{i:04d}").write_bytes(b"x")
    store.put_bytes(BUCKET, "services/s10/keep", b"neighbour")
    return directories * per_directory


def test_each_object_is_scanned_once_and_deleted_in_full_batches(tmp_path: Path) -> None:
    store = LocalDirectoryObjectStore(tmp_path, durable=False)
    objects = seed(store, directories=3, per_directory=801)
    counting = CountingStore(store)
    saved: list[DeleteProgress] = []

    deleted = delete_image_copy(counting, BUCKET, PREFIX, save=saved.append)

    assert deleted.objects == objects == 2403
    # One pass meets every object once; the confirming pass finds nothing.
    assert counting.scanned == [2403, 0]
    assert counting.calls["scan_objects"] == 2
    assert counting.delete_batches == [1000, 1000, 403]
    assert counting.calls["abort_incomplete_uploads"] == 1
    # One save per batch, each naming that batch alone: the progress written does not
    # grow with the objects deleted before it.
    assert [p.objects for p in saved] == [1000, 2000, 2403]
    assert [len(p.pending or "") // 16 for p in saved] == [1000, 1000, 403]
    assert [i.key for i in store.list_objects(BUCKET, "services/")] == ["services/s10/keep"]


def test_a_copy_smaller_than_a_batch_is_scanned_once(tmp_path: Path) -> None:
    """Its one batch is the scan's last: the listing had ended before anything was
    deleted, so no key can have been skipped and no confirming scan is made. A copy of
    exactly one batch cannot tell that it ended: it is confirmed."""
    store = LocalDirectoryObjectStore(tmp_path, durable=False)
    objects = seed(store, directories=2, per_directory=10)
    counting = CountingStore(store)

    deleted = delete_image_copy(counting, BUCKET, PREFIX, batch_size=21)

    assert deleted.objects == objects == 20
    assert counting.scanned == [20]
    assert counting.delete_batches == [20]
    assert not (tmp_path / BUCKET / "services" / "s1").exists()
    assert [i.key for i in store.list_objects(BUCKET, "services/")] == ["services/s10/keep"]

    seed_again = seed(LocalDirectoryObjectStore(tmp_path / "two", durable=False), 2, 10)
    again = CountingStore(LocalDirectoryObjectStore(tmp_path / "two", durable=False))
    assert delete_image_copy(again, BUCKET, PREFIX, batch_size=20).objects == seed_again
    assert again.scanned == [20, 0]


class CountingOs:
    """The local store's `os`, counting the directories it opens and removes."""

    def __init__(self) -> None:
        self.opened: Counter[str] = Counter()
        self.removed: Counter[str] = Counter()

    def scandir(self, path: str | Path) -> Iterator[os.DirEntry[str]]:
        self.opened[str(path)] += 1
        return os.scandir(path)

    def rmdir(self, path: str | Path) -> None:
        self.removed[str(path)] += 1
        os.rmdir(path)

    def __getattr__(self, name: str) -> object:
        return getattr(os, name)


def test_the_local_store_reads_each_directory_once_and_removes_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalDirectoryObjectStore(tmp_path, durable=False)
    objects = seed(store, directories=3, per_directory=100)
    counting = CountingOs()
    monkeypatch.setattr(local_store, "os", counting)
    # Path.rmdir, which the pruning uses, goes through os.rmdir too.
    monkeypatch.setattr(Path, "rmdir", lambda self: counting.rmdir(self))

    deleted = delete_image_copy(store, BUCKET, PREFIX, batch_size=50)

    assert deleted.objects == objects
    prefix_dir = tmp_path / BUCKET / "services" / "s1"
    tree = [prefix_dir, prefix_dir / "blobs", *(prefix_dir / "blobs" / f"d{d}" for d in range(3))]
    # Each directory is read once; only the prefix's own is read again, by the
    # confirming pass (which finds it gone).
    assert counting.opened == Counter({str(prefix_dir): 2, **{str(d): 1 for d in tree[1:]}})
    assert not prefix_dir.exists()
    # Removing directories costs a few calls per batch and per directory, not one per
    # key: 6 batches of 50 keys, each in one or two directories, and 5 directories.
    assert sum(counting.removed.values()) <= 2 * 6 + 2 * len(tree) + 3
    assert [i.key for i in store.list_objects(BUCKET, "services/")] == ["services/s10/keep"]
