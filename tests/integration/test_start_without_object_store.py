"""A process starts while the object store is unreachable (a replica restarted during an
object-store outage must not stay down with it), and checks its buckets once the store is
back."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from servicecontrol_server import bootstrap
from servicecontrol_server.application.ports import ObjectStoreUnavailable
from servicecontrol_server.bootstrap import build, ensure_buckets_eventually
from tests.support.server import harness_settings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_server_starts_with_the_object_store_down(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    down = settings.model_copy(update={"s3_endpoint": f"127.0.0.1:{closed_port()}"})
    app = await build(down, database_url, migrate=False)
    try:
        assert app.buckets_pending is not None and not app.buckets_pending.done()
        # Calls that need no object store work meanwhile.
        assert await app.use_cases.events.head(settings.default_account) == "0"
    finally:
        await app.close()
    assert app.buckets_pending.cancelled()
    # With the store up, the buckets are checked at start and nothing is left pending.
    app = await build(settings, database_url, migrate=False)
    try:
        assert app.buckets_pending is None
        assert settings.image_bucket in {b.name for b in s3_server.store().client.list_buckets()}
    finally:
        await app.close()


class FlakyBuckets:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.ensured: list[str] = []

    def ensure_bucket(self, bucket: str) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise ObjectStoreUnavailable("connection refused")
        self.ensured.append(bucket)


async def test_buckets_are_checked_once_the_store_is_back(
    database_url: str, s3_server: Any, tmp_path: Path
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path)
    store = FlakyBuckets(failures=3)
    assert not bootstrap.ensure_buckets(store, settings)  # type: ignore[arg-type]
    await asyncio.wait_for(
        ensure_buckets_eventually(store, settings, first_delay=0.01, max_delay=0.02),  # type: ignore[arg-type]
        10,
    )
    assert store.ensured == [settings.source_bucket, settings.image_bucket]
