"""The per-account token bucket on mutations, on a clock the test moves."""

from __future__ import annotations

import pytest

from servicecontrol_server.application.rate_limit import MUTATIONS, MutationRateLimiter
from servicecontrol_server.domain.errors import RateLimited


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = MutationRateLimiter(rate=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.check("a", "CreateService")
    with pytest.raises(RateLimited) as refused:
        limiter.check("a", "DeleteService")
    assert refused.value.retry_after_seconds == pytest.approx(0.5)
    # Another account has its own bucket; reads are never limited.
    limiter.check("b", "CreateService")
    for _ in range(10):
        limiter.check("a", "ListServices")
    clock.now += 0.5
    limiter.check("a", "PauseService")
    with pytest.raises(RateLimited):
        limiter.check("a", "PauseService")
    # Refills stop at the burst.
    clock.now += 3600
    for _ in range(3):
        limiter.check("a", "ResumeService")
    with pytest.raises(RateLimited):
        limiter.check("a", "ResumeService")


def test_rate_zero_turns_the_limit_off() -> None:
    limiter = MutationRateLimiter(rate=0, burst=1)
    for _ in range(100):
        limiter.check("a", "CreateService")


def test_every_mutating_rpc_of_the_contract_is_limited() -> None:
    from servicecontrol.v1 import service_control_pb2

    rpcs = set(service_control_pb2.DESCRIPTOR.services_by_name["ServiceControl"].methods_by_name)
    mutating = {
        r
        for r in rpcs
        if r.startswith(
            ("Create", "Update", "Delete", "Pause", "Resume", "Associate", "Disassociate")
        )
    }
    assert mutating == MUTATIONS
