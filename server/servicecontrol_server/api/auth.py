"""Authentication and authorization of every gRPC call, as a server interceptor.

A call carries `authorization: Bearer <key id>.<secret>`; the key decides the account and
the role. Health and reflection are open; every other method needs a key, and a
`reader` key may call only the read-only RPCs below (anything else is a mutation, so a
new RPC is refused to readers until it is listed here). Its row is looked up, or kept
by the key cache for at most its bound, so a revocation applies to every replica within
that bound (docs/security.md, "The API key cache"). Refused mutations are
written to the audit log here; accepted ones by the unit of work, in their transaction."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..application.caller import acting_as
from ..application.identity import AuditEntry, Identity
from ..domain.errors import DomainError
from ..domain.identity import Caller, NotAuthenticated, PermissionDenied, Role, is_key_id
from .access_log import note_account
from .errors import ERROR_DOMAIN, abort, to_status
from .handlers import Rewraps, rewrapped

log = logging.getLogger(__name__)

SERVICE_PREFIX = "/servicecontrol.v1.ServiceControl/"
OPEN_PREFIXES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
READ_ONLY_RPCS = frozenset(
    {
        "DescribeService",
        "ListServices",
        "ListOperations",
        "DescribeOperation",
        "WaitOperation",
        "WatchEvents",
        "ListConnections",
        "DescribeCustomDomains",
        "ListCertificates",
        "GetImageUploadStatus",
        # Auto scaling and observability configurations.
        "DescribeAutoScalingConfiguration",
        "ListAutoScalingConfigurations",
        "ListServicesForAutoScalingConfiguration",
        "DescribeObservabilityConfiguration",
        "ListObservabilityConfigurations",
        # VPC connectors and ingress connections
        "DescribeVpcConnector",
        "ListVpcConnectors",
        "DescribeVpcIngressConnection",
        "ListVpcIngressConnections",
    }
)
AUTHORIZATION = "authorization"
BEARER = "bearer "


def _status(code: int, exc: DomainError) -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain=ERROR_DOMAIN))
    return rpc_status.to_status(status_pb2.Status(code=code, message=exc.message, details=[info]))


def _bearer(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == AUTHORIZATION:
            text = value.decode() if isinstance(value, bytes) else str(value)
            if text[: len(BEARER)].lower() == BEARER:
                return text[len(BEARER) :].strip()
            return ""
    return None


def _resource_arn(request: Any) -> str:
    for name in ("service_arn", "connection_arn"):
        value = getattr(request, name, "")
        if value:
            return str(value)[:2048]
    return ""


def _request_id(request: Any) -> str:
    value = getattr(request, "request_id", "")
    return str(value)[:128] if value else str(uuid.uuid4())


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self._rewraps = Rewraps()

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        return self._rewraps.get(method, handler, self._admitting)

    def _admitting(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        name = method.rpartition("/")[2] if method.startswith(SERVICE_PREFIX) else method
        admitted = rewrapped(
            handler,
            unary=lambda behavior: self._unary(name, behavior),
            stream=lambda behavior: self._stream(name, behavior),
            client_stream=lambda behavior: self._client_stream(name, behavior),
            only_async=False,
        )
        # A streaming request shape this server does not use: refused rather than open.
        return admitted or grpc.unary_unary_rpc_method_handler(self._refuse_unsupported)

    async def _refuse_unsupported(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Not served.")

    def _unary(self, name: str, behavior: Any) -> Any:
        async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
            caller = await self.admit(name, request, context)
            audited = _AuditingContext(
                context, lambda outcome: self._audit(caller, request, outcome)
            )
            with acting_as(caller):
                try:
                    response = await behavior(request, audited)
                except grpc.aio.AbortError:
                    raise
                except BaseException:
                    await self._audit(caller, request, "INTERNAL")
                    raise
                await self._audit(caller, request, "OK")
                return response

        return unary

    def _client_stream(self, name: str, behavior: Any) -> Any:
        """A client-streaming call (PushImage): admitted before its first message is
        read; its audit row names no resource (the image is in the stream)."""

        async def client_stream(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            caller = await self.admit(name, None, context)
            audited = _AuditingContext(context, lambda outcome: self._audit(caller, None, outcome))
            with acting_as(caller):
                try:
                    response = await behavior(requests, audited)
                except grpc.aio.AbortError:
                    raise
                except BaseException:
                    await self._audit(caller, None, "INTERNAL")
                    raise
                await self._audit(caller, None, "OK")
                return response

        return client_stream

    def _stream(self, name: str, behavior: Any) -> Any:
        async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            caller = await self.admit(name, request, context)
            with acting_as(caller):
                async for item in behavior(request, context):
                    yield item

        return stream

    async def admit(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> Caller:
        """The caller of this call; aborts with UNAUTHENTICATED or PERMISSION_DENIED."""
        mutating = name not in READ_ONLY_RPCS
        token = _bearer(context)
        try:
            if token is None:
                raise NotAuthenticated(
                    "Missing credentials: send the metadata "
                    "`authorization: Bearer <key id>.<secret>`."
                )
            key = await self.identity.authenticate_token(token)
        except NotAuthenticated as exc:
            if mutating:
                presented = (token or "").partition(".")[0]
                await self._write(
                    Caller(
                        key_id=presented if is_key_id(presented) else "",
                        account_id="",
                        role=Role.READER,
                        action=name,
                        request_id=_request_id(request),
                        source=context.peer() or "",
                        mutating=True,
                    ),
                    _resource_arn(request),
                    "UNAUTHENTICATED",
                )
            await context.abort_with_status(_status(code_pb2.UNAUTHENTICATED, exc))
            raise AssertionError("unreachable") from exc
        except DomainError as exc:
            # The key could not be looked up (the database is unavailable): retryable.
            await abort(context, to_status(exc))
            raise AssertionError("unreachable") from exc
        note_account(key.account_id)
        caller = Caller(
            key_id=key.key_id,
            account_id=key.account_id,
            role=key.role,
            action=name,
            # What only a mutation's audit row records: a read pays for neither.
            request_id=_request_id(request) if mutating else "",
            source=(context.peer() or "") if mutating else "",
            mutating=mutating,
        )
        if mutating and key.role is not Role.WRITER:
            await self._audit(caller, request, "PERMISSION_DENIED")
            await context.abort_with_status(
                _status(
                    code_pb2.PERMISSION_DENIED,
                    PermissionDenied(f"A {key.role.value} key may not call {name}."),
                )
            )
        return caller

    async def _audit(self, caller: Caller, request: Any, outcome: str) -> None:
        """The row of a mutation that the unit of work did not write: refused, or one that
        changed nothing (validate_only, a replayed request id)."""
        if caller.mutating and not caller.audited:
            await self._write(caller, _resource_arn(request), outcome)

    async def _write(self, caller: Caller, resource_arn: str, outcome: str) -> None:
        try:
            await self.identity.record_refusal(
                AuditEntry(
                    occurred_at=None,
                    key_id=caller.key_id,
                    account_id=caller.account_id,
                    action=caller.action,
                    resource_arn=resource_arn,
                    operation_id="",
                    request_id=caller.request_id,
                    outcome=outcome,
                    source=caller.source,
                )
            )
            caller.audited = True
        except Exception as exc:  # noqa: BLE001 - the call's own answer must still go out
            log.error("audit row not written: %s", type(exc).__name__)


class _AuditingContext:
    """The call's context, writing the audit row of a refused mutation before the refusal
    goes out (once it is sent, the caller may already be reading the audit log)."""

    def __init__(
        self, context: grpc.aio.ServicerContext, audit: Callable[[str], Awaitable[None]]
    ) -> None:
        self._context = context
        self._audit = audit

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: grpc.StatusCode, details: str = "", *args: Any) -> None:
        await self._audit(code.name)
        await self._context.abort(code, details, *args)

    async def abort_with_status(self, status: grpc.Status) -> None:
        await self._audit(status.code.name)
        await self._context.abort_with_status(status)
