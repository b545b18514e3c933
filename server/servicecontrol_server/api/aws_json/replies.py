"""How the App Runner actions page through listings and answer a create with tags."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ...application.results import Page
from . import shapes

Body = dict[str, Any]
T = TypeVar("T")


async def page(
    fetch: Callable[[int, str], Awaitable[Page]], max_results: int | None, token: str
) -> Page:
    """One page of `max_results`; without MaxResults, App Runner answers every remaining
    result at once, so the pages are gathered here."""
    if max_results is not None:
        return await fetch(max_results, token)
    items: list[Any] = []
    while True:
        found = await fetch(0, token)
        items += found.items
        token = found.next_page_token
        if not token:
            return Page(items, "")


def with_token(out: Body, token: str) -> Body:
    if token:
        out["NextToken"] = token
    return out


async def created(
    body: Body,
    member: str,
    shape: Callable[[T], Body],
    create: Callable[..., Awaitable[T]],
    account_id: str,
    *args: Any,
) -> Body:
    """Creates a resource with the request's Tags (read after its other members, which
    the caller has read into `args`) and answers it as `{member: shape(resource)}`."""
    tags = shapes.tags(body)
    return {member: shape(await create(account_id, *args, tags=tags))}
