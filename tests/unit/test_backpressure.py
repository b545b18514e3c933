"""The backlog gate: mutations refused past the backlog, reads never, the count read at
most once per interval, and admitted when it cannot be read."""

from __future__ import annotations

import pytest

from servicecontrol_server.application.backpressure import BacklogGate
from servicecontrol_server.domain.errors import BacklogFull, RateLimited


class FakeBacklog:
    def __init__(self, ready: int = 0) -> None:
        self.ready = ready
        self.reads: list[int] = []
        self.down = False

    async def ready_jobs(self, at_most: int) -> int:
        self.reads.append(at_most)
        if self.down:
            raise ConnectionError("database unreachable")
        return min(self.ready, at_most)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def gate(backlog: FakeBacklog, clock: Clock, max_ready: int = 10) -> BacklogGate:
    return BacklogGate(
        backlog, max_ready=max_ready, check_seconds=1.0, retry_seconds=5.0, clock=clock
    )


async def test_mutations_are_refused_past_the_backlog_with_a_retry_delay() -> None:
    backlog, clock = FakeBacklog(ready=11), Clock()
    g = gate(backlog, clock)
    with pytest.raises(BacklogFull) as refused:
        await g.check("CreateService")
    assert refused.value.reason == "BACKLOG_FULL"
    assert refused.value.retry_after_seconds == 5.0
    assert refused.value.metadata == {"retryAfterSeconds": "5.000"}
    # Answered as a rate limit: RetryInfo on gRPC, ThrottlingException on App Runner.
    assert isinstance(refused.value, RateLimited)
    # Counted no further than one past the limit.
    assert backlog.reads == [11]
    with pytest.raises(BacklogFull):
        await g.check("StartDeployment")


async def test_at_the_limit_and_for_reads_nothing_is_refused() -> None:
    backlog, clock = FakeBacklog(ready=10), Clock()
    g = gate(backlog, clock)
    await g.check("DeleteService")
    backlog.ready = 1000
    clock.now += 2
    for read in ("DescribeService", "ListServices", "WaitOperation", "WatchEvents"):
        await g.check(read)
    with pytest.raises(BacklogFull):
        await g.check("DeleteService")


async def test_the_count_is_read_at_most_once_per_interval() -> None:
    backlog, clock = FakeBacklog(ready=0), Clock()
    g = gate(backlog, clock)
    for _ in range(5):
        await g.check("PauseService")
    assert len(backlog.reads) == 1
    backlog.ready = 50
    clock.now += 0.5
    await g.check("PauseService")  # still the count read half a second ago
    clock.now += 0.6
    with pytest.raises(BacklogFull):
        await g.check("PauseService")
    assert len(backlog.reads) == 2


async def test_mutations_are_admitted_when_the_backlog_cannot_be_read() -> None:
    backlog, clock = FakeBacklog(ready=50), Clock()
    backlog.down = True
    await gate(backlog, clock).check("CreateService")


async def test_a_limit_of_zero_turns_the_gate_off() -> None:
    backlog, clock = FakeBacklog(ready=10_000), Clock()
    await gate(backlog, clock, max_ready=0).check("CreateService")
    assert backlog.reads == []
