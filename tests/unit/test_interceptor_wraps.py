"""The interceptors' per-call cost: a method's wrapped handler is built once, not on every
call, and the guard's deadline runs the call in its own task instead of starting one."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import grpc
import pytest

from servicecontrol_server.api.auth import AuthInterceptor
from servicecontrol_server.api.guard import RequestGuard
from servicecontrol_server.api.handlers import Rewraps
from servicecontrol_server.api.region import RegionInterceptor
from servicecontrol_server.application.rate_limit import MutationRateLimiter

from .harness import unit_settings

METHOD = "/servicecontrol.v1.ServiceControl/DescribeService"


def _guard(deadline: float = 5.0) -> RequestGuard:
    return RequestGuard(
        deadline_seconds=deadline,
        limiter=MutationRateLimiter(rate=1.0, burst=1),
        account_of=lambda context: "",
    )


INTERCEPTORS = {
    "auth": lambda: AuthInterceptor(identity=SimpleNamespace()),  # type: ignore[arg-type]
    "region": lambda: RegionInterceptor(unit_settings()),
    "guard": _guard,
}


def _handler(answer: str) -> grpc.RpcMethodHandler:
    async def behavior(request: object, context: object) -> str:
        return answer

    return grpc.unary_unary_rpc_method_handler(
        behavior, request_deserializer=bytes, response_serializer=bytes
    )


async def _intercept(
    interceptor: grpc.aio.ServerInterceptor, handler: grpc.RpcMethodHandler, method: str = METHOD
) -> grpc.RpcMethodHandler:
    async def continuation(details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        return handler

    details = SimpleNamespace(method=method, invocation_metadata=())
    return await interceptor.intercept_service(continuation, details)


@pytest.mark.parametrize("kind", sorted(INTERCEPTORS))
async def test_a_methods_handler_is_wrapped_once(kind: str) -> None:
    interceptor = INTERCEPTORS[kind]()
    served = _handler("first")
    first = await _intercept(interceptor, served)
    assert first is not served, "the interceptor wraps the method's handler"
    assert await _intercept(interceptor, served) is first
    # Another handler for the same method (another server) is wrapped anew, and kept.
    other = await _intercept(interceptor, _handler("second"))
    assert other is not first
    # Each method keeps its own.
    elsewhere = await _intercept(interceptor, served, METHOD.replace("Describe", "List"))
    assert elsewhere is not first


def test_the_memo_keeps_a_bounded_number_of_methods() -> None:
    memo = Rewraps()
    served = _handler("x")
    wraps = 0

    def wrap(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        nonlocal wraps
        wraps += 1
        return _handler("wrapped")

    for i in range(Rewraps.LIMIT + 10):
        memo.get(f"/m/{i}", served, wrap)
    assert len(memo._by_method) == Rewraps.LIMIT
    kept = memo.get("/m/0", served, wrap)
    assert memo.get("/m/0", served, wrap) is kept
    wraps_before = wraps
    memo.get(f"/m/{Rewraps.LIMIT + 5}", served, wrap)
    memo.get(f"/m/{Rewraps.LIMIT + 5}", served, wrap)
    assert wraps == wraps_before + 2, "a method past the bound is wrapped on every call"


class _Context:
    def time_remaining(self) -> float | None:
        return None

    async def abort(self, *args: Any, **kwargs: Any) -> None:
        raise grpc.aio.AbortError()

    async def abort_with_status(self, status: Any) -> None:
        raise grpc.aio.AbortError()


async def test_the_guard_runs_the_call_in_the_calls_own_task() -> None:
    async def behavior(request: object, context: object) -> object:
        return asyncio.current_task()

    handler = grpc.unary_unary_rpc_method_handler(
        behavior, request_deserializer=bytes, response_serializer=bytes
    )
    guarded = await _intercept(_guard(), handler)

    async def call() -> object:
        return await guarded.unary_unary(b"", _Context())

    task = asyncio.ensure_future(call())
    assert await task is task


async def test_the_guards_deadline_still_stops_the_call() -> None:
    stopped = asyncio.Event()

    async def behavior(request: object, context: object) -> None:
        try:
            await asyncio.sleep(30)
        finally:
            stopped.set()

    handler = grpc.unary_unary_rpc_method_handler(
        behavior, request_deserializer=bytes, response_serializer=bytes
    )
    guarded = await _intercept(_guard(deadline=0.05), handler)
    with pytest.raises(grpc.aio.AbortError):
        await asyncio.wait_for(guarded.unary_unary(b"", _Context()), 10)
    assert stopped.is_set()


class _AdmittedContext(_Context):
    def __init__(self) -> None:
        self.peers = 0

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", "Bearer key.secret"),)

    def peer(self) -> str:
        self.peers += 1
        return "ipv4:127.0.0.1:5000"


async def test_only_a_mutation_pays_for_its_audit_rows_request_id_and_source() -> None:
    from datetime import UTC, datetime

    from servicecontrol_server.domain.identity import ApiKey, Role

    key = ApiKey("key", "acct", Role.WRITER, datetime.now(UTC), None, None)

    class Identity:
        async def authenticate_token(self, token: str) -> ApiKey:
            return key

    interceptor = AuthInterceptor(identity=Identity())  # type: ignore[arg-type]
    request = SimpleNamespace(request_id="")
    read = _AdmittedContext()
    caller = await interceptor.admit("DescribeService", request, read)
    assert (caller.request_id, caller.source, read.peers) == ("", "", 0)
    write = _AdmittedContext()
    caller = await interceptor.admit("DeleteService", request, write)
    assert caller.request_id and caller.source == "ipv4:127.0.0.1:5000"
