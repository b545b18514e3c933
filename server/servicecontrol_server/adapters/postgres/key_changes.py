"""The listener that keeps a `KeyCache` current and proves, by heartbeat, that it does.

It LISTENs on `api_key_changes` (every insert, update and delete of an api_keys row
notifies its key id, a TRUNCATE '*': migration 0012) over a session of its own, and
every `bound / 4` it sends a heartbeat: a notification on a channel only this listener
listens on, sent on that same session. Notifications are delivered in commit order,
so when the heartbeat sent at time t comes back, every key change committed before t
has been read, and applied, before it: the cache may be used until t + bound. A
heartbeat counts only when the notifying session is the listening one (its backend pid),
so a pooler that hands the statements to other sessions (a transaction-pooling
PgBouncer, through which LISTEN does not work) proves nothing and the cache stays unused.

When the session is lost (an error, or no heartbeat back for `lost_after` seconds), the
cache is unproven at once and the listener reconnects with capped, jittered backoff; on
every (re)connect it empties the cache (changes announced while it was away are gone)
before its first heartbeat proves anything. One warning is logged when it is lost, one
line when it is back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg import sql

from .database import libpq_url
from .key_cache import KeyCache

log = logging.getLogger(__name__)

CHANNEL = "api_key_changes"
# The payload of a TRUNCATE: every key.
EVERY_KEY = "*"
APPLICATION_NAME = "servicecontrol-key-changes"
# The heartbeat: a notification on the listener's own channel, committed on its session.
HEARTBEAT = "SELECT pg_notify(%s, %s)"


class KeyChangeListener:
    def __init__(
        self,
        url: str,
        cache: KeyCache,
        *,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._url = libpq_url(url)
        self.cache = cache
        self.heartbeat_seconds = cache.bound_seconds / 4
        # A session whose heartbeats have not come back for this long is given up.
        self.lost_after = max(5.0, 2 * cache.bound_seconds)
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._clock = clock
        self._beat_channel = f"api_key_heartbeat_{uuid.uuid4().hex}"
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        # The listening session's backend pid, while there is one (tests end it).
        self.backend_pid: int | None = None
        # Heartbeats sent on the current session and not yet back: token -> send time.
        self._sent: dict[int, float] = {}
        self._beats = 0
        # Sessions lost or not opened, in a row (0 while one is in use).
        self.failures = 0

    def start(self) -> None:
        if self._task is None:
            self._stopping = asyncio.Event()
            self._task = asyncio.create_task(self._run(), name="listen-api-key-changes")

    async def close(self) -> None:
        """Asks the listener to stop and waits for it: it ends at its next heartbeat, or
        once a connection attempt or heartbeat in flight gives up (`lost_after`), closing
        its session itself. A task cancelled while the driver waits for an answer can be
        left waiting for good, so cancelling is only the last resort."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping.set()
            done, _ = await asyncio.wait({task}, timeout=self.lost_after + 1)
            if not done:
                task.cancel()
                done, _ = await asyncio.wait({task}, timeout=1)
            if done and not task.cancelled():
                task.exception()  # retrieved: it has been logged already, if anything
            elif not done:
                log.warning("API key change listener did not stop in time; left behind")
        self.cache.unproven()
        self.cache.clear()

    async def _run(self) -> None:
        delay = self._min_backoff
        lost = False
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._url,
                    autocommit=True,
                    application_name=APPLICATION_NAME,
                    connect_timeout=max(2, int(self.lost_after)),
                ) as conn:
                    await self._listen(conn)
                    self.failures = 0
                    if lost:
                        log.info("API key change listener is back; the key cache is in use")
                    lost = False
                    delay = self._min_backoff
                    await self._follow(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure: reconnect
                self.failures += 1
                if not lost:
                    log.warning(
                        "API key change listener lost; every call looks its key up until "
                        "it is back",
                        extra={"error": type(exc).__name__, "retry_in": delay},
                    )
                lost = True
            finally:
                self.cache.unproven()
                self.backend_pid = None
            if self._stopping.is_set():
                return
            # Jittered so that replicas that lost the same server do not reconnect in step.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self._max_backoff)

    async def _listen(self, conn: psycopg.AsyncConnection[object]) -> None:
        for channel in (CHANNEL, self._beat_channel):
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.backend_pid = conn.info.backend_pid
        self._sent.clear()
        # Changes announced while no session listened are gone: nothing kept survives.
        self.cache.clear()

    async def _follow(self, conn: psycopg.AsyncConnection[object]) -> None:
        """Heartbeats every `heartbeat_seconds` and applies what comes back, until the
        session fails or its heartbeats stop coming back."""
        last_back = self._clock()
        while not self._stopping.is_set():
            sent = self._clock()
            self._beats += 1
            self._sent[self._beats] = sent
            await asyncio.wait_for(
                conn.execute(HEARTBEAT, (self._beat_channel, str(self._beats))),
                timeout=self.lost_after,
            )
            # Until the next heartbeat is due (at least one poll: what came back while
            # the heartbeat was sent is applied even when it took longer than that).
            until_next = max(0.0, sent + self.heartbeat_seconds - self._clock())
            async for notify in conn.notifies(timeout=until_next):
                if self._apply(notify):
                    last_back = self._clock()
            if self._clock() - last_back > self.lost_after:
                raise TimeoutError("no heartbeat came back")

    def _apply(self, notify: psycopg.Notify) -> bool:
        """Applies one notification; True when it was one of this session's heartbeats."""
        if notify.channel == CHANNEL:
            if notify.payload == EVERY_KEY:
                self.cache.clear()
            else:
                self.cache.drop(notify.payload)
            return False
        if notify.channel != self._beat_channel or notify.pid != self.backend_pid:
            return False
        try:
            token = int(notify.payload)
        except ValueError:
            return False
        sent = self._sent.get(token)
        if sent is None:
            return False
        for older in [t for t in self._sent if t <= token]:
            del self._sent[older]
        self.cache.proven(sent)
        return True
