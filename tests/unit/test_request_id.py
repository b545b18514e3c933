"""The request id a unary call's access line names goes back in the call's trailing
metadata, with its status, whatever that status is; a stream announces it ahead."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from servicecontrol_server.api.access_log import REQUEST_ID_METADATA_KEY, _Call


class Context:
    """What the server's context does with metadata, recorded."""

    def __init__(self) -> None:
        self.trailing: tuple[tuple[str, str], ...] = ()
        self.initial: tuple[tuple[str, str], ...] | None = None
        self.aborted: tuple[Any, ...] | None = None

    def code(self) -> None:
        return None

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.trailing = tuple(metadata)

    async def send_initial_metadata(self, metadata: Any) -> None:
        self.initial = tuple(metadata)

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing: Any = ()) -> None:
        self.aborted = (code, details, tuple(trailing))
        raise grpc.aio.AbortError()

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1"


ID = (REQUEST_ID_METADATA_KEY, "req-7")


def call() -> _Call:
    return _Call("/servicecontrol.v1.ServiceControl/DescribeService", (ID,))


async def test_an_answer_carries_the_id_in_its_trailers_and_nothing_is_sent_ahead() -> None:
    context = Context()

    async def handler(request: Any, ctx: Any) -> str:
        assert ctx.peer() == "ipv4:127.0.0.1:1"  # everything else is the call's own context
        return "answer"

    assert await call().unary(handler)(None, context) == "answer"
    assert context.trailing == (ID,)
    assert context.initial is None


async def test_trailers_a_handler_sets_keep_the_id_beside_them() -> None:
    context = Context()

    async def handler(request: Any, ctx: Any) -> str:
        ctx.set_trailing_metadata((("x-other", "1"),))
        return "answer"

    await call().unary(handler)(None, context)
    assert context.trailing == (("x-other", "1"), ID)


@pytest.mark.parametrize("with_status", [True, False])
async def test_a_refusal_carries_the_id_beside_its_own_trailers(with_status: bool) -> None:
    context = Context()
    rich = (("grpc-status-details-bin", b"\x08\x03"),)

    async def handler(request: Any, ctx: Any) -> str:
        if with_status:
            status = grpc.Status()
            status.code, status.details, status.trailing_metadata = (
                grpc.StatusCode.INVALID_ARGUMENT,
                "bad",
                rich,
            )
            await ctx.abort_with_status(status)
        await ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad", rich)
        return "unreachable"

    with pytest.raises(grpc.aio.AbortError):
        await call().unary(handler)(None, context)
    assert context.aborted == (grpc.StatusCode.INVALID_ARGUMENT, "bad", (*rich, ID))


async def test_a_stream_announces_the_id_before_its_first_message() -> None:
    context = Context()

    async def stream(request: Any, ctx: Any) -> Any:
        assert context.initial == (ID,)
        yield 1

    items = [item async for item in call().stream(stream)(None, context)]
    assert items == [1]
