"""An ObjectStore whose every call is a trace span (bootstrap wraps the store in it when
tracing is on), carrying the operation of the call or job attempt it serves. A listing's
span lasts until the caller has consumed it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry.trace import SpanKind

from ... import tracing
from ...application.ports import ObjectNotFound, ObjectStore


class TracedObjectStore:
    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target) or name.startswith("_"):
            return target
        return _traced(name, target)


def _traced(operation: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def traced(*args: Any, **kwargs: Any) -> Any:
        attributes: dict[str, Any] = {"servicecontrol.object_store.operation": operation}
        if args and isinstance(args[0], str):
            attributes["servicecontrol.object_store.bucket"] = args[0]
        span = tracing.start_span(f"objectstore {operation}", SpanKind.CLIENT, attributes)
        try:
            result = call(*args, **kwargs)
        except ObjectNotFound:
            # An answer, not a failure: the caller asked whether it exists.
            span.set_attribute("servicecontrol.object_store.outcome", "not_found")
            span.end()
            raise
        except BaseException as exc:
            span.end(exc)
            raise
        if isinstance(result, Iterator):
            return _traced_iteration(span, result)
        span.end()
        return result

    return traced


def _traced_iteration(span: tracing.OpenSpan, items: Iterator[Any]) -> Iterator[Any]:
    error: BaseException | None = None
    try:
        yield from items
    except GeneratorExit:
        raise  # the caller stopped early
    except BaseException as exc:
        error = exc
        raise
    finally:
        span.end(error)
