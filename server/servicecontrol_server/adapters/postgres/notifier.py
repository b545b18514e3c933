"""Fans Postgres notifications out to asyncio waiters, over one LISTEN connection per
process. A missed notification only delays a waiter until its next check, so callers
always re-read state after waking: NOTIFY is a latency aid, never the source of truth."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

import psycopg

from .database import libpq_url

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, url: str, channel: str, *, recheck_seconds: float = 1.0) -> None:
        self.url = libpq_url(url)
        self.channel = channel
        self.recheck_seconds = recheck_seconds
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._listen(), name=f"listen-{self.channel}")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait(self, key: str, timeout: float) -> None:
        """Returns when `key` is notified, or after min(timeout, recheck) at the latest."""
        event = asyncio.Event()
        self._waiters[key].add(event)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), min(timeout, self.recheck_seconds))
        finally:
            waiters = self._waiters.get(key)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[key]

    async def _listen(self) -> None:
        delay = 0.1
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.url, autocommit=True
                ) as conn:
                    await conn.execute(f"LISTEN {self.channel}")
                    delay = 0.1
                    async for note in conn.notifies():
                        for event in list(self._waiters.get(note.payload, ())):
                            event.set()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - reconnect on any connection failure
                log.warning("notification listener lost; reconnecting", exc_info=True)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
