"""The bounded object-store wrapper: every call bounded in time, on pools of its own, and
a delete's plan that reads a bounded amount of the store."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from servicecontrol_server.adapters.objectstore.bounded import BoundedObjectStore
from servicecontrol_server.application.offload import off_loop
from servicecontrol_server.application.ports import ObjectInfo, ObjectStoreUnavailable
from tests.support.waiting import wait_until

from .fakes import FakeObjectStore
from .harness import ACCOUNT, Unit

BUCKET = "b"


class GatedStore(FakeObjectStore):
    """A store whose calls hang until `gate` is set, as a store that accepts and never
    answers does; `entered` counts calls that reached it."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = 0

    def _call(self, name: str) -> None:
        self.entered += 1
        self.gate.wait()
        super()._call(name)


def bounded(
    inner: FakeObjectStore, *, timeout: float = 0.2, threads: int = 1
) -> BoundedObjectStore:
    return BoundedObjectStore(inner, lane="test", call_timeout=timeout, threads=threads)


def test_a_call_that_gets_no_answer_fails_as_unavailable_after_the_timeout() -> None:
    inner = GatedStore()
    inner.ensure_bucket(BUCKET)
    store = bounded(inner)
    inner.gate.clear()
    try:
        with pytest.raises(ObjectStoreUnavailable, match="no answer .* within 0.2s"):
            store.get_bytes(BUCKET, "k")
    finally:
        inner.gate.set()
        store.close()


async def test_a_pool_whose_threads_are_stuck_refuses_within_the_bound_and_recovers() -> None:
    inner = GatedStore()
    inner.ensure_bucket(BUCKET)
    inner.put_bytes(BUCKET, "k", b"v")
    store = bounded(inner, timeout=0.1, threads=1)
    inner.gate.clear()
    try:
        with pytest.raises(ObjectStoreUnavailable, match="no answer"):
            store.get_bytes(BUCKET, "k")
        # The one thread is still stuck in the store: the next call waits no longer than
        # the bound for it, and never reaches the store.
        entered = inner.entered
        with pytest.raises(ObjectStoreUnavailable, match="test pool busy: 1 calls outstanding"):
            store.get_bytes(BUCKET, "k")
        assert inner.entered == entered
    finally:
        inner.gate.set()

    def answers() -> bool:
        try:
            return store.get_bytes(BUCKET, "k") == b"v"
        except ObjectStoreUnavailable:
            return False

    await wait_until(answers, timeout=5)
    store.close()


async def test_blocking_work_runs_on_the_lanes_own_threads_and_refuses_when_they_stay_busy() -> (
    None
):
    inner = GatedStore()
    inner.ensure_bucket(BUCKET)
    store = bounded(inner, timeout=0.2, threads=1)
    names: list[str] = []

    def work() -> str:
        names.append(threading.current_thread().name)
        return "done"

    assert await off_loop(store, work) == "done"
    assert names[0].startswith("objectstore-test-run")

    release = threading.Event()
    stuck = asyncio.ensure_future(store.run_blocking(release.wait))
    await wait_until(lambda: not store._run_slots._value)  # noqa: SLF001 - the slot is taken
    with pytest.raises(ObjectStoreUnavailable, match="test pool busy"):
        await store.run_blocking(work)
    release.set()
    assert await stuck is True
    await wait_until(lambda: store._run_slots._value == 1)  # noqa: SLF001
    assert await store.run_blocking(work) == "done"
    store.close()


async def test_a_waiting_caller_that_is_cancelled_stops_waiting_at_once() -> None:
    store = bounded(FakeObjectStore(), timeout=5, threads=1)
    release = threading.Event()
    waiting = asyncio.ensure_future(store.run_blocking(release.wait))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    store.close()


@pytest.mark.parametrize("method", ["list_objects", "scan_objects"])
def test_each_page_of_a_listing_is_bounded(method: str) -> None:
    class HangsMidListing(FakeObjectStore):
        def __init__(self, gate: threading.Event) -> None:
            super().__init__()
            self.gate = gate

        def list_objects(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
            yield ObjectInfo("p/0", 1)
            self.gate.wait()
            yield ObjectInfo("p/1", 1)

        scan_objects = list_objects

    gate = threading.Event()
    store = bounded(HangsMidListing(gate), timeout=0.2, threads=2)
    with pytest.raises(ObjectStoreUnavailable, match=f"{method}: no answer"):
        list(getattr(store, method)(BUCKET, "p/"))
    gate.set()
    store.close()


@pytest.mark.parametrize("method", ["list_objects", "scan_objects"])
@pytest.mark.parametrize(("objects", "calls"), [(0, 2), (999, 2), (1000, 3), (2500, 4)])
def test_a_listing_is_handed_over_by_the_page_not_by_the_object(
    method: str, objects: int, calls: int
) -> None:
    """One bounded call starts the listing, then one per chunk of up to 1000 objects
    (S3's page): a delete of 100,000 objects must not make 100,000 trips to the pool."""
    inner = FakeObjectStore()
    inner.ensure_bucket(BUCKET)
    for i in range(objects):
        inner.put_bytes(BUCKET, f"p/{i:05d}", b"x")
    store = bounded(inner, timeout=5, threads=2)
    submitted = 0
    submit = store._calls.submit

    def counting(fn: Any, *args: Any) -> Any:
        nonlocal submitted
        submitted += 1
        return submit(fn, *args)

    store._calls.submit = counting  # type: ignore[method-assign]
    try:
        keys = [info.key for info in getattr(store, method)(BUCKET, "p/")]
    finally:
        store.close()
    assert sorted(keys) == [f"p/{i:05d}" for i in range(objects)]
    assert submitted == calls


async def test_the_plan_reads_the_copys_manifest_and_lists_nothing() -> None:
    unit = Unit()
    objects = unit.push_image()
    svc = await unit.running_service()
    unit.store.calls.clear()

    plan = (await unit.services.delete_service(ACCOUNT, svc.service_arn, validate_only=True)).plan

    assert plan is not None
    assert plan["image_objects"] == objects
    assert plan["estimated"] is True
    assert "list_objects" not in unit.store.calls
    assert unit.store.calls == ["get_bytes"]


async def test_a_copy_without_a_manifest_is_counted_up_to_the_cap() -> None:
    unit = Unit()
    unit.settings = unit.settings.model_copy(update={"deletion_plan_listing_cap": 3})
    unit.services.settings = unit.settings
    unit.push_image(layers=6)
    svc = await unit.running_service()
    prefix = f"services/{svc.service_id}/"
    unit.store.buckets[unit.settings.image_bucket].pop(f"{prefix}manifest.json")
    assert len(unit.image_keys(svc.service_id)) > 3

    plan = (await unit.services.delete_service(ACCOUNT, svc.service_arn, validate_only=True)).plan

    assert plan is not None
    assert plan["image_objects"] == 3
    assert plan["estimated"] is True


async def test_a_call_waits_for_a_thread_that_a_healthy_store_frees() -> None:
    store = bounded(FakeObjectStore(), timeout=30, threads=1)
    release = threading.Event()
    first = asyncio.ensure_future(store.run_blocking(release.wait))
    await wait_until(lambda: not store._run_slots._value)  # noqa: SLF001 - the slot is taken
    second = asyncio.ensure_future(store.run_blocking(lambda: "second"))
    for _ in range(3):
        await asyncio.sleep(0)  # let it run to where it would have been refused
    assert not second.done()  # waiting for the thread, not refused
    release.set()
    assert await first is True
    assert await second == "second"
    store.close()
