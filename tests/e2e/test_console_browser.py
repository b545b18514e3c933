"""The web console in a real browser: Debian's chromium, driven by playwright-core from
tests/e2e/console/scenarios.js, against a real server (Postgres, S3, gRPC, the console).

The script runs every scenario in one browser and asks this test for what happens
outside the browser: another client deleting a service, the object store going down,
a delete's job held while the list shows it in progress. It also refreshes the
screenshots of docs/console.md."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from servicecontrol.v1 import service_control_pb2 as api
from servicecontrol_server.api.console import start_console
from servicecontrol_server.application.ports import ObjectStore
from servicecontrol_server.domain.identity import Role
from tests.support.faults import FlakyObjectStore
from tests.support.server import ACCOUNT, Harness, harness_settings, running_harness

REPO = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = REPO / "tests" / "e2e" / "console" / "scenarios.js"
SCENARIOS = [
    "sign in",
    "the list",
    "pause and resume",
    "the full delete flow",
    "a failed delete and its retry",
    "a live update while another client deletes",
    "keyboard-only delete",
    "a request without the CSRF token is refused",
    "a reader key sees no actions",
]
SERVICES = [
    "alpha-web",
    "alpha-api",
    "pause-me",
    "delete-me",
    "fragile",
    "other-client",
    "keyboard",
]
# The scenarios take about 30 s on an idle machine; this only stops a hung run.
HANG_SECONDS = 150

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(HANG_SECONDS + 60),
    pytest.mark.skipif(NODE is None, reason="node is not installed"),
    pytest.mark.skipif(
        not (REPO / "node_modules" / "playwright-core").is_dir(),
        reason="the Node modules are not installed: run `npm ci` in the repository root",
    ),
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="chromium is not installed: apt-get install chromium"
    ),
]


class GatedObjectStore(FlakyObjectStore):
    """A FlakyObjectStore whose calls also wait while the gate is closed: a delete's
    job stays in progress for as long as the test needs to see it so."""

    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.gate.set()

    def _enter(self, method: str) -> None:
        if not self.gate.wait(timeout=30):
            raise AssertionError("the object store's gate stayed closed")
        super()._enter(method)


class Outside:
    """What happens outside the browser, when the script asks for it."""

    def __init__(self, h: Harness, store: GatedObjectStore, arns: dict[str, str]) -> None:
        self.h = h
        self.store = store
        self.arns = arns

    async def __call__(self, need: str) -> None:
        if need == "hold-deletes":
            self.store.gate.clear()
        elif need == "release-deletes":
            self.store.gate.set()
        elif need in ("store-down", "store-up"):
            self.store.down = need == "store-down"
        elif need == "delete-other":
            await self.h.stub.DeleteService(
                api.DeleteServiceRequest(service_arn=self.arns["other-client"]),
                metadata=self.h.meta(),
            )
        elif need == "create-other":
            await self.h.create("late-arrival")
        else:
            raise AssertionError(f"the script needs {need!r}, which this test does not know")


@dataclass
class Run:
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    measures: dict[str, Any] = field(default_factory=dict)
    page_errors: list[str] = field(default_factory=list)
    stderr: str = ""


async def run_script(config: dict[str, Any], outside: Outside) -> Run:
    """Runs scenarios.js, answering its requests, until it exits (or it hangs)."""
    assert NODE is not None
    proc = await asyncio.create_subprocess_exec(
        NODE,
        str(SCRIPT),
        cwd=REPO,
        env={**os.environ, "CONSOLE_E2E": json.dumps(config)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    run = Run()
    try:
        async with asyncio.timeout(HANG_SECONDS):
            while line := await proc.stdout.readline():
                message = json.loads(line)
                if "need" in message:
                    reply: dict[str, Any] = {"id": message["id"], "ok": True}
                    try:
                        await outside(message["need"])
                    except Exception as exc:  # noqa: BLE001 - reported to the script
                        reply = {"id": message["id"], "ok": False, "error": repr(exc)}
                    proc.stdin.write((json.dumps(reply) + "\n").encode())
                    await proc.stdin.drain()
                elif "scenario" in message:
                    run.results[message["scenario"]] = message
                elif "measure" in message:
                    run.measures[message["measure"]] = message["value"]
                elif "pageerror" in message:
                    run.page_errors.append(message["pageerror"])
                elif "fatal" in message:
                    raise AssertionError(f"the browser script failed: {message['fatal']}")
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    run.stderr = (await proc.stderr.read()).decode()
    return run


@pytest.fixture
async def server(database_url: str, s3_server: Any, tmp_path: Path) -> AsyncIterator[Harness]:
    settings = harness_settings(database_url, s3_server, tmp_path, job_max_attempts=3)
    async with running_harness(settings, tmp_path) as h:
        h.push_image()
        yield h


async def test_the_console_in_a_real_browser(server: Harness, tmp_path: Path) -> None:
    h = server
    started = time.monotonic()
    store = GatedObjectStore(h.app.store)
    for handler in h.app.handlers.values():
        handler.store = store
    arns = {}
    for name in SERVICES:
        arns[name] = (await h.running_service(name)).service_arn
    await h.app.use_cases.domains.associate(
        ACCOUNT, arns["delete-me"], "www.delete-me.example", False
    )
    plan = await h.app.use_cases.commands.delete_service(
        ACCOUNT, arns["delete-me"], validate_only=True
    )
    reader = await h.new_key(ACCOUNT, Role.READER)
    runner, port = await start_console(h.app.use_cases, "127.0.0.1:0")
    failures = tmp_path / "failures"
    failures.mkdir()
    config = {
        "base": f"http://127.0.0.1:{port}",
        "account": ACCOUNT,
        "writer": h.keys[ACCOUNT].token,
        "reader": reader.token,
        "services": arns,
        "plan": plan.plan,
        "docs": str(REPO / "docs"),
        "failures": str(failures),
        "profile": str(tmp_path / "chromium-profile"),
    }

    try:
        run = await run_script(config, Outside(h, store, arns))
    finally:
        store.gate.set()
        store.down = False
        await runner.cleanup()
    results, measures = run.results, run.measures
    elapsed = time.monotonic() - started
    failed = {
        name: f"{r['error']}\n(screenshot: {r['screenshot']})"
        for name, r in results.items()
        if not r["ok"]
    }
    assert failed == {}, "\n\n".join(f"{k}: {v}" for k, v in failed.items())
    assert list(results) == SCENARIOS, (list(results), run.stderr)
    assert run.page_errors == [], run.page_errors
    # The list shows another client's delete within a second, without a reload.
    assert measures["live-first-change-ms"] < 1000, measures
    print(
        "console browser scenarios:",
        {name: r["ms"] for name, r in results.items()},
        measures,
        f"total {elapsed:.1f} s",
    )
