"""OpenTelemetry tracing: spans for the calls on both endpoints, the transactions, the job
attempts and the object-store calls, all carrying the operation id they serve
(`servicecontrol.operation_id`), the service ARN and the account where known.

Off unless an OTLP endpoint is configured (SERVICECONTROL_OTLP_ENDPOINT, or OpenTelemetry's
own OTEL_EXPORTER_OTLP_TRACES_ENDPOINT / OTEL_EXPORTER_OTLP_ENDPOINT). Off, nothing is
wrapped and no exporter runs: bootstrap builds the traced adapters, the interceptor and the
worker's attempt tracer only when `configure` turned tracing on.

A *scope* is one call or one job attempt: what any span in it learns about the operation
(`annotate`) is set on every span of the scope still open, and on the spans it opens later.
The job carries the trace context of the call that enqueued it (`inject`, in the job's
payload), so that each attempt's span is a child of that call's trace."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .application.ports import ClaimedJob
from .settings import Settings

log = logging.getLogger(__name__)

OPERATION_ID = "servicecontrol.operation_id"
SERVICE_ARN = "servicecontrol.service_arn"
ACCOUNT_ID = "servicecontrol.account_id"
INSTRUMENTATION = "servicecontrol_server"

_tracer: trace.Tracer = trace.NoOpTracer()
_provider: Any = None
_lock = threading.Lock()


def endpoint(settings: Settings) -> str | None:
    """Where spans go, or None: tracing is off."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    return (
        settings.otlp_endpoint
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or None
    )


def configure(settings: Settings) -> bool:
    """Turns tracing on when an endpoint is configured (once per process); True if on."""
    global _tracer, _provider
    where = endpoint(settings)
    if where is None:
        return enabled()
    with _lock:
        if _provider is not None:
            return True
        # Imported only when on: the SDK and the exporter cost nothing when off.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporter = (
            OTLPSpanExporter(endpoint=settings.otlp_endpoint)
            if settings.otlp_endpoint
            else OTLPSpanExporter()
        )
        provider = TracerProvider(resource=Resource.create({"service.name": "servicecontrol"}))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        _provider = provider
        _tracer = provider.get_tracer(INSTRUMENTATION)
    log.info("tracing on", extra={"otlp_endpoint": where})
    return True


def enabled() -> bool:
    return _provider is not None


def shutdown() -> None:
    """Exports what is buffered and stops the exporter (a process's last act)."""
    global _tracer, _provider
    with _lock:
        provider, _provider = _provider, None
        _tracer = trace.NoOpTracer()
    if provider is not None:
        provider.shutdown()


@dataclass
class _Scope:
    attributes: dict[str, str] = field(default_factory=dict)
    spans: list[Span] = field(default_factory=list)


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar(
    "servicecontrol_trace_scope", default=None
)


def annotate(
    *,
    operation_id: str | None = None,
    service_arn: str | None = None,
    account_id: str | None = None,
) -> None:
    """What the current call or attempt has learnt of its operation: set on its open
    spans and on those it opens later. Nothing when tracing is off."""
    scope = _scope.get()
    if scope is None:
        return
    found = {
        name: value
        for name, value in (
            (OPERATION_ID, operation_id),
            (SERVICE_ARN, service_arn),
            (ACCOUNT_ID, account_id),
        )
        if value
    }
    if not found:
        return
    scope.attributes.update(found)
    for span in list(scope.spans):
        span.set_attributes(found)


@contextlib.contextmanager
def scope_span(
    name: str,
    kind: SpanKind,
    attributes: Mapping[str, Any] | None = None,
    parent: Context | None = None,
) -> Iterator[Span]:
    """Opens a scope and its root span (the current span inside the block)."""
    scope = _Scope()
    token = _scope.set(scope)
    try:
        with _tracer.start_as_current_span(
            name, context=parent, kind=kind, attributes=dict(attributes or {})
        ) as span:
            scope.spans.append(span)
            try:
                yield span
            finally:
                scope.spans.remove(span)
    finally:
        _scope.reset(token)


def start_span(name: str, kind: SpanKind, attributes: Mapping[str, Any] | None = None) -> OpenSpan:
    """A span under the current one, with its scope's attributes, that the caller ends
    (transactions and object-store listings outlive a `with` block)."""
    scope = _scope.get()
    merged = dict(scope.attributes) if scope is not None else {}
    merged.update(attributes or {})
    span = _tracer.start_span(name, kind=kind, attributes=merged)
    if scope is not None:
        scope.spans.append(span)
    return OpenSpan(span, scope)


class OpenSpan:
    """A span started by `start_span`; `end` it once, from any thread."""

    def __init__(self, span: Span, scope: _Scope | None) -> None:
        self.span = span
        self._scope = scope

    def set_attribute(self, name: str, value: Any) -> None:
        self.span.set_attribute(name, value)

    def end(self, error: BaseException | None = None) -> None:
        if self._scope is not None:
            with contextlib.suppress(ValueError):
                self._scope.spans.remove(self.span)
        if error is not None:
            self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        self.span.end()


def inject() -> dict[str, str]:
    """The current trace context (W3C traceparent), to travel with a job."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


def extract(carrier: Mapping[str, str]) -> Context:
    return propagate.extract(dict(carrier))


class AttemptTracing:
    """The engine's AttemptTracer: one span per job attempt, a child of the trace of the
    call that enqueued the job, carrying the job's operation, service and account."""

    @contextlib.contextmanager
    def attempt(self, job: ClaimedJob) -> Iterator[_Attempt]:
        attributes: dict[str, Any] = {
            "servicecontrol.job.id": job.job_id,
            "servicecontrol.job.kind": job.kind,
            "servicecontrol.job.attempt": job.attempts,
        }
        with scope_span(
            f"job {job.kind}",
            SpanKind.CONSUMER,
            attributes,
            parent=extract(job.trace_context) if job.trace_context else None,
        ) as span:
            annotate(
                operation_id=job.operation_id,
                service_arn=job.service_arn,
                account_id=job.account_id,
            )
            yield _Attempt(span)


class _Attempt:
    def __init__(self, span: Span) -> None:
        self.span = span

    def ended(self, outcome: str) -> None:
        self.span.set_attribute("servicecontrol.job.outcome", outcome)
        if outcome == "failed":
            self.span.set_status(Status(StatusCode.ERROR, "job failed"))
