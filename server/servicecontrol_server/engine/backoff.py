"""Retry delays: capped exponential backoff with full jitter."""

from __future__ import annotations

import random
from collections.abc import Callable

# Past this many doublings every realistic cap is reached; stopping here keeps the
# arithmetic finite for absurd attempt counts.
_MAX_DOUBLINGS = 62


def backoff_delay(
    attempt: int,
    base: float,
    cap: float,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to wait before retrying after failed attempt number `attempt` (1-based):

        delay = rng() * min(cap, base * 2 ** (attempt - 1)),  rng() uniform in [0, 1)

    "Full jitter": the whole window is randomised, so workers whose jobs failed together
    (say, while a dependency was down) spread their retries out instead of returning in a
    synchronised wave. The window doubles per attempt and never exceeds `cap`."""
    doublings = min(max(attempt, 1) - 1, _MAX_DOUBLINGS)
    window = min(cap, base * (2.0**doublings))
    return max(window, 0.0) * rng()
