"""The operator's HTTP endpoint, on its own address: Prometheus `/metrics`, `/healthz`
(the process answers) and `/readyz` (the database answers and its schema is at the
migrations' head), beside the gRPC health service."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ..metrics import exposition

log = logging.getLogger(__name__)

# A scrape or probe must not hang on a stuck database.
DATABASE_TIMEOUT_SECONDS = 3.0

# Refreshes the gauges sampled from the database (queue depth, outbox lag).
Sampler = Callable[[], Awaitable[None]]
# None when ready; otherwise why not, with what to do about it.
Readiness = Callable[[], Awaitable[str | None]]


class OpsEndpoint:
    def __init__(self, sample: Sampler, readiness: Readiness) -> None:
        self.sample = sample
        self.readiness = readiness

    async def metrics(self, request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(self.sample(), DATABASE_TIMEOUT_SECONDS)
        except Exception:  # noqa: BLE001 - the process's own metrics are still worth serving
            log.debug("sampling the job queue and outbox failed", exc_info=True)
        body = exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            problem = await asyncio.wait_for(self.readiness(), DATABASE_TIMEOUT_SECONDS)
        except Exception as exc:  # noqa: BLE001 - not ready is the answer, not an error
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            problem = f"database unavailable: {reason}"
        if problem is not None:
            return web.Response(status=503, text=f"{problem}\n")
        return web.Response(text="ready\n")


async def start_ops_http(
    listen: str, sample: Sampler, readiness: Readiness
) -> tuple[web.AppRunner, int]:
    """Serves the endpoint on `listen` (port 0: a free one); returns the runner and port."""
    endpoint = OpsEndpoint(sample, readiness)
    web_app = web.Application()
    web_app.router.add_get("/metrics", endpoint.metrics)
    web_app.router.add_get("/healthz", endpoint.healthz)
    web_app.router.add_get("/readyz", endpoint.readyz)
    host, _, port = listen.rpartition(":")
    runner = web.AppRunner(web_app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host.strip("[]") or None, int(port)).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, int(runner.addresses[0][1])
