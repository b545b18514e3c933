"""The retry policy: transient failures retried for a time window with capped, jittered
exponential backoff; other failures by attempts; and what a retrying operation says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from servicecontrol_server.application.workers import retry_reason
from servicecontrol_server.domain.model import Operation, OperationStatus, OperationType
from servicecontrol_server.engine.retry_policy import RetryPolicy

POLICY = RetryPolicy(window_seconds=900, base=0.5, cap=60)


def most(_: object = None) -> float:
    """The jitter's largest draw (just under 1), so delays are the window's edge."""
    return 0.999999


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_transient_failures_are_retried_for_the_whole_window_not_a_few_attempts() -> None:
    clock = FakeClock()
    first_failure: float | None = None
    attempts = 0
    delays: list[float] = []
    while True:
        attempts += 1
        clock.advance(0.1)  # the attempt's own run time
        retrying_for = None if first_failure is None else clock.now - first_failure
        decision = POLICY.decide(
            attempts=attempts,
            max_attempts=8,
            transient=True,
            retrying_for=retrying_for,
            rng=lambda: 0.999999,
        )
        if first_failure is None:
            first_failure = clock.now
        if not decision.retry:
            break
        delays.append(decision.delay)
        clock.advance(decision.delay)
    # Far more than the 8 attempts a count would allow, and stopped at the window's end.
    assert attempts > 8
    assert 900 <= clock.now - first_failure < 900 + 1
    assert decision.why == "retry window ended"
    # Exponential, then capped.
    assert delays[:4] == [0.5 * 0.999999, 1.0 * 0.999999, 2.0 * 0.999999, 4.0 * 0.999999]
    assert max(delays) <= 60


def test_the_last_delay_never_passes_the_windows_end() -> None:
    decision = POLICY.decide(
        attempts=30, max_attempts=8, transient=True, retrying_for=899.0, rng=most
    )
    assert decision.retry
    assert decision.delay == 1.0
    assert decision.window_left == 1.0


def test_jitter_spreads_delays_over_the_whole_backoff_window() -> None:
    low = POLICY.decide(attempts=4, max_attempts=8, transient=True, retrying_for=10, rng=lambda: 0)
    high = POLICY.decide(attempts=4, max_attempts=8, transient=True, retrying_for=10, rng=most)
    assert low.delay == 0
    assert 3.9 < high.delay < 4.0


def test_the_first_transient_failure_starts_the_window() -> None:
    decision = POLICY.decide(
        attempts=1, max_attempts=1, transient=True, retrying_for=None, rng=most
    )
    assert decision.retry
    assert decision.window_left == 900


def test_other_failures_are_bounded_by_attempts() -> None:
    assert POLICY.decide(
        attempts=7, max_attempts=8, transient=False, retrying_for=None, rng=most
    ).retry
    exhausted = POLICY.decide(
        attempts=8, max_attempts=8, transient=False, retrying_for=None, rng=most
    )
    assert not exhausted.retry
    assert exhausted.why == "attempts exhausted"
    assert exhausted.window_left is None


def test_spared_attempts_do_not_count_against_the_limit() -> None:
    # 10 attempts, 4 of them transient failures: 6 charged of 8 allowed.
    kept = POLICY.decide(
        attempts=10, max_attempts=8, transient=False, retrying_for=None, spared=4, rng=most
    )
    assert kept.retry
    # The backoff still grows with every attempt made.
    assert kept.delay == min(0.5 * 2**9, 60) * 0.999999
    exhausted = POLICY.decide(
        attempts=12, max_attempts=8, transient=False, retrying_for=None, spared=4, rng=most
    )
    assert not exhausted.retry


def test_a_zero_window_gives_up_on_the_first_transient_failure_after_the_start() -> None:
    policy = RetryPolicy(window_seconds=0)
    assert not policy.decide(attempts=1, max_attempts=8, transient=True, retrying_for=None).retry


def _operation(**values: object) -> Operation:
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    base: dict[str, object] = {
        "operation_id": "op",
        "account_id": "a",
        "service_id": "s",
        "target_arn": "arn",
        "type": OperationType.DELETE_SERVICE,
        "status": OperationStatus.IN_PROGRESS,
        "started_at": now,
        "updated_at": now,
    }
    base.update(values)
    return Operation(**base)  # type: ignore[arg-type]


def test_a_retrying_operation_says_what_it_waits_on_and_until_when() -> None:
    at = datetime(2026, 12, 2, 9, 0, 5, tzinfo=UTC)
    op = _operation(
        attempt=3,
        last_error="OBJECT_STORE_UNAVAILABLE: The image store is unavailable.",
        next_attempt_at=at,
        retry_until=at + timedelta(minutes=15),
    )
    assert retry_reason(op) == (
        "waiting for the object store: attempt 3 failed (OBJECT_STORE_UNAVAILABLE: The "
        "image store is unavailable.); next attempt at 2026-12-02T09:00:05+00:00, "
        "retrying until 2026-12-02T09:15:05+00:00"
    )
    database = _operation(
        attempt=1,
        last_error="BACKEND_UNAVAILABLE: The database is unavailable.",
        next_attempt_at=at,
    )
    assert retry_reason(database).startswith("waiting for the database: attempt 1 failed")


def test_an_operation_that_is_not_retrying_says_nothing_of_retries() -> None:
    assert retry_reason(_operation()) == ""
    ended = _operation(
        status=OperationStatus.FAILED,
        last_error="OBJECT_STORE_UNAVAILABLE: x",
        next_attempt_at=datetime(2026, 12, 2, tzinfo=UTC),
    )
    assert retry_reason(ended) == ""
