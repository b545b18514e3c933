"""Every call is counted (metrics.observe_rpc): a label set's children are looked up once
and kept, and the counts read from the registry are the calls made."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from servicecontrol_server import metrics


def _count(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "servicecontrol_rpc_requests_total", {"endpoint": "grpc", "method": method, "code": code}
    )
    return value or 0.0


def _observed(method: str, code: str) -> float:
    value = REGISTRY.get_sample_value(
        "servicecontrol_rpc_duration_seconds_count",
        {"endpoint": "grpc", "method": method, "code": code},
    )
    return value or 0.0


def test_each_call_is_counted_and_a_label_set_is_looked_up_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "_RPC_CHILDREN", {})
    looked_up: list[tuple[Any, ...]] = []
    real = metrics.RPC_REQUESTS.labels

    def labels(*values: Any) -> Any:
        looked_up.append(values)
        return real(*values)

    monkeypatch.setattr(metrics.RPC_REQUESTS, "labels", labels)
    before = _count("UnitTestMethod", "OK"), _count("UnitTestMethod", "NOT_FOUND")
    seconds_before = _observed("UnitTestMethod", "OK")
    for _ in range(3):
        metrics.observe_rpc("grpc", "UnitTestMethod", "OK", 0.002)
    metrics.observe_rpc("grpc", "UnitTestMethod", "NOT_FOUND", 0.001)
    assert _count("UnitTestMethod", "OK") == before[0] + 3
    assert _count("UnitTestMethod", "NOT_FOUND") == before[1] + 1
    assert _observed("UnitTestMethod", "OK") == seconds_before + 3
    assert looked_up == [
        ("grpc", "UnitTestMethod", "OK"),
        ("grpc", "UnitTestMethod", "NOT_FOUND"),
    ]
