"""When a failed job attempt is tried again, and when the job gives up.

Transient failures (the object store, the compute platform or the database unreachable)
are retried for a time window counted from the job's first transient failure, however many
attempts that takes: capped exponential backoff with full jitter, the last attempt no
later than the window's end. Other failures (an unexpected error, an attempt that died
with its worker) have a number of attempts, as before. A permanent error is never
retried."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .backoff import backoff_delay


@dataclass(frozen=True)
class Decision:
    """Retry after `delay` seconds, or give up (retry is False). `window_left` is how long
    the job may still retry transient failures, counted from now (None: not retrying one)."""

    retry: bool
    delay: float = 0.0
    window_left: float | None = None
    why: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    window_seconds: float = 15 * 60
    base: float = 0.5
    cap: float = 60.0

    def decide(
        self,
        *,
        attempts: int,
        max_attempts: int,
        transient: bool,
        retrying_for: float | None,
        spared: int = 0,
        rng: Callable[[], float] = random.random,
    ) -> Decision:
        """`attempts`: attempts made, the failed one included (the backoff grows with
        them); `spared`: those of them that failed transiently, which do not count against
        `max_attempts`; `retrying_for`: seconds since the job's first transient failure
        (None when this is the first)."""
        if transient:
            elapsed = max(retrying_for or 0.0, 0.0)
            left = self.window_seconds - elapsed
            if left <= 0:
                return Decision(False, window_left=0.0, why="retry window ended")
            delay = min(backoff_delay(attempts, self.base, self.cap, rng), left)
            return Decision(True, delay, window_left=left)
        if attempts - spared >= max_attempts:
            return Decision(False, why="attempts exhausted")
        return Decision(True, backoff_delay(attempts, self.base, self.cap, rng))
