"""WatchEvents: an account's events from a cursor, then live. The event types are the
catalogue in domain/events.py."""

from __future__ import annotations

from collections.abc import AsyncGenerator

from ..domain import names
from ..domain.errors import FieldViolation, InvalidRequest
from .ports import EventFeed, EventRecord

# Positions are Postgres bigints.
MAX_POSITION = 2**63 - 1


class EventQueries:
    def __init__(self, feed: EventFeed) -> None:
        self.feed = feed

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
        return self.feed.follow(account_id, after, resource_arn or None)


def parse_cursor(value: str) -> int:
    if not value:
        return 0
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_POSITION:
        raise InvalidRequest([FieldViolation("cursor", "not a cursor this server issued")])
    return int(value)
