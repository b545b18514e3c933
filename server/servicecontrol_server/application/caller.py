"""The caller of the request being served, for the audit log: set by the API layer
around each call, read by the unit of work when it commits a change."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from ..domain.identity import Caller

_CALLER: ContextVar[Caller | None] = ContextVar("servicecontrol_caller", default=None)


def current_caller() -> Caller | None:
    return _CALLER.get()


@contextlib.contextmanager
def acting_as(caller: Caller) -> Iterator[Caller]:
    token = _CALLER.set(caller)
    try:
        yield caller
    finally:
        # Around a stream, the event loop's finalizer may close it in a context of its
        # own (its client went away), where the token does not apply.
        with contextlib.suppress(ValueError):
            _CALLER.reset(token)
