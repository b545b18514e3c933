"""WatchEvents: an account's events from a cursor, then live. The event types are the
catalogue in domain/events.py."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncGenerator

from ..domain import names
from ..domain.errors import FieldViolation, InvalidRequest, QuotaExceeded
from .ports import EventFeed, EventRecord
from .regions import arn_region, region_of_request

# Positions are Postgres bigints.
MAX_POSITION = 2**63 - 1


# The ErrorInfo reason of a stream refused for the limits below.
WATCH_STREAM_LIMIT = "WATCH_STREAM_LIMIT_EXCEEDED"


class EventQueries:
    """`per_account` and `per_server` cap the streams open at once in this process (0 for
    no limit); a stream beyond them is refused with QuotaExceeded before it reads."""

    def __init__(self, feed: EventFeed, *, per_account: int = 0, per_server: int = 0) -> None:
        self.feed = feed
        self.per_account = per_account
        self.per_server = per_server
        self._open: Counter[str] = Counter()

    @property
    def open_streams(self) -> int:
        return sum(self._open.values())

    def _admit(self, account_id: str) -> None:
        total = self.open_streams
        if self.per_server and total >= self.per_server:
            raise QuotaExceeded(
                WATCH_STREAM_LIMIT, "WatchEvents streams", self.per_server, total, "this server"
            )
        mine = self._open[account_id]
        if self.per_account and mine >= self.per_account:
            raise QuotaExceeded(
                WATCH_STREAM_LIMIT,
                "WatchEvents streams",
                self.per_account,
                mine,
                f"account {account_id}",
            )
        self._open[account_id] += 1

    async def _admitted(
        self, account_id: str, stream: AsyncGenerator[EventRecord, None]
    ) -> AsyncGenerator[EventRecord, None]:
        # Admitted when first iterated, so that a slot is held only by a stream that will
        # also be closed (its finally runs).
        self._admit(account_id)
        try:
            async with contextlib.aclosing(stream) as records:
                async for record in records:
                    yield record
        finally:
            self._open[account_id] -= 1
            if self._open[account_id] <= 0:
                del self._open[account_id]

    async def head(self, account_id: str) -> str:
        """A cursor from which `watch` streams only what happens from now on: read it
        before reading the state it brings up to date, and nothing is missed."""
        return str(await self.feed.head(account_id))

    def watch(
        self, account_id: str, cursor: str, resource_arn: str = ""
    ) -> AsyncGenerator[EventRecord, None]:
        """The account's events after `cursor` ("" for the beginning of what is kept),
        optionally of one resource, then new ones as they happen. Checks the request
        before anything is streamed; close the stream (contextlib.aclosing) when done."""
        after = parse_cursor(cursor)
        if resource_arn and (
            not resource_arn.startswith("arn:aws:apprunner:")
            or len(resource_arn) > names.MAX_ARN_LENGTH
        ):
            raise InvalidRequest([FieldViolation("resource_arn", "not an ARN")])
        stream = self.feed.follow(account_id, after, resource_arn or None)
        region = region_of_request()
        if region is not None:
            stream = _in_region(stream, region)
        return self._admitted(account_id, stream)


async def _in_region(
    stream: AsyncGenerator[EventRecord, None], region: str
) -> AsyncGenerator[EventRecord, None]:
    """The events of the request's region: those of resources whose ARN names it."""
    async with contextlib.aclosing(stream):
        async for event in stream:
            if arn_region(event.resource_arn) == region:
                yield event


def parse_cursor(value: str) -> int:
    if not value:
        return 0
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_POSITION:
        raise InvalidRequest([FieldViolation("cursor", "not a cursor this server issued")])
    return int(value)
