"""An ObjectStore whose every call is a trace span (bootstrap wraps the store in it when
tracing is on), carrying the operation of the call or job attempt it serves. A listing's
span lasts until the caller has consumed it."""

from __future__ import annotations

from typing import Any

from opentelemetry.trace import SpanKind

from ... import tracing
from ...application.ports import ObjectStore
from .observed import ObservedObjectStore


class TracedObjectStore(ObservedObjectStore):
    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, _SpanObservation.start)


class _SpanObservation:
    def __init__(self, span: tracing.OpenSpan) -> None:
        self.span = span

    @classmethod
    def start(cls, operation: str, args: tuple[Any, ...]) -> _SpanObservation:
        attributes: dict[str, Any] = {"servicecontrol.object_store.operation": operation}
        if args and isinstance(args[0], str):
            attributes["servicecontrol.object_store.bucket"] = args[0]
        return cls(tracing.start_span(f"objectstore {operation}", SpanKind.CLIENT, attributes))

    def finish(self, outcome: str, error: BaseException | None) -> None:
        if outcome == "not_found":
            # An answer, not a failure: the caller asked whether it exists.
            self.span.set_attribute("servicecontrol.object_store.outcome", "not_found")
        self.span.end(error)
