"""Blocking object-store work, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from .ports import ObjectStore, RunsBlocking

T = TypeVar("T")


async def off_loop(store: ObjectStore, fn: Callable[..., T], *args: Any) -> T:
    """Runs `fn(*args)`, which calls `store`, on the store's own bounded pool when it has
    one (bootstrap's stores do), else on a thread of the default executor."""
    if isinstance(store, RunsBlocking):
        return await store.run_blocking(fn, *args)
    return await asyncio.to_thread(fn, *args)
