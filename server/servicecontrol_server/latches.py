"""Waiting on several asyncio latches at once, with a timeout."""

from __future__ import annotations

import asyncio


async def wait_any(*events: asyncio.Event | None, timeout: float | None) -> bool:
    """Waits until any of `events` is set or `timeout` passes; True if one was set."""
    present = [event for event in events if event is not None]
    if any(event.is_set() for event in present):
        return True
    if not present:
        await asyncio.sleep(timeout or 0)
        return False
    waiters = [asyncio.ensure_future(event.wait()) for event in present]
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return bool(done)
