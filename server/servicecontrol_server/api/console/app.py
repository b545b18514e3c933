"""The web console: server-rendered pages over the same use cases as the gRPC and App
Runner endpoints, signed in with an API key, on the server's event loop.

Every page needs a session; every form that changes something carries the session's CSRF
token; every answer carries a Content-Security-Policy that allows no inline script. What
a page shows is the signed-in key's account only, and a reader key's pages have no
action buttons while the handlers refuse the actions anyway."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from ...application.caller import acting_as
from ...application.identity import AuditEntry
from ...application.regions import in_region, request_region
from ...domain.errors import (
    BackendUnavailable,
    DomainError,
    InvalidRequest,
    NotFound,
    RateLimited,
)
from ...domain.identity import ApiKey, Caller, NotAuthenticated, Role
from ...domain.model import ConnectionStatus, Service, ServiceStatus
from ..use_cases import UseCases
from . import views
from .sessions import COOKIE, Session, SessionStore

log = logging.getLogger(__name__)

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # Not no-referrer: Chromium then sends `Origin: null` with same-origin form posts.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
PAGE_SIZE = 20
# The console walks the API's pages to filter by name; an account holds far fewer.
MAX_LISTED = 2000
HEARTBEAT_SECONDS = 15.0

USE_CASES = web.AppKey("use_cases", UseCases)
SESSIONS = web.AppKey("sessions", SessionStore)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
STOPPING = web.AppKey("stopping", asyncio.Event)


@dataclass
class Visitor:
    """The signed-in caller of one request."""

    session_id: str
    session: Session
    key: ApiKey

    @property
    def account(self) -> str:
        return self.key.account_id

    @property
    def writer(self) -> bool:
        return self.key.role is Role.WRITER


VISITOR = web.RequestKey("visitor", Visitor)


class ConsoleError(Exception):
    """An answer other than the page: a status and the words to show."""

    def __init__(self, status: int, title: str, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.reason = reason


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("servicecontrol_server.api.console", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        status_text=views.status_text,
        tone=views.tone,
        when=views.when,
        iso=views.iso,
        size=views.size,
        humanize=views.humanize_key,
    )
    return env


# ----- plumbing: headers, sessions, rendering, errors -----


@web.middleware
async def security_headers(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        response = exc
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if isinstance(response, web.HTTPException):
        raise response
    return response


def _use_cases(request: web.Request) -> UseCases:
    return request.app[USE_CASES]


async def _visitor(request: web.Request) -> Visitor:
    """The signed-in caller; redirects to the sign-in page (401 for scripts) otherwise."""
    sessions = request.app[SESSIONS]
    session_id = request.cookies.get(COOKIE)
    session = sessions.get(session_id)
    if session is not None and session_id is not None:
        try:
            key = await _use_cases(request).identity.authenticate_token(session.token)
        except NotAuthenticated:
            # Revoked or expired since sign-in: the session ends with it.
            sessions.close(session_id)
        else:
            return Visitor(session_id, session, key)
    if request.method == "GET" and not _wants_fragment(request):
        target = request.path_qs
        raise web.HTTPSeeOther(f"/signin?{urlencode({'next': target})}")
    raise ConsoleError(401, "Signed out", "Sign in with an API key to continue.")


def _wants_fragment(request: web.Request) -> bool:
    return request.headers.get("X-Requested-With") == "console" or request.path == "/events"


def _render(
    request: web.Request,
    template: str,
    visitor: Visitor | None,
    status: int = 200,
    **values: Any,
) -> web.Response:
    env = request.app[TEMPLATES]
    settings = _use_cases(request).settings
    context = {
        "visitor": visitor,
        "writer": visitor is not None and visitor.writer,
        "csrf": visitor.session.csrf if visitor else "",
        # A page's live refresh (a fragment) leaves the flashes to the page load they
        # were made for: taken by a refresh that raced the redirect, they were lost.
        "flashes": visitor.session.take_flashes()
        if visitor and not _wants_fragment(request)
        else [],
        "region": request_region(settings),
        "regions": list(settings.served_regions),
        "path": request.path,
        "qs": request.query_string,
    }
    context.update(values)
    body = env.get_template(template).render(**context)
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def _api_error(exc: DomainError) -> ConsoleError:
    """A use case's refusal, in the API's own words."""
    if isinstance(exc, NotFound):
        return ConsoleError(404, "Not found", exc.message, exc.reason)
    if isinstance(exc, BackendUnavailable):
        return ConsoleError(503, "Unavailable", exc.message, exc.reason)
    if isinstance(exc, InvalidRequest):
        return ConsoleError(400, "Invalid request", exc.message, exc.reason)
    if isinstance(exc, RateLimited):
        return ConsoleError(429, "Too busy", exc.message, exc.reason)
    return ConsoleError(409, "Refused", exc.message, exc.reason)


@web.middleware
async def regional(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every page acts in the region its session picked (the default one until then)."""
    settings = _use_cases(request).settings
    session = request.app[SESSIONS].get(request.cookies.get(COOKIE))
    picked = session.region if session is not None else ""
    with in_region(picked if picked in settings.served_regions else settings.region):
        return await handler(request)


@web.middleware
async def same_origin(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A POST another site's page sends is refused (sign-in included, which no CSRF
    token can cover): browsers name the sending page's origin."""
    origin = request.headers.get("Origin")
    if request.method == "POST" and origin is not None:
        expected = f"{request.scheme}://{request.host}"
        if origin != expected:
            raise ConsoleError(
                403, "Refused", "A form from another site may not act here.", "CROSS_ORIGIN"
            )
    return await handler(request)


@web.middleware
async def error_pages(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except ConsoleError as exc:
        return _error_response(request, exc)
    except DomainError as exc:
        return _error_response(request, _api_error(exc))
    except Exception:  # noqa: BLE001 - the boundary: nothing unexplained escapes
        correlation = uuid.uuid4().hex
        log.exception(
            "console request failed", extra={"correlation_id": correlation, "path": request.path}
        )
        return _error_response(
            request,
            ConsoleError(
                500,
                "Internal error",
                f"Something went wrong on the server. Correlation id {correlation}.",
                "INTERNAL",
            ),
        )


def _error_response(request: web.Request, exc: ConsoleError) -> web.Response:
    if _wants_fragment(request):
        return web.Response(
            text=_error_fragment(request, exc),
            status=exc.status,
            content_type="text/html",
            charset="utf-8",
        )
    visitor = request.get(VISITOR)
    return _render(request, "error.html", visitor, status=exc.status, error=exc)


def _error_fragment(request: web.Request, exc: ConsoleError) -> str:
    return request.app[TEMPLATES].get_template("_error.html").render(error=exc)


async def _signed_in(request: web.Request) -> Visitor:
    visitor = await _visitor(request)
    request[VISITOR] = visitor
    return visitor


async def _session_form(request: web.Request) -> tuple[Visitor, dict[str, str]]:
    """A posted form, after the session and its CSRF token are checked."""
    visitor = await _signed_in(request)
    form = {k: str(v) for k, v in (await request.post()).items()}
    token = form.get("csrf") or request.headers.get("X-CSRF-Token")
    if not visitor.session.csrf_matches(token):
        raise ConsoleError(
            403,
            "Refused",
            "The form's CSRF token is missing or stale: reload the page and try again.",
            "CSRF_TOKEN_INVALID",
        )
    return visitor, form


async def _writer_form(request: web.Request, action: str) -> tuple[Visitor, dict[str, str]]:
    """A mutation's form, after the session, the CSRF token and the role are checked."""
    visitor, form = await _session_form(request)
    if not visitor.writer:
        await _audit_refusal(request, visitor, action, form.get("arn", ""), "PERMISSION_DENIED")
        raise ConsoleError(
            403,
            "Not allowed",
            f"A {visitor.key.role.value} key may not call {action}.",
            "PERMISSION_DENIED_FOR_ACCOUNT",
        )
    return visitor, form


def _caller(request: web.Request, visitor: Visitor, action: str) -> Caller:
    return Caller(
        key_id=visitor.key.key_id,
        account_id=visitor.account,
        role=visitor.key.role,
        action=action,
        request_id=str(uuid.uuid4()),
        source=f"console {request.remote or ''}".strip(),
        mutating=True,
    )


async def _audit_refusal(
    request: web.Request, visitor: Visitor, action: str, arn: str, outcome: str
) -> None:
    caller = _caller(request, visitor, action)
    await _write_audit(request, caller, arn, outcome)


async def _write_audit(request: web.Request, caller: Caller, arn: str, outcome: str) -> None:
    try:
        await _use_cases(request).identity.record_refusal(
            AuditEntry(
                occurred_at=None,
                key_id=caller.key_id,
                account_id=caller.account_id,
                action=caller.action,
                resource_arn=arn[:2048],
                operation_id="",
                request_id=caller.request_id,
                outcome=outcome,
                source=caller.source,
            )
        )
    except Exception as exc:  # noqa: BLE001 - the answer must still go out
        log.error("audit row not written: %s", type(exc).__name__)


async def _act(
    request: web.Request,
    visitor: Visitor,
    action: str,
    arn: str,
    call: Callable[[], Awaitable[Any]],
) -> Any:
    """Runs a mutation as the signed-in key: audited like the API's own calls."""
    caller = _caller(request, visitor, action)
    gate = _use_cases(request).backlog_gate
    with acting_as(caller):
        try:
            if gate is not None:
                await gate.check(action)
            result = await call()
        except DomainError as exc:
            if not caller.audited:
                await _write_audit(request, caller, arn, exc.reason)
            raise
    if not caller.audited:
        await _write_audit(request, caller, arn, "OK")
    return result


def _back(to: str) -> web.HTTPSeeOther:
    # Only paths of this console: never an absolute URL from a form.
    if not to.startswith("/") or to.startswith("//"):
        to = "/services"
    return web.HTTPSeeOther(to)


# ----- sign in and out -----


async def signin_page(request: web.Request) -> web.Response:
    return _render(request, "signin.html", None, next=_next(request.query.get("next")), error="")


def _next(value: str | None) -> str:
    if not value or not value.startswith("/") or value.startswith("//"):
        return "/services"
    return value


async def signin(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    token = str(form.get("token", "")).strip()
    target = _next(str(form.get("next", "")))
    try:
        await _use_cases(request).identity.authenticate_token(token)
    except NotAuthenticated as exc:
        return _render(request, "signin.html", None, status=401, next=target, error=exc.message)
    sessions = request.app[SESSIONS]
    sessions.close(request.cookies.get(COOKIE))
    session_id, _ = sessions.open(token)
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        COOKIE,
        session_id,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
        max_age=int(sessions.lifetime),
    )
    return response


async def signout(request: web.Request) -> web.StreamResponse:
    visitor = await _signed_in(request)
    form = await request.post()
    if not visitor.session.csrf_matches(str(form.get("csrf", ""))):
        raise ConsoleError(403, "Refused", "The form's CSRF token is missing or stale.")
    request.app[SESSIONS].close(visitor.session_id)
    response = web.HTTPSeeOther("/signin")
    response.del_cookie(COOKIE, path="/")
    return response


# ----- services -----


async def _all_services(use_cases: UseCases, account: str) -> list[Service]:
    items: list[Service] = []
    token = ""
    while len(items) < MAX_LISTED:
        page = await use_cases.commands.list_services(account, 20, token)
        items.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    return items


async def _services_view(request: web.Request, visitor: Visitor) -> dict[str, Any]:
    name = request.query.get("name", "").strip()
    try:
        page = max(1, int(request.query.get("page", "1")))
    except ValueError:
        page = 1
    services = await _all_services(_use_cases(request), visitor.account)
    if name:
        services = [s for s in services if name.lower() in s.service_name.lower()]
    try:
        size = min(100, max(1, int(request.query.get("size", PAGE_SIZE))))
    except ValueError:
        size = PAGE_SIZE
    services.sort(key=lambda s: s.service_name)
    pages = max(1, (len(services) + size - 1) // size)
    page = min(page, pages)
    shown = services[(page - 1) * size : page * size]
    return {
        "services": shown,
        "total": len(services),
        "name": name,
        "page": page,
        "pages": pages,
        "prev_qs": urlencode({"name": name, "page": page - 1, "size": size}),
        "next_qs": urlencode({"name": name, "page": page + 1, "size": size}),
    }


async def services_page(request: web.Request) -> web.Response:
    visitor = await _signed_in(request)
    # The cursor is read before the list: an event after it is never missed.
    cursor = await _use_cases(request).events.head(visitor.account)
    view = await _services_view(request, visitor)
    return _render(request, "services.html", visitor, cursor=cursor, **view)


async def services_rows(request: web.Request) -> web.Response:
    """The list's table body alone, for the live update."""
    visitor = await _signed_in(request)
    view = await _services_view(request, visitor)
    return _render(request, "_service_rows.html", visitor, **view)


def _arn(request: web.Request, form: dict[str, str] | None = None) -> str:
    arn = (form or {}).get("arn") if form is not None else request.query.get("arn", "")
    if not arn:
        raise ConsoleError(400, "Invalid request", "service_arn: required", "INVALID_REQUEST")
    return arn


async def service_page(request: web.Request) -> web.Response:
    visitor = await _signed_in(request)
    use_cases = _use_cases(request)
    arn = _arn(request)
    cursor = await use_cases.events.head(visitor.account)
    service = await use_cases.commands.describe_service(visitor.account, arn)
    operations = await use_cases.commands.list_operations(visitor.account, arn, 20, "")
    domains: list[Any] = []
    target = None
    if service.status is not ServiceStatus.DELETED:
        target, page = await use_cases.domains.describe(visitor.account, arn, 20, "")
        domains = page.items
    return _render(
        request,
        "service.html",
        visitor,
        service=service,
        operations=operations.items,
        domains=domains,
        target=target,
        cursor=cursor,
    )


async def delete_page(request: web.Request) -> web.Response:
    """The confirmation, built from the deletion plan (DeleteService validate_only)."""
    visitor = await _signed_in(request)
    arn = _arn(request)
    use_cases = _use_cases(request)
    plan = await use_cases.commands.delete_service(visitor.account, arn, validate_only=True)
    now = datetime.now(UTC)
    certificates = [
        dict(cert, countdown=views.countdown(cert["expires_at"], now))
        for cert in (plan.plan or {}).get("retained_certificates", [])
    ]
    template = "_delete_form.html" if _wants_fragment(request) else "delete.html"
    return _render(
        request,
        template,
        visitor,
        service=plan.service,
        plan=plan.plan or {},
        certificates=certificates,
    )


def _confirmed(service: Service, typed: str) -> bool:
    return typed.strip() in (service.service_name, "delete")


async def pause(request: web.Request) -> web.StreamResponse:
    return await _simple(request, "PauseService")


async def resume(request: web.Request) -> web.StreamResponse:
    return await _simple(request, "ResumeService")


async def deploy(request: web.Request) -> web.StreamResponse:
    return await _simple(request, "StartDeployment")


async def _simple(request: web.Request, action: str) -> web.StreamResponse:
    visitor, form = await _writer_form(request, action)
    arn = _arn(request, form)
    commands = _use_cases(request).commands
    call, verb = {
        "PauseService": (commands.pause_service, "Pausing"),
        "ResumeService": (commands.resume_service, "Resuming"),
        "StartDeployment": (commands.start_deployment, "Deploying"),
    }[action]
    result = await _act(request, visitor, action, arn, lambda: call(visitor.account, arn))
    visitor.session.flash(
        "ok", f"{verb} {result.service.service_name}: operation {result.operation_id} started."
    )
    raise _back(f"/service?{urlencode({'arn': arn})}")


async def delete(request: web.Request) -> web.StreamResponse:
    visitor, form = await _writer_form(request, "DeleteService")
    arn = _arn(request, form)
    commands = _use_cases(request).commands
    service = await commands.describe_service(visitor.account, arn)
    retry = form.get("retry") == "1" and service.status is ServiceStatus.DELETE_FAILED
    if not retry and not _confirmed(service, form.get("confirm", "")):
        raise ConsoleError(
            400,
            "Not deleted",
            f"Type the service name ({service.service_name}) or 'delete' to confirm.",
            "CONFIRMATION_REQUIRED",
        )
    result = await _act(
        request,
        visitor,
        "DeleteService",
        arn,
        lambda: commands.delete_service(visitor.account, arn, etag=""),
    )
    visitor.session.flash(
        "ok",
        f"Deleting {result.service.service_name}: operation {result.operation_id} started.",
    )
    raise _back("/services")


# ----- live updates -----


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the account's events from the page's cursor, or after a
    disconnect from the last one received (Last-Event-ID)."""
    visitor = await _signed_in(request)
    use_cases = _use_cases(request)
    cursor = request.headers.get("Last-Event-ID") or request.query.get("cursor", "")
    arn = request.query.get("arn", "")
    stream = use_cases.events.watch(visitor.account, cursor, arn)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            **{k: v for k, v in SECURITY_HEADERS.items() if k != "Cache-Control"},
        }
    )
    await response.prepare(request)
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=1000)
    stopping = request.app[STOPPING]

    async def pump() -> None:
        async with contextlib.aclosing(stream) as records:
            async for record in records:
                await queue.put(record)

    task = asyncio.create_task(pump())
    stop_wait = asyncio.create_task(stopping.wait())
    try:
        await response.write(b"retry: 1000\n\n")
        while not stopping.is_set():
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait(
                {getter, task, stop_wait},
                timeout=HEARTBEAT_SECONDS,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if getter not in done:
                getter.cancel()
                if task in done or stop_wait in done:
                    break
                await response.write(b": keep-alive\n\n")
                continue
            record = getter.result()
            data = json.dumps(
                {"type": record.type, "arn": record.resource_arn, "payload": record.payload}
            )
            await response.write(f"id: {record.position}\ndata: {data}\n\n".encode())
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        task.cancel()
        stop_wait.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
    return response


# ----- connections, certificates, activity -----


async def connections_page(request: web.Request) -> web.Response:
    visitor = await _signed_in(request)
    use_cases = _use_cases(request)
    connections: list[Any] = []
    token = ""
    while len(connections) < MAX_LISTED:
        page = await use_cases.connections.list_connections(visitor.account, "", 100, token)
        connections.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    services = await _all_services(use_cases, visitor.account)
    users = {
        c.connection_arn: [s for s in services if s.connection_arn == c.connection_arn]
        for c in connections
    }
    live = [c for c in connections if c.status is not ConnectionStatus.DELETED]
    return _render(request, "connections.html", visitor, connections=live, users=users)


async def create_connection(request: web.Request) -> web.StreamResponse:
    visitor, form = await _writer_form(request, "CreateConnection")
    name = form.get("name", "").strip()
    provider = form.get("provider", "")
    connections = _use_cases(request).connections
    created = await _act(
        request,
        visitor,
        "CreateConnection",
        "",
        lambda: connections.create_connection(visitor.account, name, provider),
    )
    visitor.session.flash(
        "ok",
        f"Connection {created.connection_name} created: "
        f"{views.status_text(created.status)}. Complete the handshake with the provider.",
    )
    raise _back("/connections")


async def delete_connection(request: web.Request) -> web.StreamResponse:
    visitor, form = await _writer_form(request, "DeleteConnection")
    arn = form.get("arn", "")
    connections = _use_cases(request).connections
    deleted = await _act(
        request,
        visitor,
        "DeleteConnection",
        arn,
        lambda: connections.delete_connection(visitor.account, arn),
    )
    visitor.session.flash("ok", f"Connection {deleted.connection_name} deleted.")
    raise _back("/connections")


async def certificates_page(request: web.Request) -> web.Response:
    visitor = await _signed_in(request)
    use_cases = _use_cases(request)
    certificates: list[Any] = []
    token = ""
    while len(certificates) < MAX_LISTED:
        page = await use_cases.domains.list_certificates(visitor.account, "", 100, token)
        certificates.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    now = datetime.now(UTC)
    rows = [{"cert": c, "countdown": views.countdown(c.expires_at, now)} for c in certificates]
    return _render(request, "certificates.html", visitor, rows=rows)


async def activity_page(request: web.Request) -> web.Response:
    visitor = await _signed_in(request)
    use_cases = _use_cases(request)
    services = await _all_services(use_cases, visitor.account)
    rows: list[tuple[Service, Any]] = []
    for service in services:
        page = await use_cases.commands.list_operations(
            visitor.account, service.service_arn, 20, ""
        )
        rows.extend((service, op) for op in page.items)
    rows.sort(key=lambda pair: pair[1].started_at, reverse=True)
    return _render(request, "activity.html", visitor, rows=rows[:100])


async def home(request: web.Request) -> web.StreamResponse:
    await _signed_in(request)
    raise web.HTTPSeeOther("/services")


async def region(request: web.Request) -> web.StreamResponse:
    """The region selector, a form posted like every other action (same origin, the
    session's CSRF token; a reader key may switch too): every page after this one shows
    the region picked."""
    visitor, form = await _session_form(request)
    wanted = form.get("region", "")
    if wanted in _use_cases(request).settings.served_regions:
        visitor.session.region = wanted
    else:
        visitor.session.flash("error", f"Region {wanted[:40]} is not served here.")
    raise web.HTTPSeeOther("/services")


# ----- the application -----


def create_app(use_cases: UseCases) -> web.Application:
    app = web.Application(
        middlewares=[security_headers, error_pages, same_origin, regional],
        client_max_size=64 * 1024,
    )
    app[USE_CASES] = use_cases
    app[SESSIONS] = SessionStore(use_cases.settings.console_session_seconds)
    app[TEMPLATES] = _environment()
    app[STOPPING] = asyncio.Event()

    async def on_shutdown(app: web.Application) -> None:
        app[STOPPING].set()

    app.on_shutdown.append(on_shutdown)
    static = resources.files(__package__ or "servicecontrol_server.api.console") / "static"
    app.router.add_get("/", home)
    app.router.add_get("/signin", signin_page)
    app.router.add_post("/signin", signin)
    app.router.add_post("/signout", signout)
    app.router.add_post("/region", region)
    app.router.add_get("/services", services_page)
    app.router.add_get("/services/rows", services_rows)
    app.router.add_get("/service", service_page)
    app.router.add_get("/service/delete", delete_page)
    app.router.add_post("/service/pause", pause)
    app.router.add_post("/service/deploy", deploy)
    app.router.add_post("/service/resume", resume)
    app.router.add_post("/service/delete", delete)
    app.router.add_get("/events", events)
    app.router.add_get("/connections", connections_page)
    app.router.add_post("/connections/create", create_connection)
    app.router.add_post("/connections/delete", delete_connection)
    app.router.add_get("/certificates", certificates_page)
    app.router.add_get("/activity", activity_page)
    app.router.add_static("/static", str(static), append_version=False)
    return app


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


async def start_console(use_cases: UseCases, listen: str) -> tuple[web.AppRunner, int]:
    """Serves the console on `listen` (port 0: a free one), over HTTPS when the settings
    name a certificate and key. Returns the runner (`await runner.cleanup()`) and port."""
    settings = use_cases.settings
    context = None
    if settings.console_tls_cert_file and settings.console_tls_key_file:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.console_tls_cert_file, settings.console_tls_key_file)
    host, port = _host_port(listen)
    runner = web.AppRunner(
        create_app(use_cases), access_log=None, handle_signals=False, shutdown_timeout=2.0
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=context)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = int(runner.addresses[0][1])
    log.info(
        "serving the console",
        extra={"port": bound, "listen": listen, "tls": context is not None},
    )
    return runner, bound
