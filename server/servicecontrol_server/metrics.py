"""Prometheus metrics: defined once here, recorded by small hooks at the edges (the RPC
interceptor and HTTP middleware, the object-store wrapper, the worker's outcome hook, the
reaper) and sampled from the database when scraped (queue depth, outbox lag)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

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


def observe_rpc(endpoint: str, method: str, code: str, seconds: float) -> None:
    RPC_REQUESTS.labels(endpoint, method, code).inc()
    RPC_SECONDS.labels(endpoint, method, code).observe(seconds)


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
