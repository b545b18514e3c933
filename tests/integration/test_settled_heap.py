"""A process settles its heap (bootstrap.settle_heap) once it has built what it serves
with: what it built is then out of the cyclic collector's full walks, which on a server
stopped the event loop for 70-120 ms each (docs/benchmarks-requests.md). `serve` does it
before it announces itself ready, `work` before its loops start."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from servicecontrol_server.bootstrap import Bound, build, serve, settle_heap, work
from tests.support.server import harness_settings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """This test process's collector as it was: nothing frozen before or after."""
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()


class _Node:
    def __init__(self) -> None:
        self.other: Any = None


def test_garbage_is_collected_first_and_what_lives_is_frozen(unfrozen: None) -> None:
    a, b = _Node(), _Node()
    a.other, b.other = b, a  # a cycle, only the collector frees it
    garbage = weakref.ref(a)
    del a, b
    alive = _Node()
    assert gc.get_freeze_count() == 0
    settle_heap()
    assert garbage() is None  # collected, not frozen
    assert gc.get_freeze_count() > 0
    assert not gc.is_finalized(alive)
    # Still freed by reference counting once frozen.
    gone = weakref.ref(alive)
    del alive
    assert gone() is None


async def test_serve_settles_before_it_is_ready(
    database_url: str, s3_server: Any, tmp_path: Path, unfrozen: None
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path, aws_listen="", console_listen="")
    app = await build(settings, database_url, migrate=False, serving=True)
    gc.unfreeze()
    stop = asyncio.Event()
    frozen_when_ready: list[int] = []

    def ready(bound: Bound) -> None:
        frozen_when_ready.append(gc.get_freeze_count())
        stop.set()

    try:
        await asyncio.wait_for(serve(app, stop, ready), 60)
    finally:
        await app.close()
    assert len(frozen_when_ready) == 1
    assert frozen_when_ready[0] > 0


async def test_work_settles_before_its_loops(
    database_url: str, s3_server: Any, tmp_path: Path, unfrozen: None
) -> None:
    settings = harness_settings(database_url, s3_server, tmp_path, aws_listen="", console_listen="")
    app = await build(settings, database_url, migrate=False)
    gc.unfreeze()
    stop = asyncio.Event()
    stop.set()  # the loops end at once
    try:
        await asyncio.wait_for(work(app, stop, 0, relay_and_reaper=False), 60)
    finally:
        await app.close()
    assert gc.get_freeze_count() > 0
