"""The object-store wrappers (latency metrics, trace spans) share one delegation: every
public call is observed with its outcome, a listing until it is consumed, and
`run_blocking` (a sequence of the store's own calls) passes through unobserved."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from prometheus_client import REGISTRY

from servicecontrol_server import tracing
from servicecontrol_server.adapters.objectstore.timed import TimedObjectStore
from servicecontrol_server.adapters.objectstore.traced import TracedObjectStore
from servicecontrol_server.application.ports import ObjectNotFound, ObjectStoreUnavailable

HISTOGRAM = "servicecontrol_object_store_call_duration_seconds_count"


class Inner:
    """A store with one call of each shape."""

    limit = 3

    def get_bytes(self, bucket: str, key: str) -> bytes:
        if key == "missing":
            raise ObjectNotFound(key)
        if key == "down":
            raise ObjectStoreUnavailable("down")
        return b"data"

    def list_objects(self, bucket: str, prefix: str) -> Iterator[str]:
        yield from (f"{prefix}{n}" for n in range(self.limit))

    async def run_blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)


def count(operation: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(HISTOGRAM, {"operation": operation, "outcome": outcome})
    return value or 0.0


def test_the_timed_store_records_each_call_with_its_outcome() -> None:
    store: Any = TimedObjectStore(Inner())  # type: ignore[arg-type]
    before = {
        key: count(*key)
        for key in [
            ("get_bytes", "ok"),
            ("get_bytes", "not_found"),
            ("get_bytes", "error"),
            ("list_objects", "ok"),
            ("run_blocking", "ok"),
        ]
    }
    assert store.limit == 3  # attributes are the inner store's
    assert store.get_bytes("b", "k") == b"data"
    with pytest.raises(ObjectNotFound):
        store.get_bytes("b", "missing")
    with pytest.raises(ObjectStoreUnavailable):
        store.get_bytes("b", "down")
    listing = store.list_objects("b", "p/")
    assert count("list_objects", "ok") == before[("list_objects", "ok")]  # not consumed yet
    assert list(listing) == ["p/0", "p/1", "p/2"]
    # A sequence run off the loop is timed by the calls it makes, not as a call itself.
    assert asyncio.run(store.run_blocking(store.get_bytes, "b", "k")) == b"data"
    after = {key: count(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        ("get_bytes", "ok"): 2,
        ("get_bytes", "not_found"): 1,
        ("get_bytes", "error"): 1,
        ("list_objects", "ok"): 1,
        ("run_blocking", "ok"): 0,
    }


def test_the_traced_store_opens_a_span_per_call_with_its_outcome() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import StatusCode

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    saved = tracing._provider, tracing._tracer
    tracing._provider, tracing._tracer = provider, provider.get_tracer("test")
    try:
        store: Any = TracedObjectStore(Inner())  # type: ignore[arg-type]
        store.get_bytes("bucket-1", "k")
        with pytest.raises(ObjectNotFound):
            store.get_bytes("bucket-1", "missing")
        with pytest.raises(ObjectStoreUnavailable):
            store.get_bytes("bucket-1", "down")
        listing = store.list_objects("bucket-1", "p/")
        next(listing)
        assert len(exporter.get_finished_spans()) == 3  # the listing's is still open
        listing.close()  # stopped early: still a success
        asyncio.run(store.run_blocking(lambda: None))
    finally:
        tracing._provider, tracing._tracer = saved
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == [
        "objectstore get_bytes",
        "objectstore get_bytes",
        "objectstore get_bytes",
        "objectstore list_objects",
    ]
    ok, missing, down, listed = spans
    for span in spans:
        assert span.attributes is not None
        assert span.attributes["servicecontrol.object_store.bucket"] == "bucket-1"
    assert missing.attributes is not None
    assert missing.attributes["servicecontrol.object_store.outcome"] == "not_found"
    assert [s.status.status_code for s in spans] == [
        StatusCode.UNSET,
        StatusCode.UNSET,
        StatusCode.ERROR,
        StatusCode.UNSET,
    ]
