"""The web console's backend, over HTTP against a real server: sessions, CSRF, the
Content-Security-Policy, roles, accounts, the API's own errors, the typed delete
confirmation and the event stream's resumption. (The browser tests are in
tests/e2e/test_console_browser.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from sqlalchemy import text

from servicecontrol.v1 import resources_pb2 as pb
from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.api.console import start_console
from servicecontrol_server.domain.errors import DomainError
from servicecontrol_server.domain.identity import Role
from tests.support.console import ConsoleClient, csrf_of
from tests.support.server import ACCOUNT, OTHER_ACCOUNT, Harness
from tests.support.waiting import wait_until

PAGES = [
    "/",
    "/services",
    "/services/rows",
    "/service?arn=x",
    "/service/delete?arn=x",
    "/connections",
    "/certificates",
    "/activity",
]
MUTATIONS = [
    "/service/pause",
    "/service/deploy",
    "/service/resume",
    "/service/delete",
    "/connections/create",
    "/connections/delete",
    "/region",
    "/signout",
]


@dataclass
class Console:
    harness: Harness
    base: str

    async def client(self, token: str | None = None) -> ConsoleClient:
        client = ConsoleClient(self.base)
        if token is not None:
            answer = await client.sign_in(token)
            assert answer.status == 200, await answer.text()
        return client


@pytest.fixture
async def console(harness: Harness) -> AsyncIterator[Console]:
    runner, port = await start_console(harness.app.use_cases, "127.0.0.1:0")
    try:
        yield Console(harness, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()


def token(h: Harness, account: str = ACCOUNT) -> str:
    return h.keys[account].token


def arn_qs(arn: str) -> str:
    return "arn=" + quote(arn, safe="")


async def test_every_page_and_action_needs_a_session(console: Console) -> None:
    client = await console.client()
    try:
        for path in PAGES:
            answer = await client.get(path, allow_redirects=False)
            assert answer.status == 303, path
            assert answer.headers["Location"].startswith("/signin?next="), path
        answer = await client.get("/events")
        assert answer.status == 401
        for path in MUTATIONS:
            answer = await client.post(path, {"arn": "x"}, allow_redirects=False)
            assert answer.status == 401, path
    finally:
        await client.close()


async def test_sign_in_opens_a_strict_http_only_session_with_a_csp(console: Console) -> None:
    client = await console.client()
    try:
        answer = await client.post(
            "/signin", {"token": token(console.harness)}, csrf=False, allow_redirects=False
        )
        assert answer.status == 303 and answer.headers["Location"] == "/services"
        cookie = answer.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain HTTP; see the TLS test
        # The session id is random, not the key.
        assert console.harness.keys[ACCOUNT].secret not in cookie
        page = await client.get("/services")
        csp = page.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert page.headers["X-Frame-Options"] == "DENY"
    finally:
        await client.close()


async def test_a_wrong_key_is_refused_with_the_apis_words(console: Console) -> None:
    client = await console.client()
    try:
        for bad, words in [
            ("not-a-key", "The bearer token is not a ServiceControl API key."),
            (f"{console.harness.keys[ACCOUNT].key.key_id}.{'x' * 40}", "The API key is not valid."),
        ]:
            answer = await client.post("/signin", {"token": bad}, csrf=False)
            assert answer.status == 401
            assert words in await answer.text()
        assert (await client.get("/services", allow_redirects=False)).status == 303
    finally:
        await client.close()


async def test_no_page_has_inline_script(console: Console) -> None:
    h = console.harness
    svc = await h.running_service("no-inline")
    client = await console.client(token(h))
    try:
        for path in [
            "/services",
            f"/service?{arn_qs(svc.service_arn)}",
            f"/service/delete?{arn_qs(svc.service_arn)}",
            "/connections",
            "/certificates",
            "/activity",
            "/signin",
        ]:
            answer = await client.get(path)
            assert answer.status == 200, path
            html = await answer.text()
            for tag in re.findall(r"<script\b[^>]*>", html):
                assert "src=" in tag, (path, tag)
            bodies = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
            assert bodies and all(not body.strip() for body in bodies), path
            assert re.search(r"\son[a-z]+\s*=", html) is None, path
            assert "style=" not in html, path
    finally:
        await client.close()


async def test_a_mutation_without_the_csrf_token_is_refused_and_changes_nothing(
    console: Console,
) -> None:
    h = console.harness
    svc = await h.running_service("csrf-target")
    client = await console.client(token(h))
    try:
        for form in ({"arn": svc.service_arn}, {"arn": svc.service_arn, "csrf": "forged"}):
            answer = await client.post("/service/pause", form, csrf=False)
            assert answer.status == 403
            assert "CSRF token" in await answer.text()
        answer = await client.post(
            "/service/delete",
            {"arn": svc.service_arn, "confirm": "csrf-target"},
            csrf=False,
        )
        assert answer.status == 403
        assert (await h.describe(svc.service_arn)).status == pb.Service.RUNNING
        # The same form with the session's token goes through.
        answer = await client.post("/service/pause", {"arn": svc.service_arn})
        assert answer.status == 200 and "Pausing csrf-target" in await answer.text()
    finally:
        await client.close()


async def test_a_reader_key_sees_no_actions_and_is_refused_anyway(console: Console) -> None:
    h = console.harness
    svc = await h.running_service("read-only")
    reader = await h.new_key(ACCOUNT, Role.READER)
    client = await console.client(reader.token)
    try:
        page = await (await client.get(f"/service?{arn_qs(svc.service_arn)}")).text()
        assert "read-only" in page
        for button in (">Pause<", ">Resume<", ">Delete<", "Retry delete"):
            assert button not in page
        connections = await (await client.get("/connections")).text()
        assert "Create connection" not in connections
        for path, form in [
            ("/service/pause", {"arn": svc.service_arn}),
            ("/service/delete", {"arn": svc.service_arn, "confirm": "read-only"}),
            ("/connections/create", {"name": "nope", "provider": "GITHUB"}),
        ]:
            answer = await client.post(path, form)
            assert answer.status == 403, path
            assert "A reader key may not call" in await answer.text()
        assert (await h.describe(svc.service_arn)).status == pb.Service.RUNNING
        audit = await h.app.identity.audit(ACCOUNT, None)
        refused = [a for a in audit if a.key_id == reader.key.key_id]
        assert {a.outcome for a in refused} == {"PERMISSION_DENIED"}
        assert {a.action for a in refused} >= {"PauseService", "DeleteService"}
    finally:
        await client.close()


async def test_another_account_cannot_see_or_act_on_a_service_by_url(console: Console) -> None:
    h = console.harness
    svc = await h.running_service("account-a-only")
    client = await console.client(token(h, OTHER_ACCOUNT))
    try:
        listing = await (await client.get("/services")).text()
        assert "account-a-only" not in listing
        assert "No services yet." in listing
        for path in (
            f"/service?{arn_qs(svc.service_arn)}",
            f"/service/delete?{arn_qs(svc.service_arn)}",
        ):
            answer = await client.get(path)
            assert answer.status == 404, path
            html = await answer.text()
            # Only the refusal: nothing of the service (its status, URL) is shown.
            assert "SERVICE_NOT_FOUND" in html
            assert "Running" not in html and svc.service_url not in html
        for path, form in [
            ("/service/pause", {"arn": svc.service_arn}),
            ("/service/delete", {"arn": svc.service_arn, "confirm": "delete"}),
            ("/service/delete", {"arn": svc.service_arn, "retry": "1"}),
        ]:
            answer = await client.post(path, form)
            assert answer.status == 404, path
            assert "SERVICE_NOT_FOUND" in await answer.text()
        activity = await (await client.get("/activity")).text()
        assert "account-a-only" not in activity
        assert (await h.describe(svc.service_arn)).status == pb.Service.RUNNING
    finally:
        await client.close()


async def test_a_revoked_key_ends_its_sessions_at_the_next_request(console: Console) -> None:
    h = console.harness
    key = await h.new_key(ACCOUNT, Role.WRITER)
    client = await console.client(key.token)
    try:
        assert (await client.get("/services", allow_redirects=False)).status == 200
        await h.app.identity.revoke_key(ACCOUNT, key.key.key_id)
        answer = await client.get("/services", allow_redirects=False)
        assert answer.status == 303 and answer.headers["Location"].startswith("/signin")
    finally:
        await client.close()


async def test_refusals_are_shown_in_the_apis_own_words(console: Console) -> None:
    h = console.harness
    svc = await h.running_service("paused-twice")
    client = await console.client(token(h))
    try:
        paused = await client.post("/service/pause", {"arn": svc.service_arn})
        assert paused.status == 200
        await wait_until(lambda: _status_is(h, svc.service_arn, pb.Service.PAUSED), timeout=10)
        try:
            await h.app.use_cases.commands.pause_service(ACCOUNT, svc.service_arn)
        except DomainError as exc:
            expected = exc
        else:
            raise AssertionError("pausing a paused service succeeded")
        answer = await client.post("/service/pause", {"arn": svc.service_arn})
        assert answer.status == 409
        html = await answer.text()
        assert expected.message in html.replace("&#39;", "'").replace("&#34;", '"')
        assert expected.reason in html
        assert "Traceback" not in html
    finally:
        await client.close()


async def test_deploy_starts_a_deployment_of_a_running_service(console: Console) -> None:
    h = console.harness
    svc = await h.running_service("deployed-web")
    client = await console.client(token(h))
    try:
        page = await client.get(f"/service?arn={svc.service_arn}")
        assert 'action="/service/deploy"' in await page.text()
        answer = await client.post("/service/deploy", {"arn": svc.service_arn})
        assert answer.status == 200
        assert "Deploying deployed-web" in await answer.text()
        operations = await h.stub.ListOperations(
            api.ListOperationsRequest(service_arn=svc.service_arn), metadata=h.meta()
        )
        assert operations.operations[0].type == pb.Operation.START_DEPLOYMENT
        done = await h.wait(operations.operations[0].id)
        assert done.status == pb.Operation.SUCCEEDED
    finally:
        await client.close()


async def test_delete_needs_the_typed_name_and_then_starts_the_operation(
    console: Console,
) -> None:
    h = console.harness
    svc = await h.running_service("typed-name")
    client = await console.client(token(h))
    try:
        plan = await (await client.get(f"/service/delete?{arn_qs(svc.service_arn)}")).text()
        expected = await h.app.use_cases.commands.delete_service(
            ACCOUNT, svc.service_arn, validate_only=True
        )
        assert expected.plan is not None
        assert f"{expected.plan['image_objects']} objects" in plan
        for wrong in ("", "typed", "TYPED-NAME", "Delete"):
            answer = await client.post(
                "/service/delete", {"arn": svc.service_arn, "confirm": wrong}
            )
            assert answer.status == 400, wrong
            assert "Type the service name (typed-name)" in await answer.text()
        # Retrying is only for a failed delete.
        answer = await client.post("/service/delete", {"arn": svc.service_arn, "retry": "1"})
        assert answer.status == 400
        assert (await h.describe(svc.service_arn)).status == pb.Service.RUNNING
        answer = await client.post(
            "/service/delete", {"arn": svc.service_arn, "confirm": "typed-name"}
        )
        assert answer.status == 200 and str(answer.url).endswith("/services")
        described = await h.describe(svc.service_arn)
        assert described.status == pb.Service.OPERATION_IN_PROGRESS
        assert "Deleting typed-name: operation" in await answer.text()
        assert (await h.wait(described.current_operation_id)).status == pb.Operation.SUCCEEDED
        audit = await h.app.identity.audit(ACCOUNT, None)
        deletes = [a for a in audit if a.action == "DeleteService" and a.outcome == "OK"]
        assert deletes and deletes[-1].source.startswith("console")
    finally:
        await client.close()


async def _read_events(response: aiohttp.ClientResponse, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    while len(events) < count:
        line = (await asyncio.wait_for(response.content.readline(), 10)).decode().rstrip("\n")
        if line.startswith("id: "):
            current["id"] = line[4:]
        elif line.startswith("data: "):
            current.update(json.loads(line[6:]))
        elif line == "" and "id" in current:
            events.append(current)
            current = {}
    return events


async def test_the_event_stream_resumes_after_the_last_event_id(console: Console) -> None:
    h = console.harness
    svc = await h.running_service("streamed")
    client = await console.client(token(h))

    async def all_relayed() -> bool:
        # The head counts relayed events only: one the relay has not positioned yet would
        # arrive after the cursor.
        async with h.app.engine.connect() as conn:
            query = "select count(*) from outbox where position is null and account_id = :a"
            return (await conn.execute(text(query), {"a": ACCOUNT})).scalar_one() == 0

    try:
        await wait_until(all_relayed, timeout=10)
        cursor = await h.app.use_cases.events.head(ACCOUNT)
        async with client.http.get(f"{console.base}/events?cursor={cursor}") as stream:
            assert stream.headers["Content-Type"] == "text/event-stream"
            await client.post("/service/pause", {"arn": svc.service_arn})
            first = await _read_events(stream, 2)
        assert [e["type"] for e in first] == ["service.pause_requested", "service.paused"]
        assert {e["arn"] for e in first} == {svc.service_arn}
        await client.post("/service/resume", {"arn": svc.service_arn})
        await wait_until(lambda: _status_is(h, svc.service_arn, pb.Service.RUNNING), timeout=10)
        # Reconnecting with the first event's id replays what came after it, nothing before.
        async with client.http.get(
            f"{console.base}/events?cursor={cursor}", headers={"Last-Event-ID": first[0]["id"]}
        ) as stream:
            again = await _read_events(stream, 3)
        assert [e["type"] for e in again] == [
            "service.paused",
            "service.resume_requested",
            "service.resumed",
        ]
        assert again[0]["id"] == first[1]["id"]
        answer = await client.get("/events?cursor=bogus")
        assert answer.status == 400 and "cursor" in await answer.text()
    finally:
        await client.close()


async def _status_is(h: Harness, arn: str, status: int) -> bool:
    return (await h.describe(arn)).status == status


async def test_connections_show_users_and_refuse_deleting_one_in_use(console: Console) -> None:
    h = console.harness
    client = await console.client(token(h))
    try:
        short = await client.post("/connections/create", {"name": "gh", "provider": "GITHUB"})
        assert short.status == 400
        assert "connection_name: 4-32 characters" in await short.text()
        answer = await client.post(
            "/connections/create", {"name": "my-github", "provider": "GITHUB"}
        )
        assert answer.status == 200
        page = await answer.text()
        assert "Connection my-github created: Pending handshake." in page
        connections = await h.app.use_cases.connections.list_connections(ACCOUNT, "", 10, "")
        conn = connections.items[0]
        await h.app.use_cases.connections.complete_handshake(
            ACCOUNT, conn.connection_arn, "AVAILABLE"
        )
        from tests.integration.test_connections import code_service

        created = await h.stub.CreateService(
            code_service("uses-gh", conn.connection_arn), metadata=h.meta()
        )
        await h.wait(created.operation_id)
        page = await (await client.get("/connections")).text()
        assert "uses-gh" in page and "Available" in page
        answer = await client.post("/connections/delete", {"arn": conn.connection_arn})
        assert answer.status == 409
        html = await answer.text()
        assert "CONNECTION_IN_USE" in html and created.service.service_arn in html
        duplicate = await client.post(
            "/connections/create", {"name": "my-github", "provider": "GITHUB"}
        )
        assert duplicate.status == 409 and "CONNECTION_NAME_TAKEN" in await duplicate.text()
    finally:
        await client.close()


async def test_csrf_is_bound_to_the_session(console: Console) -> None:
    h = console.harness
    svc = await h.running_service("two-sessions")
    first = await console.client(token(h))
    second = await console.client(token(h))
    try:
        assert first.csrf != second.csrf
        answer = await second.post("/service/pause", {"arn": svc.service_arn, "csrf": first.csrf})
        assert answer.status == 403
        signed_out = await first.post("/signout", {})
        assert signed_out.status == 200 and "Sign in" in await signed_out.text()
        assert (await first.get("/services", allow_redirects=False)).status == 303
        # The other session is untouched.
        page = await second.get("/services")
        assert page.status == 200 and csrf_of(await page.text()) == second.csrf
    finally:
        await first.close()
        await second.close()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "console.crt", directory / "console.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


async def test_under_tls_the_session_cookie_is_secure(harness: Harness, tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    settings = harness.settings.model_copy(
        update={"console_tls_cert_file": cert_file, "console_tls_key_file": key_file}
    )
    use_cases = dataclasses.replace(harness.app.use_cases, settings=settings)
    runner, port = await start_console(use_cases, "127.0.0.1:0")
    client = ConsoleClient(f"https://127.0.0.1:{port}")
    try:
        answer = await client.post(
            "/signin", {"token": token(harness)}, csrf=False, allow_redirects=False
        )
        assert answer.status == 303
        cookie = answer.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        # Plain HTTP is not served on the TLS port.
        with pytest.raises(aiohttp.ClientError):
            async with aiohttp.ClientSession() as plain:
                await plain.get(f"http://127.0.0.1:{port}/signin")
    finally:
        await client.close()
        await runner.cleanup()


async def test_the_services_list_filters_by_name_and_pages(console: Console) -> None:
    h = console.harness
    for name in ("list-a1", "list-a2", "list-a3", "list-b1"):
        await h.create(name)
    client = await console.client(token(h))
    try:

        async def names(qs: str) -> list[str]:
            html = await (await client.get(f"/services/rows?{qs}")).text()
            return re.findall(r'data-name="([^"]+)"', html)

        assert await names("") == ["list-a1", "list-a2", "list-a3", "list-b1"]
        assert await names("name=A") == ["list-a1", "list-a2", "list-a3"]
        assert await names("name=a&size=2&page=1") == ["list-a1", "list-a2"]
        assert await names("name=a&size=2&page=2") == ["list-a3"]
        page = await (await client.get("/services?name=a&size=2")).text()
        assert "Page 1 of 2" in page and "page=2" in page
        assert "No service matches" in await (await client.get("/services?name=zzz")).text()
    finally:
        await client.close()


async def test_after_a_delete_the_report_and_the_retained_certificate_are_shown(
    console: Console,
) -> None:
    h = console.harness
    svc = await h.running_service("reported")
    await h.app.use_cases.domains.associate(ACCOUNT, svc.service_arn, "app.reported.example", False)
    client = await console.client(token(h))
    try:
        linked = await (await client.get("/certificates")).text()
        assert "app.reported.example" in linked and f"Linked: <code>{svc.service_arn}" in linked
        answer = await client.post("/service/delete", {"arn": svc.service_arn, "confirm": "delete"})
        assert answer.status == 200
        await wait_until(lambda: _status_is(h, svc.service_arn, pb.Service.DELETED), timeout=20)
        dashboard = await (await client.get(f"/service?{arn_qs(svc.service_arn)}")).text()
        assert "DELETE_SERVICE" in dashboard and "Deletion report" in dashboard
        assert ">Delete<" not in dashboard  # nothing left to act on
        operations = await h.app.use_cases.commands.list_operations(ACCOUNT, svc.service_arn, 5, "")
        report = operations.items[0].deletion_report
        assert report
        assert f"<dd>{report['image_objects']} (" in dashboard
        assert ", ".join(report["configuration_records"]) in dashboard
        assert "app.reported.example until" in dashboard
        retained = await (await client.get("/certificates")).text()
        assert "app.reported.example" in retained and "Retained (unlinked" in retained
        assert re.search(r"\(in (6 days 23 hours|7 days)\)", retained), retained
    finally:
        await client.close()


async def test_a_form_from_another_site_is_refused(console: Console) -> None:
    h = console.harness
    client = await console.client()
    try:
        answer = await client.post(
            "/signin",
            {"token": token(h)},
            csrf=False,
            headers={"Origin": "http://attacker.example"},
            allow_redirects=False,
        )
        assert answer.status == 403 and "another site" in await answer.text()
        assert "Set-Cookie" not in answer.headers
        same = await client.post(
            "/signin",
            {"token": token(h)},
            csrf=False,
            headers={"Origin": console.base},
            allow_redirects=False,
        )
        assert same.status == 303
    finally:
        await client.close()


async def test_a_live_refresh_leaves_the_flash_to_the_page_it_was_made_for(
    console: Console,
) -> None:
    """A page's live refresh that runs between an action and the page load it redirects
    to must not take the action's message: the page load shows it."""
    h = console.harness
    svc = await h.running_service("flash-kept")
    client = await console.client(token(h))
    try:
        answer = await client.post(
            "/service/pause", {"arn": svc.service_arn}, allow_redirects=False
        )
        assert answer.status in (302, 303), answer.status
        page = f"/service?{arn_qs(svc.service_arn)}"
        refresh = await client.get(page, headers={"X-Requested-With": "console"})
        assert refresh.status == 200
        assert "Pausing flash-kept" not in await refresh.text()
        loaded = await client.get(page)
        assert "Pausing flash-kept" in await loaded.text()
    finally:
        await client.close()
