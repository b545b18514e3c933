"""A token bucket per account for mutating calls, shared by both endpoints.

The buckets live in this process: with N replicas behind a balancer an account may
send up to N times the rate (docs/security.md, "Limits")."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..domain.errors import RateLimited

# The calls that change state, by name; the gRPC methods and the App Runner actions
# share these names.
MUTATIONS = frozenset(
    {
        "CreateService",
        "UpdateService",
        "DeleteService",
        "PauseService",
        "ResumeService",
        "CreateConnection",
        "DeleteConnection",
        "AssociateCustomDomain",
        "DisassociateCustomDomain",
        # Auto scaling and observability configurations.
        "CreateAutoScalingConfiguration",
        "DeleteAutoScalingConfiguration",
        "UpdateDefaultAutoScalingConfiguration",
        "CreateObservabilityConfiguration",
        "DeleteObservabilityConfiguration",
        # VPC connectors and ingress connections
        "CreateVpcConnector",
        "DeleteVpcConnector",
        "CreateVpcIngressConnection",
        "UpdateVpcIngressConnection",
        "DeleteVpcIngressConnection",
    }
)
# Buckets refilled to the brim are forgotten once this many accounts are tracked.
_MAX_TRACKED = 10_000


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class MutationRateLimiter:
    """`rate` tokens a second, up to `burst`; each mutation takes one. rate 0: no limit."""

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def check(self, account: str, call: str) -> None:
        """Takes a token for a mutation; RateLimited when the account has none left."""
        if self.rate <= 0 or call not in MUTATIONS:
            return
        now = self.clock()
        bucket = self._buckets.get(account)
        if bucket is None:
            if len(self._buckets) >= _MAX_TRACKED:
                self._forget_full(now)
            bucket = self._buckets[account] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens < 1:
            raise RateLimited((1 - bucket.tokens) / self.rate)
        bucket.tokens -= 1

    def _forget_full(self, now: float) -> None:
        for account, bucket in list(self._buckets.items()):
            if bucket.tokens + (now - bucket.stamp) * self.rate >= self.burst:
                del self._buckets[account]
