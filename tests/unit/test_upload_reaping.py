"""The reaper's pass over staged image-push parts (application/reaper.py): the cutoff
is the reaper's clock less the upload retention, a push's parts go together, and an
unreachable store fails the pass as any other outage does (the loop logs and retries)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from servicecontrol_server.application.image_upload import part_key
from servicecontrol_server.application.ports import ObjectStoreUnavailable
from servicecontrol_server.application.reaper import Reaper

from .harness import Unit

OLD = "sha256:" + "a" * 64
ACTIVE = "sha256:" + "b" * 64


async def test_staged_parts_go_once_their_push_is_older_than_the_retention() -> None:
    unit = Unit()
    settings = unit.settings.model_copy(update={"upload_retention_seconds": 3600})
    bucket = settings.source_bucket
    now = datetime.now(UTC)
    objects = unit.store.buckets[bucket]
    for key, age in [
        (part_key(OLD, 0), timedelta(hours=3)),
        (part_key(OLD, 8 << 20), timedelta(hours=2)),
        (part_key(ACTIVE, 0), timedelta(hours=3)),
        (part_key(ACTIVE, 8 << 20), timedelta(minutes=10)),
    ]:
        unit.store.put_bytes(bucket, key, b"part")
        objects[key].written_at = now - age

    def reaper(clock: datetime) -> Reaper:
        return Reaper(unit.uow, settings, store=unit.store, clock=lambda: clock)

    assert (await reaper(now - timedelta(hours=2)).reap_once())["upload_parts"] == 0
    assert (await reaper(now).reap_once())["upload_parts"] == 2
    assert sorted(objects) == [part_key(ACTIVE, 0), part_key(ACTIVE, 8 << 20)]
    # Without a store (the database-only reapers of other tests) there is no such pass.
    assert "upload_parts" not in await Reaper(unit.uow, settings).reap_once()

    unit.store.failing.add("reap_stale_uploads")
    with pytest.raises(ObjectStoreUnavailable):
        await reaper(now + timedelta(hours=2)).reap_once()
