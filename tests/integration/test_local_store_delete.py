"""Deleting an image copy from the local-directory store: one streamed scan that counts and
deletes, progress saved before each batch, and no directory left behind for the deleted
prefix, even when the deleting process is killed mid-delete and another run finishes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from servicecontrol_server.adapters.objectstore.local_store import LocalDirectoryObjectStore
from servicecontrol_server.application.images import DeleteProgress, delete_image_copy

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "images"
PREFIX = "services/s1/"

# Seeds the copy, then deletes it with progress saved to a file after each save; armed
# with a crash point, it dies there with SIGKILL.
CHILD = """
import json, sys
from pathlib import Path
from servicecontrol_server.adapters.objectstore.local_store import LocalDirectoryObjectStore
from servicecontrol_server.application.images import delete_image_copy
root, progress_file = Path(sys.argv[1]), Path(sys.argv[2])
store = LocalDirectoryObjectStore(root, durable=False)
def save(p):
    progress_file.write_text(json.dumps(p.as_progress()))
delete_image_copy(store, "images", "services/s1/", batch_size=7, save=save)
"""


def seed(store: LocalDirectoryObjectStore) -> tuple[int, int]:
    """A copy spread over nested directories, beside a neighbour that must survive."""
    store.ensure_bucket(BUCKET)
    objects = size = 0
    for d in range(4):
        for i in range(6):
            data = b"x" * (i + d)
            store.put_bytes(BUCKET, f"{PREFIX}blobs/d{d}/sub/{i:03d}", data)
            objects += 1
            size += len(data)
    store.put_bytes(BUCKET, f"{PREFIX}manifest.json", b"{}")
    store.put_bytes(BUCKET, "services/s10/keep", b"neighbour")
    return objects + 1, size + 2


def directories_left(root: Path) -> list[str]:
    """The directories of the deleted prefix still on disk."""
    base = root / BUCKET / "services" / "s1"
    return sorted(str(Path(d).relative_to(base.parent)) for d, _, _ in os.walk(base))


def test_a_delete_leaves_no_directory_of_the_prefix(tmp_path: Path) -> None:
    store = LocalDirectoryObjectStore(tmp_path, durable=False)
    objects, size = seed(store)
    saved: list[DeleteProgress] = []

    deleted = delete_image_copy(store, BUCKET, PREFIX, batch_size=10, save=saved.append)

    assert (deleted.objects, deleted.bytes) == (objects, size)
    # Saved before each batch of at most 10: 25 objects, three batches.
    assert [p.objects for p in saved] == [10, 20, 25]
    assert directories_left(tmp_path) == []
    assert [i.key for i in store.list_objects(BUCKET, "services/")] == ["services/s10/keep"]


def test_the_scan_streams_and_removes_empty_directories_it_meets(tmp_path: Path) -> None:
    store = LocalDirectoryObjectStore(tmp_path, durable=False)
    objects, _ = seed(store)
    # What a kill between the unlinks and the pruning leaves: emptied directories.
    for d in range(2):
        for f in (tmp_path / BUCKET / "services/s1/blobs" / f"d{d}" / "sub").iterdir():
            f.unlink()
    scanned = sorted(i.key for i in store.scan_objects(BUCKET, PREFIX))
    assert len(scanned) == objects - 12
    assert scanned == sorted(i.key for i in store.list_objects(BUCKET, PREFIX))
    assert not (tmp_path / BUCKET / "services/s1/blobs/d0").exists()
    assert (tmp_path / BUCKET / "services/s1/blobs/d2/sub").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize(
    "crash_at", ["local_store:before_prune", "delete:before_batch", "delete:between_batches"]
)
def test_a_delete_killed_midway_is_finished_by_the_next_run_exactly(
    tmp_path: Path, crash_at: str
) -> None:
    store = LocalDirectoryObjectStore(tmp_path, durable=False)
    objects, size = seed(store)
    progress_file = tmp_path / "progress.json"
    script = CHILD
    if crash_at.startswith("delete:"):
        # The job's crash points sit around each batch's delete call, as in jobs.py.
        script = script.replace(
            "store = LocalDirectoryObjectStore(root, durable=False)",
            "from servicecontrol_server.application.jobs import _CrashBetweenBatches\n"
            "store = _CrashBetweenBatches(LocalDirectoryObjectStore(root, durable=False))",
        )
    child = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(progress_file)],
        cwd=ROOT,
        env={**os.environ, "SERVICECONTROL_CRASH_AT": crash_at},
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == -9, child.stderr.decode()[-2000:]
    progress = json.loads(progress_file.read_text())
    assert progress["image_pending"]
    left = sum(1 for _ in store.scan_objects(BUCKET, PREFIX))
    assert 0 < left <= objects

    finished = delete_image_copy(
        store, BUCKET, PREFIX, batch_size=7, resume=DeleteProgress.from_progress(progress)
    )

    assert (finished.objects, finished.bytes) == (objects, size)
    assert directories_left(tmp_path) == []
    assert [i.key for i in store.list_objects(BUCKET, "services/")] == ["services/s10/keep"]
