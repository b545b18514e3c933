"""A LISTEN connection that turns Postgres notifications into asyncio wake-ups.

A notification is only a hint that something changed: it is lost while the connection is
down, and it never reaches us through a transaction-pooling PgBouncer. So every consumer
re-reads the table after waking and also polls on a timer; this class only makes the
common case fast. It wakes every subscriber after each (re)connect, because notifications
sent while it was disconnected are gone."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Sequence
from types import TracebackType

import psycopg
from psycopg import sql
from sqlalchemy.ext.asyncio import AsyncEngine

from .database import libpq_url

log = logging.getLogger(__name__)


def engine_libpq_url(engine: AsyncEngine) -> str:
    """The engine's URL for a plain psycopg connection (password included)."""
    return libpq_url(engine.url.render_as_string(hide_password=False))


class PgListener:
    """LISTENs on `channels` over one dedicated autocommit connection, reconnecting with
    capped exponential backoff. Subscribers get a latch (an asyncio.Event) that is set on
    every notification and every reconnect; they clear it themselves before re-reading."""

    def __init__(
        self,
        url: str,
        channels: Sequence[str],
        *,
        health_check_seconds: float = 30.0,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
    ) -> None:
        self._url = libpq_url(url)
        self._channels = tuple(channels)
        self._health_check_seconds = health_check_seconds
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._latches: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None
        # Set while LISTEN is in effect; consumers may wait on it to know that a change
        # committed from now on will wake them.
        self.connected = asyncio.Event()

    def subscribe(self, latch: asyncio.Event | None = None) -> asyncio.Event:
        latch = latch if latch is not None else asyncio.Event()
        self._latches.add(latch)
        return latch

    def unsubscribe(self, latch: asyncio.Event) -> None:
        self._latches.discard(latch)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"listen-{','.join(self._channels)}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected.clear()

    async def __aenter__(self) -> PgListener:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _wake_all(self) -> None:
        for latch in self._latches:
            latch.set()

    async def _run(self) -> None:
        delay = self._min_backoff
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url, autocommit=True
                ) as conn:
                    for channel in self._channels:
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self.connected.set()
                    self._wake_all()
                    delay = self._min_backoff
                    while True:
                        async for _ in conn.notifies(timeout=self._health_check_seconds):
                            self._wake_all()
                        # A quiet connection may be a dead one (a silently dropped TCP
                        # session never errors on read): prove it is alive.
                        await conn.execute("SELECT 1")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning(
                    "LISTEN connection lost; reconnecting",
                    extra={"channels": list(self._channels), "retry_in": delay},
                    exc_info=True,
                )
            finally:
                self.connected.clear()
            # Jittered so that replicas that lost the same server do not reconnect in step.
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self._max_backoff)
