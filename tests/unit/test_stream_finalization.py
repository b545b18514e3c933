"""A stream whose client went away may be closed by the event loop's finalizer, in a
task and context of its own: the access line says CANCELLED, and nothing is logged as an
error (found by the soak: every such stream logged 'Task exception was never retrieved'
and an access line with UNKNOWN)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import pytest

from servicecontrol_server.api.access_log import _Call
from servicecontrol_server.application.caller import acting_as, current_caller
from servicecontrol_server.domain.identity import Caller, Role


class Context:
    def code(self) -> None:
        return None

    async def send_initial_metadata(self, metadata: Any) -> None:
        return None


async def endless(request: Any, context: Any) -> AsyncIterator[int]:
    while True:
        yield 1


async def test_a_stream_closed_in_another_context_logs_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    call = _Call("/servicecontrol.v1.ServiceControl/WatchEvents", ())
    stream: Any = call.stream(endless)(None, Context())
    assert await anext(stream) == 1
    with caplog.at_level(logging.INFO, logger="servicecontrol_server.access"):
        # As the finalizer does it: aclose() in a new task with a context of its own.
        await asyncio.create_task(stream.aclose(), context=contextvars.Context())
    (line,) = [r for r in caplog.records if r.name == "servicecontrol_server.access"]
    assert line.code == "CANCELLED"  # type: ignore[attr-defined]


async def test_acting_as_around_a_stream_closed_in_another_context() -> None:
    caller = Caller("k", "111122223333", Role.WRITER, "WatchEvents", "r", "grpc", False)

    async def stream() -> AsyncGenerator[Caller | None, None]:
        with acting_as(caller):
            while True:
                yield current_caller()

    events = stream()
    assert await anext(events) == caller
    # Before: ValueError (the token was created in another context) from the close.
    closing = asyncio.create_task(events.aclose(), context=contextvars.Context())
    await closing
    assert closing.exception() is None
