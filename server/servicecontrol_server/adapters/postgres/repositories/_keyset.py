"""Keyset pagination, written once: listings are newest first by (time, id), or by name.
A page asks for `limit` rows after the last row of the previous page; the application
asks for one more than it shows to know whether another page follows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_

from ....application.ports import Cursor


def newest_first(
    query: Select[Any],
    time: ColumnElement[Any],
    key: ColumnElement[Any],
    after: Cursor | None,
    limit: int,
) -> Select[Any]:
    """Orders by (time, key) descending and starts after the cursor's row."""
    query = query.order_by(time.desc(), key.desc()).limit(limit)
    if after is not None:
        at, last_key = after
        query = query.where(or_(time < at, and_(time == at, key < last_key)))
    return query


def by_name(
    query: Select[Any], name: ColumnElement[Any], after: str | None, limit: int
) -> Select[Any]:
    """Orders by a unique name ascending and starts after `after`."""
    query = query.order_by(name).limit(limit)
    if after is not None:
        query = query.where(name > after)
    return query
