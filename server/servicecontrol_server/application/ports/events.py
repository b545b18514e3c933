"""The event ports: reading the relayed event log, and waking operation waiters."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class EventRecord:
    """A relayed event: its position orders an account's events and is the cursor."""

    event_id: str
    position: int
    account_id: str
    resource_arn: str
    type: str
    payload: dict[str, Any]
    occurred_at: datetime


class EventFeed(Protocol):
    async def head(self, account_id: str) -> int:
        """The account's latest relayed position (0 if none): a cursor for "from now on"."""
        ...

    def follow(
        self,
        account_id: str,
        after_position: int,
        resource_arn: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> AsyncGenerator[EventRecord, None]:
        """The account's events after `after_position`, then new ones as they are
        relayed, until `stop` is set or the consumer stops iterating (close the iterator,
        e.g. with contextlib.aclosing, to release what it holds at once)."""
        ...


class OperationWaiter(Protocol):
    """A latch set whenever some operation may have ended (for WaitOperation)."""

    def subscribe(self) -> asyncio.Event: ...

    def unsubscribe(self, latch: asyncio.Event) -> None: ...
