"""Typed settings, read once from SERVICECONTROL_* environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# An AWS region's name: us-east-1, eu-central-2, ap-southeast-4, us-gov-west-1, ...
REGION_NAME = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")


# One label of a DNS name (letters, digits, inner hyphens; at most 63 characters).
DOMAIN_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def check_region_name(name: str) -> str:
    if not REGION_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a region name (such as us-east-1 or eu-west-1)")
    return name


class Settings(BaseSettings):
    """Every setting of the server and its workers. Flags of `servicecontrol` override these."""

    model_config = SettingsConfigDict(env_prefix="SERVICECONTROL_", frozen=True)

    # Where the embedded defaults keep their data (Postgres cluster, local object store).
    data_dir: Path = Path(".servicecontrol")
    # Any PostgreSQL URL (postgresql://user:pass@host:5432/db). Empty: an embedded server
    # in data_dir/postgres.
    database_url: str = ""
    migrate_on_start: bool = True

    grpc_listen: str = "127.0.0.1:50051"
    grpc_grace_seconds: float = 10.0
    # App Runner's own HTTP protocol (AWS JSON 1.0) for the AWS CLI and SDKs; empty: off.
    aws_listen: str = "127.0.0.1:50080"
    # Prometheus /metrics, /healthz and /readyz over HTTP; empty: off.
    metrics_listen: str = "127.0.0.1:9464"
    # The web console (sign in with an API key); empty: off. Loopback unless told
    # otherwise. With both TLS files set it serves HTTPS and its cookies are Secure.
    console_listen: str = "127.0.0.1:50090"
    console_tls_cert_file: Path | None = None
    console_tls_key_file: Path | None = None
    console_session_seconds: int = Field(default=8 * 3600, ge=60)
    # Jobs `serve` runs at once in each of its job workers; 0: none (jobs are left to
    # `servicecontrol worker` processes).
    workers_in_server: int = Field(default=2, ge=0)
    # process: `serve` runs its job workers in `worker_processes` child processes that it
    # supervises (requests and jobs do not share an event loop); in-process: on its own
    # event loop, as one worker.
    worker_mode: Literal["process", "in-process"] = "process"
    worker_processes: int = Field(default=1, ge=1)

    # Object storage: an S3 endpoint (host:port) through the minio SDK, or, when empty, a
    # local directory store in data_dir/objects.
    s3_endpoint: str = ""
    s3_access_key: str = ""
    s3_secret_key: str = ""
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    # The source registry: images pushed with `servicecontrol images push`.
    source_bucket: str = "servicecontrol-source"
    # The services' private image copies.
    image_bucket: str = "servicecontrol-images"

    # Every object-store call is bounded by this timeout; the request path and the job
    # workers each call it from a bounded pool of their own threads (docs/reliability.md).
    object_store_call_timeout_seconds: float = Field(default=10.0, gt=0)
    object_store_request_threads: int = Field(default=4, ge=1)
    object_store_job_threads: int = Field(default=8, ge=1)
    # A delete's plan (validate_only) reads the image copy's manifest; a copy without one
    # is counted from a listing of at most this many objects.
    deletion_plan_listing_cap: int = Field(default=1000, ge=1)

    # The regions served: each request's region (its SigV4 credential scope on the App
    # Runner endpoint, the `x-servicecontrol-region` metadata on gRPC, the console's
    # picker) selects one, and every regional resource belongs to exactly one. `regions`
    # is a comma-separated list whose first entry is the default; without it, `region`
    # alone is served.
    region: str = "us-east-1"
    regions: str = ""
    default_account: str = "000000000000"
    # The parent domain of service URLs (and VPC ingress connections' domain names);
    # `{region}` stands for the region the resource lives in, as App Runner's
    # `<id>.<region>.awsapprunner.com`.
    service_domain: str = "{region}.servicecontrol.local"
    service_quota: int = Field(default=30, ge=0)
    connection_quota: int = Field(default=10, ge=0)
    # App Runner's default quota of VPC connectors per account and region.
    vpc_connector_quota: int = Field(default=10, ge=0)
    custom_domains_per_service: int = Field(default=5, ge=0)
    # Certificate DNS validation looks records up in this zone file (`name CNAME value`
    # lines) kept by the operator, not in public DNS; unset, no record is ever found.
    dns_zone_file: Path | None = None

    # Retention windows, in seconds.
    certificate_retention_seconds: int = 7 * 24 * 3600
    service_tombstone_retention_seconds: int = 30 * 24 * 3600
    connection_tombstone_retention_seconds: int = 30 * 24 * 3600
    operation_retention_seconds: int = 30 * 24 * 3600
    event_retention_seconds: int = 7 * 24 * 3600
    request_id_retention_seconds: int = 24 * 3600
    # Staged parts of an image push nobody has added to for this long are reaped.
    upload_retention_seconds: int = Field(default=24 * 3600, gt=0)

    # The job engine.
    job_lease_seconds: float = 30.0
    job_heartbeat_seconds: float = 10.0
    job_poll_seconds: float = 1.0
    job_max_attempts: int = Field(default=8, ge=1)
    job_backoff_base_seconds: float = 0.5
    job_backoff_max_seconds: float = 60.0
    # Transient failures (object store or database unreachable) are retried for this
    # long after the first one, with capped exponential backoff and full jitter, whatever
    # the number of attempts; then the operation fails (docs/reliability.md).
    job_retry_window_seconds: float = Field(default=15 * 60, ge=0)
    reaper_interval_seconds: float = 60.0
    # WatchEvents: open streams allowed per account and per server process (beyond them a
    # new stream is RESOURCE_EXHAUSTED), and how many events one stream may have waiting
    # before it is caught up from the database instead (a slow consumer holds back no one).
    watch_streams_per_account: int = Field(default=100, ge=0)
    watch_streams_per_server: int = Field(default=2000, ge=0)
    watch_stream_buffer: int = Field(default=1000, ge=1)
    reaper_batch_size: int = 500

    # Transport security on both endpoints (docs/security.md, "Transport"): a PEM
    # certificate (chain) and key turn TLS on; a client CA also requires every client to
    # present a certificate it signed (mutual TLS). Without TLS, only loopback addresses
    # may be bound unless `insecure` is set.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    insecure: bool = False

    # Limits (docs/security.md, "Limits"). The largest gRPC message received or sent, and
    # the largest App Runner request body, in bytes.
    max_request_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_response_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    # The server's own deadline for one unary call (WaitOperation: this after its wait,
    # at most 10 minutes).
    rpc_deadline_seconds: float = Field(default=60.0, gt=1.0)
    # Token bucket per account for mutating calls, in this process: the sustained rate
    # (tokens a second; 0 turns the limit off) and the burst.
    mutation_rate_per_second: float = Field(default=20.0, ge=0)
    mutation_burst: int = Field(default=60, ge=1)
    # Backpressure (docs/reliability.md): while more than this many jobs are ready to run
    # and waiting for a worker, new mutations are refused with RESOURCE_EXHAUSTED and a
    # retry delay (ThrottlingException on the App Runner endpoint); 0 turns it off. The
    # backlog is read from the database at most once per backlog_check_seconds.
    max_ready_jobs: int = Field(default=2000, ge=0)
    backlog_check_seconds: float = Field(default=1.0, gt=0)
    backlog_retry_seconds: float = Field(default=5.0, gt=0)
    # `serve` keeps looked-up API keys for calls to come, using them only while its
    # listener has proven within this many seconds that every key change committed before
    # then has reached it: a key revoked or expired anywhere is refused everywhere within
    # this bound (docs/security.md, "The API key cache"). 0: every call looks its key up.
    api_key_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    # API key secrets are sealed (AES-GCM) under the key-encryption key: 32 bytes, base64,
    # given here or in key_encryption_key_file. With neither, data_dir/kek is used, created
    # (mode 0600) on first start. Every replica needs the same one.
    key_encryption_key: str = ""
    key_encryption_key_file: Path | None = None

    # Signs page tokens so that they stay opaque; set the same value on every replica.
    page_token_key: str = "servicecontrol-page-token-key"

    # OpenTelemetry traces go to this OTLP/gRPC endpoint (http://collector:4317); empty:
    # OpenTelemetry's own OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, and with neither, off.
    otlp_endpoint: str = ""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # auto: human-readable lines on a terminal, JSON lines otherwise.
    log_format: Literal["auto", "json", "text"] = "auto"

    @model_validator(mode="before")
    @classmethod
    def _default_region(cls, data: Any) -> Any:
        """With a list of regions, the default region is its first."""
        listed = isinstance(data, dict) and str(data.get("regions") or "").strip()
        if listed and not data.get("region"):
            data = {**data, "region": str(data["regions"]).split(",")[0].strip()}
        return data

    @field_validator("region")
    @classmethod
    def _region(cls, value: str) -> str:
        return check_region_name(value.strip())

    @field_validator("regions")
    @classmethod
    def _regions(cls, value: str, info: ValidationInfo) -> str:
        if not value.strip():
            return ""
        names = [check_region_name(part.strip()) for part in value.split(",")]
        if len(set(names)) != len(names):
            raise ValueError("names a region twice")
        region = info.data.get("region")
        if region and region != names[0]:
            raise ValueError(
                f"its first region is the default, but SERVICECONTROL_REGION names {region!r}: "
                "leave SERVICECONTROL_REGION unset or make it the first"
            )
        return ",".join(names)

    @property
    def served_regions(self) -> tuple[str, ...]:
        """The regions served, the default first."""
        return tuple(self.regions.split(",")) if self.regions else (self.region,)

    @field_validator("service_domain")
    @classmethod
    def _service_domain(cls, value: str) -> str:
        value = value.strip().strip(".").lower()
        labels = value.replace("{region}", "us-east-1").split(".")
        if "{" in value.replace("{region}", "") or "}" in value.replace("{region}", ""):
            raise ValueError("the only placeholder it may hold is {region}")
        if len(labels) < 2 or not all(DOMAIN_LABEL.fullmatch(label) for label in labels):
            raise ValueError(f"{value!r} is not a domain name (such as {{region}}.example.com)")
        return value

    def service_domain_for(self, region: str) -> str:
        """The parent domain of the URLs of resources in `region`."""
        return self.service_domain.replace("{region}", region)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("grpc_listen", "aws_listen", "metrics_listen")
    @classmethod
    def _listen(cls, value: str, info: ValidationInfo) -> str:
        if not value and info.field_name != "grpc_listen":
            return value  # empty: that endpoint is off
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ValueError("must be <host>:<port> (port 0 picks a free one)")
        return value
