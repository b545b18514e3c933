"""Image pushes left unfinished: the reaper removes their staged parts once nobody has
added to them for the upload retention (a push's parts go together, never one by one),
and partial writes as old (S3: unfinished multipart uploads; the local store: its
half-written files). Both adapters, through the reaper's own pass; time is the
reaper's clock and, for the local store, the files' modification times."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from servicecontrol_server.application.image_upload import STAGING, part_key
from servicecontrol_server.application.reaper import Reaper
from servicecontrol_server.bootstrap import unit_of_work_factory
from servicecontrol_server.settings import Settings
from tests.support.s3 import StoreUnderTest

OLD = "sha256:" + "a" * 64
ACTIVE = "sha256:" + "b" * 64
RETENTION = timedelta(hours=24)


def staged(store: StoreUnderTest) -> list[str]:
    return [info.key for info in store.store.list_objects(store.source_bucket, STAGING)]


def reaper(engine: AsyncEngine, store: StoreUnderTest, now: datetime) -> Reaper:
    settings = Settings(
        source_bucket=store.source_bucket,
        upload_retention_seconds=int(RETENTION.total_seconds()),
    )
    return Reaper(unit_of_work_factory(engine), settings, store=store.store, clock=lambda: now)


async def test_parts_and_partial_writes_older_than_the_retention_are_reaped(
    engine: AsyncEngine, any_store: StoreUnderTest
) -> None:
    store, bucket = any_store.store, any_store.source_bucket
    parts = [part_key(OLD, 0), part_key(OLD, 8 << 20), part_key(ACTIVE, 0)]
    for key in parts:
        store.put_bytes(bucket, key, b"part")
    store.put_bytes(bucket, f"hello-web/blobs/{OLD}", b"a finished blob")
    partial = f"hello-web/blobs/{ACTIVE}"
    if any_store.name == "local":
        any_store.start_upload(bucket, partial)
    written = datetime.now(UTC)

    # Within the retention nothing goes.
    early = await reaper(engine, any_store, written + RETENTION - timedelta(hours=1)).reap_once()
    assert early["upload_parts"] == 0
    assert staged(any_store) == parts
    if any_store.name == "minio":
        # The S3 test server dates every multipart upload 2010-11-10, so its age can only
        # be shown past the retention.
        any_store.start_upload(bucket, partial)

    # Past it, every staged part and the partial write go; finished objects stay.
    late = await reaper(engine, any_store, written + RETENTION + timedelta(hours=1)).reap_once()
    assert late["upload_parts"] == len(parts) + 1
    assert staged(any_store) == []
    assert [i.key for i in store.list_objects(bucket, "")] == [f"hello-web/blobs/{OLD}"]
    assert store.abort_incomplete_uploads(bucket, "") == 0  # nothing unfinished is left
    again = await reaper(engine, any_store, written + RETENTION + timedelta(hours=1)).reap_once()
    assert again["upload_parts"] == 0


async def test_a_push_still_receiving_parts_keeps_its_old_ones(
    engine: AsyncEngine, local_store: StoreUnderTest
) -> None:
    """A resumable push may span the retention: its parts go together once the newest is
    old, so one that still receives parts keeps every one it has."""
    store, bucket = local_store.store, local_store.source_bucket
    now = datetime.now(UTC)
    ages = {
        part_key(OLD, 0): timedelta(days=3),
        part_key(OLD, 8 << 20): timedelta(days=2),
        part_key(ACTIVE, 0): timedelta(days=3),
        part_key(ACTIVE, 8 << 20): timedelta(minutes=5),
    }
    root = local_store.store.root / bucket  # type: ignore[attr-defined]
    for key, age in ages.items():
        store.put_bytes(bucket, key, b"part")
        stamp = (now - age).timestamp()
        os.utime(root / key, (stamp, stamp))

    counts = await reaper(engine, local_store, now).reap_once()
    assert counts["upload_parts"] == 2
    assert staged(local_store) == [part_key(ACTIVE, 0), part_key(ACTIVE, 8 << 20)]
    assert not (root / STAGING / OLD).exists()  # its directory went with its parts
