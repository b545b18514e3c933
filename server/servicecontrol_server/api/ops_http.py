"""The operator's HTTP endpoint, on its own address: Prometheus `/metrics`, `/healthz`
(the process answers) and `/readyz` (the database answers and its schema is at the
migrations' head), beside the gRPC health service."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from .. import metrics
from ..adapters.postgres import stats
from ..adapters.postgres.migrate import head_revision
from ..bootstrap import Application

log = logging.getLogger(__name__)

# A scrape or probe must not hang on a stuck database.
DATABASE_TIMEOUT_SECONDS = 3.0


class OpsEndpoint:
    def __init__(self, app: Application) -> None:
        self.app = app
        self._head: str | None = None

    async def metrics(self, request: web.Request) -> web.Response:
        try:
            backlog = await asyncio.wait_for(
                stats.backlog(self.app.engine), DATABASE_TIMEOUT_SECONDS
            )
        except Exception:  # noqa: BLE001 - the process's own metrics are still worth serving
            log.debug("sampling the job queue and outbox failed", exc_info=True)
        else:
            metrics.QUEUE_READY.set(backlog.ready)
            metrics.QUEUE_OLDEST_SECONDS.set(backlog.oldest_ready_seconds)
            metrics.OUTBOX_PENDING.set(backlog.outbox_pending)
            metrics.OUTBOX_LAG_SECONDS.set(backlog.outbox_lag_seconds)
        body = generate_latest(REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(self, request: web.Request) -> web.Response:
        if self._head is None:
            self._head = await asyncio.to_thread(head_revision)
        try:
            current = await asyncio.wait_for(
                stats.schema_revision(self.app.engine), DATABASE_TIMEOUT_SECONDS
            )
        except Exception as exc:  # noqa: BLE001 - not ready is the answer, not an error
            reason = " ".join(str(exc).split())[:200] or type(exc).__name__
            return web.Response(status=503, text=f"database unavailable: {reason}\n")
        if current != self._head:
            return web.Response(
                status=503,
                text=f"database schema at {current or 'no revision'}, expected {self._head}: "
                "run `servicecontrol migrate`\n",
            )
        return web.Response(text="ready\n")


async def start_ops_http(app: Application, listen: str) -> tuple[web.AppRunner, int]:
    endpoint = OpsEndpoint(app)
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
