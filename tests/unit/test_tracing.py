"""Tracing is off unless an OTLP endpoint is configured: off, no exporter thread runs and
nothing is wrapped; on, the exporter runs until shutdown. (tests/e2e/test_tracing.py
follows spans from a real server to a real receiver.)"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicecontrol_server import bootstrap, tracing
from servicecontrol_server.adapters.objectstore.traced import TracedObjectStore
from servicecontrol_server.adapters.postgres.traced import TracedPostgresUnitOfWork
from servicecontrol_server.settings import Settings

OTEL_VARIABLES = (
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_SDK_DISABLED",
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in OTEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    tracing.shutdown()
    yield
    tracing.shutdown()


def exporter_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("OtelBatch")]


def test_the_endpoint_comes_from_the_setting_or_opentelemetry_s_own_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert tracing.endpoint(Settings()) is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317")
    assert tracing.endpoint(Settings()) == "http://collector:4317"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4317")
    assert tracing.endpoint(Settings()) == "http://traces:4317"
    assert tracing.endpoint(Settings(otlp_endpoint="http://mine:4317")) == "http://mine:4317"
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.endpoint(Settings(otlp_endpoint="http://mine:4317")) is None


def test_off_by_default_no_exporter_runs_and_nothing_is_wrapped(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert tracing.configure(settings) is False
    assert not tracing.enabled()
    assert exporter_threads() == []
    store = bootstrap.object_store(settings)
    assert not isinstance(store, TracedObjectStore)
    uow = bootstrap.unit_of_work_factory(engine=None)  # type: ignore[arg-type]
    assert not isinstance(uow(), TracedPostgresUnitOfWork)
    # Outside any traced call, annotating costs a lookup and does nothing.
    tracing.annotate(operation_id="op")
    assert tracing.inject() == {}


def test_an_endpoint_turns_it_on_until_shutdown(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, otlp_endpoint="http://127.0.0.1:1")
    assert tracing.configure(settings) is True
    assert exporter_threads() == ["OtelBatchSpanRecordProcessor"]
    assert isinstance(bootstrap.object_store(settings), TracedObjectStore)
    uow = bootstrap.unit_of_work_factory(engine=None)  # type: ignore[arg-type]
    assert isinstance(uow(), TracedPostgresUnitOfWork)
    # A second configure (another application in the process) shares the exporter.
    assert tracing.configure(settings) is True
    assert exporter_threads() == ["OtelBatchSpanRecordProcessor"]
    tracing.shutdown()
    assert not tracing.enabled()
    assert exporter_threads() == []


def test_a_scope_names_its_operation_on_every_span_open_in_it(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing._provider, tracing._tracer = provider, provider.get_tracer("test")
    with tracing.scope_span("call", SpanKind.SERVER):
        early = tracing.start_span("transaction", SpanKind.INTERNAL)
        tracing.annotate(operation_id="op-1", account_id="111111111111")
        late = tracing.start_span("objectstore get_bytes", SpanKind.CLIENT)
        carrier = tracing.inject()
        late.end()
        early.end()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"call", "transaction", "objectstore get_bytes"}
    for span in spans.values():
        assert span.attributes is not None
        assert span.attributes[tracing.OPERATION_ID] == "op-1"
        assert span.attributes[tracing.ACCOUNT_ID] == "111111111111"
    call = spans["call"].context
    assert carrier["traceparent"].split("-")[1] == format(call.trace_id, "032x")
    assert spans["transaction"].parent is not None
    assert spans["transaction"].parent.span_id == call.span_id
