"""The HTTP endpoint speaking App Runner's own protocol (AWS JSON 1.0): every call is
`POST /` with `X-Amz-Target: AppRunner.<Action>` and a JSON body; every answer carries
`x-amzn-RequestId`. It runs on the gRPC server's event loop."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from aiohttp import web

from ... import tracing
from ...application.caller import acting_as
from ...application.identity import AuditEntry
from ...application.regions import in_region
from ...domain.errors import DomainError
from ...domain.identity import Caller, Role, is_key_id
from ...domain.text import text_violations
from ...settings import Settings
from ..access_log import ACCOUNT_KEY, ACTION_KEY, aws_access_log
from ..tls import http_ssl_context, tls_enabled
from ..tracing import aws_tracing
from ..use_cases import UseCases
from . import model
from .actions import ACTIONS, READ_ONLY_ACTIONS, Action, Context
from .auth import RequestAuthenticator, SigV4Verifier, parse_authorization
from .errors import (
    ACCESS_DENIED,
    UNKNOWN_OPERATION,
    AwsError,
    from_domain,
    internal,
    invalid_request,
    serialization,
)

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/x-amz-json-1.0"
TARGET_PREFIX = "AppRunner."


def _region(request: web.Request, settings: Settings) -> str:
    """The request's region: its SigV4 credential scope's (the authenticator refused a
    region not served), the default one for a request that has none."""
    header = request.headers.get("Authorization", "")
    try:
        region = parse_authorization(header).region if header else ""
    except AwsError:
        region = ""
    return region if region in settings.served_regions else settings.region


class AwsJsonEndpoint:
    def __init__(self, use_cases: UseCases, authenticator: RequestAuthenticator) -> None:
        self.use_cases = use_cases
        self.authenticator = authenticator
        self.max_body_bytes = use_cases.settings.max_request_bytes

    async def handle(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        caller: Caller | None = None
        body: dict[str, Any] = {}
        try:
            name, action = _action(request)
            request[ACTION_KEY] = name
            raw = await _raw_body(request, self.max_body_bytes)
            caller = Caller(
                key_id="",
                account_id="",
                role=Role.READER,
                action=f"{TARGET_PREFIX}{name}",
                request_id=request_id,
                source=request.remote or "",
                mutating=name not in READ_ONLY_ACTIONS,
            )
            try:
                key = await self.authenticator.authenticate(request, raw)
            except AwsError:
                caller.key_id = _presented_key_id(request)
                raise
            except DomainError as exc:
                # The key could not be looked up (the database is unavailable).
                raise from_domain(exc, action.errors) from exc
            caller.key_id, caller.account_id, caller.role = key.key_id, key.account_id, key.role
            request[ACCOUNT_KEY] = key.account_id
            if caller.mutating and key.role is not Role.WRITER:
                raise AwsError(
                    ACCESS_DENIED,
                    f"Key {key.key_id} ({key.role.value}) is not authorized to perform: "
                    f"apprunner:{name}",
                )
            body = _parse(raw)
            with acting_as(caller), in_region(_region(request, self.use_cases.settings)):
                try:
                    if self.use_cases.backlog_gate is not None:
                        await self.use_cases.backlog_gate.check(name)
                    self.use_cases.rate_limiter.check(key.account_id, name)
                    model.validate_request(name, body)
                    result = await action.handler(Context(self.use_cases, key.account_id), body)
                except DomainError as exc:
                    raise from_domain(exc, action.errors) from exc
            result = model.serialize_response(name, result)
        except AwsError as exc:
            await self._audit(caller, body, exc.error_type)
            return _error(exc, request_id)
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing unexplained escapes
            failure = internal(exc)
            await self._audit(caller, body, failure.error_type)
            return _error(failure, request_id)
        await self._audit(caller, body, "OK")
        return _json(200, result, request_id)

    async def _audit(self, caller: Caller | None, body: dict[str, Any], outcome: str) -> None:
        """The audit row of a mutation that the unit of work did not write: refused, or
        one that changed nothing."""
        if caller is None or not caller.mutating or caller.audited:
            return
        arn = body.get("ServiceArn") or body.get("ConnectionArn") or ""
        try:
            await self.use_cases.identity.record_refusal(
                AuditEntry(
                    occurred_at=None,
                    key_id=caller.key_id,
                    account_id=caller.account_id,
                    action=caller.action,
                    resource_arn=arn[:2048] if isinstance(arn, str) else "",
                    operation_id="",
                    request_id=caller.request_id,
                    outcome=outcome,
                    source=caller.source,
                )
            )
            caller.audited = True
        except Exception as exc:  # noqa: BLE001 - the call's own answer must still go out
            log.error("audit row not written: %s", type(exc).__name__)


def _presented_key_id(request: web.Request) -> str:
    """The access key id a refused request named, when it is shaped like one of ours."""
    try:
        key_id = parse_authorization(request.headers.get("Authorization", "")).access_key_id
    except AwsError:
        return ""
    return key_id if is_key_id(key_id) else ""


def _action(request: web.Request) -> tuple[str, Action]:
    target = request.headers.get("X-Amz-Target", "")
    prefix, _, name = target.partition(".")
    found = ACTIONS.get(name) if f"{prefix}." == TARGET_PREFIX else None
    if request.method != "POST" or request.path != "/" or found is None:
        # What an AWS JSON service answers for any target it does not serve.
        raise AwsError(
            UNKNOWN_OPERATION,
            f"Unknown operation {target[:100]}." if target else "Missing X-Amz-Target header.",
        )
    return name, found


async def _raw_body(request: web.Request, limit: int) -> bytes:
    if (request.content_length or 0) > limit:
        raise invalid_request(f"The request body exceeds {limit} bytes.")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise invalid_request(f"The request body exceeds {limit} bytes.") from exc


def _parse(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise serialization(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise serialization("The request body must be a JSON object.")
    violations = text_violations(body)
    if violations:
        raise invalid_request(
            f"{len(violations)} validation error{'s' if len(violations) > 1 else ''} detected: "
            + "; ".join(
                f"Value at '{v.field}' failed to satisfy constraint: Member {v.description}"
                for v in violations
            )
        )
    return body


def _json(
    status: int, payload: dict[str, Any], request_id: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, separators=(",", ":")).encode(),
        content_type=CONTENT_TYPE,
        headers={"x-amzn-RequestId": request_id, **(headers or {})},
    )


def _error(exc: AwsError, request_id: str) -> web.Response:
    return _json(
        exc.status,
        {"__type": exc.error_type, "Message": exc.message},
        request_id,
        {"x-amzn-ErrorType": exc.error_type},
    )


def create_app(
    use_cases: UseCases, authenticator: RequestAuthenticator | None = None
) -> web.Application:
    settings = use_cases.settings
    endpoint = AwsJsonEndpoint(
        use_cases,
        authenticator or SigV4Verifier(use_cases.identity, settings.served_regions),
    )
    middlewares = [aws_tracing, aws_access_log] if tracing.enabled() else [aws_access_log]
    web_app = web.Application(client_max_size=settings.max_request_bytes, middlewares=middlewares)
    # Every method and path reaches the endpoint, which answers anything but
    # `POST /` as an unknown operation, in App Runner's error format.
    web_app.router.add_route("*", "/{tail:.*}", endpoint.handle)
    return web_app


def _host_port(listen: str) -> tuple[str | None, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"aws_listen must be <host>:<port>, got {listen!r}")
    return (host.strip("[]") or None), int(port)


async def start_aws_http(
    use_cases: UseCases, listen: str, *, authenticator: RequestAuthenticator | None = None
) -> tuple[web.AppRunner, int]:
    """Serves the endpoint on `listen` (port 0: a free one). Returns the runner, for
    `await runner.cleanup()` at shutdown, and the bound port."""
    host, port = _host_port(listen)
    # At shutdown, requests in flight get the same grace as gRPC calls, then are cut.
    runner = web.AppRunner(
        create_app(use_cases, authenticator),
        access_log=None,
        handle_signals=False,
        shutdown_timeout=use_cases.settings.grpc_grace_seconds,
    )
    await runner.setup()
    try:
        settings = use_cases.settings
        ssl_context = http_ssl_context(settings) if tls_enabled(settings) else None
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1]
    return runner, int(bound)
