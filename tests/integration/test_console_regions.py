"""The console's region picker on a server serving two regions: it offers both, and the
pages show the region picked; a region not served is refused with a message. The switch
is a form posted with the session's CSRF token, as the console's other actions are."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.api.console import start_console
from tests.support.console import ConsoleClient
from tests.support.server import ACCOUNT, Harness, harness_settings, running_harness

HOME, AWAY = "us-east-1", "eu-west-1"


@pytest.fixture
async def harness(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    settings = harness_settings(database_url, s3_server, tmp_path, regions=f"{HOME},{AWAY}")
    async with running_harness(settings, tmp_path) as h:
        h.push_image()
        yield h


async def test_the_region_picker_scopes_every_page(harness: Harness) -> None:
    home = await harness.create("home-web")
    away = await harness.stub.CreateService(
        api.CreateServiceRequest(
            service_name="away-web",
            source_configuration={"image_repository": {"image_identifier": "hello-web:1.0"}},
        ),
        metadata=(*harness.meta(), ("x-servicecontrol-region", AWAY)),
    )
    runner, port = await start_console(harness.app.use_cases, "127.0.0.1:0")
    client = ConsoleClient(f"http://127.0.0.1:{port}")
    try:
        assert (await client.sign_in(harness.keys[ACCOUNT].token)).status == 200
        page = await (await client.get("/services")).text()
        assert f'<option value="{AWAY}">' in page and f'value="{HOME}" selected' in page
        assert home.service.service_arn in page and away.service.service_arn not in page

        picked = await (await client.post("/region", {"region": AWAY})).text()
        assert f'value="{AWAY}" selected' in picked
        assert away.service.service_arn in picked and home.service.service_arn not in picked

        refused = await (await client.post("/region", {"region": "ap-south-1"})).text()
        assert "Region ap-south-1 is not served here." in refused
        assert away.service.service_arn in refused  # still in the region picked before
    finally:
        await client.close()
        await runner.cleanup()


async def test_the_region_switch_is_a_form_posted_like_every_other_action(
    harness: Harness,
) -> None:
    """A link or another site's form cannot switch a signed-in visitor's region: the
    switch is a POST with the session's CSRF token, from the console's own origin."""
    runner, port = await start_console(harness.app.use_cases, "127.0.0.1:0")
    client = ConsoleClient(f"http://127.0.0.1:{port}")
    try:
        assert (await client.sign_in(harness.keys[ACCOUNT].token)).status == 200
        page = await (await client.get("/services")).text()
        form = page[page.index('<form class="region"') :]
        form = form[: form.index("</form>")]
        assert 'method="post"' in form and f'name="csrf" value="{client.csrf}"' in form

        linked = await client.get(f"/region?region={AWAY}", allow_redirects=False)
        assert linked.status == 405
        stale = await client.post("/region", {"region": AWAY, "csrf": "stale"})
        assert stale.status == 403 and "CSRF token is missing or stale" in await stale.text()
        foreign = await client.post(
            "/region", {"region": AWAY}, headers={"Origin": "https://elsewhere.example"}
        )
        assert foreign.status == 403 and "another site" in await foreign.text()
        still = await (await client.get("/services")).text()
        assert f'value="{HOME}" selected' in still  # nothing refused switched the region

        switched = await client.post(
            "/region", {"region": AWAY}, headers={"Origin": f"http://127.0.0.1:{port}"}
        )
        assert switched.status == 200 and str(switched.url).endswith("/services")
        assert f'value="{AWAY}" selected' in await switched.text()
    finally:
        await client.close()
        await runner.cleanup()
