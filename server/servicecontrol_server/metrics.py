"""Prometheus metrics: defined once here, recorded by small hooks at the edges (the RPC
interceptor and HTTP middleware, the object-store wrapper, the worker's outcome hook, the
reaper) and sampled from the database when scraped (queue depth, outbox lag)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric

# Only the values: a `_created` timestamp series per label set doubles a scrape's size.
disable_created_metrics()

RPC_REQUESTS = Counter(
    "servicecontrol_rpc_requests_total",
    "Calls answered, by endpoint (grpc or aws), method and status code.",
    ["endpoint", "method", "code"],
)
RPC_SECONDS = Histogram(
    "servicecontrol_rpc_duration_seconds",
    "Time to answer a call, by endpoint, method and status code.",
    ["endpoint", "method", "code"],
)
JOBS = Counter(
    "servicecontrol_jobs_total",
    "Job attempts ended, by kind and outcome (succeeded, retried, failed, lease_lost, "
    "interrupted).",
    ["kind", "outcome"],
)
JOB_SECONDS = Histogram(
    "servicecontrol_job_duration_seconds",
    "Time a job attempt ran, by kind and outcome.",
    ["kind", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 900),
)
QUEUE_READY = Gauge("servicecontrol_job_queue_ready", "Jobs due to run now and not claimed.")
QUEUE_OLDEST_SECONDS = Gauge(
    "servicecontrol_job_queue_oldest_ready_age_seconds",
    "How long the oldest job due to run has waited (0 when none waits).",
)
OUTBOX_PENDING = Gauge(
    "servicecontrol_outbox_pending_events", "Events written but not yet relayed."
)
OUTBOX_LAG_SECONDS = Gauge(
    "servicecontrol_outbox_lag_seconds",
    "Age of the oldest event not yet relayed (0 when none is pending).",
)
REAPED = Counter(
    "servicecontrol_reaper_purged_total", "Rows purged by the TTL reaper, by kind.", ["kind"]
)
OBJECT_STORE_SECONDS = Histogram(
    "servicecontrol_object_store_call_duration_seconds",
    "Object-store calls, by operation and outcome (ok, not_found, error).",
    ["operation", "outcome"],
)


# Where `serve`'s worker processes write their metrics (None: it runs no such process).
_worker_metrics: Path | None = None


def include_worker_processes(directory: Path | None) -> None:
    """Scrapes add the counters and histograms that worker processes wrote into
    `directory` (prometheus_client's multiprocess files) to this process's own."""
    global _worker_metrics
    _worker_metrics = directory


def exposition() -> bytes:
    """This process's metrics in Prometheus' text format, with its worker processes'."""
    if _worker_metrics is None:
        return generate_latest(REGISTRY)
    return generate_latest(_Merged(_worker_metrics))


class _Merged:
    """The registry's metrics, plus each counter and histogram sample the worker processes
    recorded (alive or not: counters never go back when a worker restarts), summed with
    this process's sample of the same name and labels. Their gauges are not taken: every
    gauge is this process's to set."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.multiprocess import MultiProcessCollector

        theirs: dict[str, Metric] = {}
        try:
            for metric in MultiProcessCollector(None, path=str(self.directory)).collect():
                if metric.type in ("counter", "histogram"):
                    theirs[metric.name] = metric
        except (OSError, ValueError):
            theirs = {}  # a file being written or removed: this scrape has ours only
        for metric in REGISTRY.collect():
            other = theirs.pop(metric.name, None)
            if other is not None:
                metric.samples = merge_samples(metric.samples, other.samples)
            yield metric
        yield from theirs.values()


def merge_samples(ours: list[Any], theirs: list[Any]) -> list[Any]:
    """Samples with the same name and labels summed; the others kept, in order."""
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], Any] = {}
    for sample in [*ours, *theirs]:
        key = (sample.name, tuple(sorted(sample.labels.items())))
        if key in merged:
            merged[key] = merged[key]._replace(value=merged[key].value + sample.value)
        else:
            merged[key] = sample
    return list(merged.values())


# The call metrics' labelled children, by their labels: `labels()` checks and locks on
# every use, and every call is counted. The labels are bounded: the served methods and
# actions (an unknown one is counted under one label) by the codes.
_RPC_CHILDREN: dict[tuple[str, str, str], tuple[Any, Any]] = {}


def observe_rpc(endpoint: str, method: str, code: str, seconds: float) -> None:
    key = (endpoint, method, code)
    children = _RPC_CHILDREN.get(key)
    if children is None:
        children = _RPC_CHILDREN[key] = (RPC_REQUESTS.labels(*key), RPC_SECONDS.labels(*key))
    children[0].inc()
    children[1].observe(seconds)


def observe_job(kind: str, outcome: str, seconds: float) -> None:
    JOBS.labels(kind, outcome).inc()
    JOB_SECONDS.labels(kind, outcome).observe(seconds)


def set_backlog(
    ready: int, oldest_ready_seconds: float, outbox_pending: int, outbox_lag_seconds: float
) -> None:
    QUEUE_READY.set(ready)
    QUEUE_OLDEST_SECONDS.set(oldest_ready_seconds)
    OUTBOX_PENDING.set(outbox_pending)
    OUTBOX_LAG_SECONDS.set(outbox_lag_seconds)


def observe_reaped(counts: dict[str, int]) -> None:
    for kind, count in counts.items():
        if count:
            REAPED.labels(kind).inc(count)
