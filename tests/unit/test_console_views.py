"""How the console words statuses, countdowns and sizes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from servicecontrol_server.api.console import views
from servicecontrol_server.domain.model import ServiceStatus

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("left", "text"),
    [
        (timedelta(days=7), "in 7 days"),
        (timedelta(days=6, hours=23, minutes=59), "in 6 days 23 hours"),
        (timedelta(days=1), "in 1 day"),
        (timedelta(hours=2, minutes=5), "in 2 hours 5 minutes"),
        (timedelta(minutes=1), "in 1 minute"),
        (timedelta(seconds=20), "in 1 minute"),
        (timedelta(0), "expired"),
        (timedelta(days=-1), "expired"),
    ],
)
def test_countdown(left: timedelta, text: str) -> None:
    assert views.countdown(NOW + left, NOW) == text
    assert views.countdown((NOW + left).isoformat(), NOW) == text


def test_every_service_status_reads_as_words_with_a_tone() -> None:
    for status in ServiceStatus:
        text = views.status_text(status)
        assert text and "_" not in text
    assert views.status_text(ServiceStatus.OPERATION_IN_PROGRESS) == "Operation in progress"
    assert views.status_text(ServiceStatus.DELETE_FAILED) == "Delete failed"
    assert {views.tone(ServiceStatus.RUNNING), views.tone(ServiceStatus.DELETE_FAILED)} == {
        "ok",
        "bad",
    }


def test_sizes_and_times() -> None:
    assert views.size(0) == "0 bytes"
    assert views.size(1023) == "1023 bytes"
    assert views.size(21400) == "20.9 KiB"
    assert views.size(5 * 1024**3) == "5.0 GiB"
    assert views.when(NOW) == "2026-01-01 12:00:00 UTC"
    assert views.when(None) == ""
    assert views.humanize_key("ImageIdentifier") == "Image identifier"
    assert views.humanize_key("instance_role_arn") == "Instance role arn"
