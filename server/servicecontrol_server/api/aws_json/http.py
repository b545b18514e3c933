"""The HTTP endpoint speaking App Runner's own protocol (AWS JSON 1.0): every call is
`POST /` with `X-Amz-Target: AppRunner.<Action>` and a JSON body; every answer carries
`x-amzn-RequestId`. It runs on the gRPC server's event loop."""

from __future__ import annotations

import json
import logging
import uuid
from typing import Any

from aiohttp import web

from ...domain.errors import DomainError
from ...domain.text import text_violations
from ..tls import http_ssl_context, tls_enabled
from ..use_cases import UseCases
from .actions import ACTIONS, Action, Context
from .auth import AcceptAnySignature, RequestAuthenticator
from .errors import (
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


class AwsJsonEndpoint:
    def __init__(self, use_cases: UseCases, authenticator: RequestAuthenticator) -> None:
        self.use_cases = use_cases
        self.authenticator = authenticator
        self.max_body_bytes = use_cases.settings.max_request_bytes

    async def handle(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        try:
            action = _action(request)
            account_id = await self.authenticator.authenticate(request)
            body = await _body(request, self.max_body_bytes)
            try:
                self.use_cases.rate_limiter.check(account_id, action.name)
                result = await action.handler(Context(self.use_cases, account_id), body)
            except DomainError as exc:
                raise from_domain(exc, action.errors) from exc
        except AwsError as exc:
            return _error(exc, request_id)
        except Exception as exc:  # noqa: BLE001 - the boundary: nothing unexplained escapes
            return _error(internal(exc), request_id)
        return _json(200, result, request_id)


def _action(request: web.Request) -> Action:
    target = request.headers.get("X-Amz-Target", "")
    prefix, _, name = target.partition(".")
    found = ACTIONS.get(name) if f"{prefix}." == TARGET_PREFIX else None
    if request.method != "POST" or request.path != "/" or found is None:
        # What an AWS JSON service answers for any target it does not serve.
        raise AwsError(
            UNKNOWN_OPERATION,
            f"Unknown operation {target[:100]}." if target else "Missing X-Amz-Target header.",
        )
    return found


async def _body(request: web.Request, limit: int) -> dict[str, Any]:
    if (request.content_length or 0) > limit:
        raise invalid_request(f"The request body exceeds {limit} bytes.")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise invalid_request(f"The request body exceeds {limit} bytes.") from exc
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
        authenticator or AcceptAnySignature(settings.default_account, settings.region),
    )
    web_app = web.Application(client_max_size=settings.max_request_bytes)
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
    runner = web.AppRunner(
        create_app(use_cases, authenticator), access_log=None, handle_signals=False
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
    log.info("serving App Runner API", extra={"port": bound, "listen": listen})
    return runner, int(bound)
