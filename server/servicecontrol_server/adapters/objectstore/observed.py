"""One way to watch every call of an ObjectStore: the metrics and the trace wrappers
both delegate through it and differ only in what they record.

Each public method of the inner store is wrapped: `start(operation, args)` is called
before the call and its result's `finish(outcome, error)` once the call is over, with
outcome "ok", "not_found" (ObjectNotFound: an answer, not a failure) or "error". A
listing is over once the caller has consumed it (or stopped early: "ok"); an error
while iterating is "error". `run_blocking` is passed through: it runs a sequence of the
store's own calls, each of which is watched already."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from ...application.ports import ObjectNotFound

PASSED_THROUGH = frozenset({"run_blocking"})


class Observation(Protocol):
    def finish(self, outcome: str, error: BaseException | None) -> None: ...


Start = Callable[[str, tuple[Any, ...]], Observation]


class ObservedObjectStore:
    def __init__(self, inner: Any, start: Start) -> None:
        self.inner = inner
        self._start = start

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target) or name.startswith("_") or name in PASSED_THROUGH:
            return target
        return _observed(name, target, self._start)


def _observed(operation: str, call: Callable[..., Any], start: Start) -> Callable[..., Any]:
    def observed(*args: Any, **kwargs: Any) -> Any:
        observation = start(operation, args)
        try:
            result = call(*args, **kwargs)
        except ObjectNotFound:
            observation.finish("not_found", None)
            raise
        except BaseException as exc:
            observation.finish("error", exc)
            raise
        if isinstance(result, Iterator):
            return _observed_iteration(observation, result)
        observation.finish("ok", None)
        return result

    return observed


def _observed_iteration(observation: Observation, items: Iterator[Any]) -> Iterator[Any]:
    outcome, error = "error", None
    try:
        yield from items
        outcome = "ok"
    except GeneratorExit:
        outcome = "ok"  # the caller stopped early
        raise
    except BaseException as exc:
        error = exc
        raise
    finally:
        observation.finish(outcome, error)
