"""An ObjectStore that records each call's latency (the object-store histogram of
/metrics); listings are timed until the caller has consumed them."""

from __future__ import annotations

import time
from typing import Any

from ...application.ports import ObjectStore
from ...metrics import OBJECT_STORE_SECONDS
from .observed import ObservedObjectStore


class TimedObjectStore(ObservedObjectStore):
    def __init__(self, inner: ObjectStore) -> None:
        super().__init__(inner, _Timing)


class _Timing:
    def __init__(self, operation: str, args: tuple[Any, ...]) -> None:
        self.operation = operation
        self.started = time.perf_counter()

    def finish(self, outcome: str, error: BaseException | None) -> None:
        elapsed = time.perf_counter() - self.started
        OBJECT_STORE_SECONDS.labels(self.operation, outcome).observe(elapsed)
