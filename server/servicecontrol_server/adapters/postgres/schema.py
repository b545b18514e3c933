"""The database schema, as SQLAlchemy Core tables. Migrations in migrations/ create it;
a test checks that they agree."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Computed,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Sequence,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP, UUID

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


def _region_of(arn_column: str) -> Column:
    """The region a resource belongs to: the fourth field of its ARN, kept by Postgres
    (a stored generated column), so that it can never disagree with the ARN."""
    return Column(
        "region",
        Text,
        Computed(f"split_part({arn_column}, ':', 4)", persisted=True),
        nullable=False,
    )


def _ts(name: str, *, nullable: bool = False, default_now: bool = False) -> Column:
    return Column(
        name,
        TIMESTAMP(timezone=True),
        nullable=nullable,
        server_default=text("now()") if default_now else None,
    )


accounts = Table(
    "accounts",
    metadata,
    Column("account_id", Text, primary_key=True),
    _ts("created_at", default_now=True),
)

services = Table(
    "services",
    metadata,
    Column("service_id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.account_id"), nullable=False),
    Column("region", Text, nullable=False),
    Column("service_name", Text, nullable=False),
    Column("service_arn", Text, nullable=False, unique=True),
    Column("service_url", Text, nullable=False, unique=True),
    Column("status", Text, nullable=False),
    Column("status_message", Text, nullable=False, server_default=""),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("current_operation_id", UUID(as_uuid=False), nullable=True),
    Column("status_before_operation", Text, nullable=True),
    # The connection a code-repository service uses; cleared when the service is deleted.
    Column("connection_arn", Text, nullable=True),
    _ts("created_at", default_now=True),
    _ts("updated_at", default_now=True),
    _ts("deleted_at", nullable=True),
    _ts("purge_at", nullable=True),
    Index(
        "ix_services_live_name",
        "account_id",
        "region",
        "service_name",
        unique=True,
        postgresql_where=text("status <> 'DELETED'"),
    ),
    Index(
        "ix_services_live_listing",
        "account_id",
        "region",
        text("created_at DESC"),
        text("service_id DESC"),
        postgresql_where=text("status <> 'DELETED'"),
    ),
    Index("ix_services_purge_at", "purge_at", postgresql_where=text("purge_at IS NOT NULL")),
    Index(
        "ix_services_connection_arn",
        "connection_arn",
        postgresql_where=text("connection_arn IS NOT NULL"),
    ),
)

# The service configuration: deleted with the service, unlike the `services` tombstone.
service_configurations = Table(
    "service_configurations",
    metadata,
    Column(
        "service_id",
        Text,
        ForeignKey("services.service_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("source_configuration", JSONB, nullable=False),
    Column("instance_configuration", JSONB, nullable=False),
    Column("health_check_configuration", JSONB, nullable=False),
    Column("image_identifier", Text, nullable=True),
    Column("image_bucket", Text, nullable=True),
    Column("image_prefix", Text, nullable=True),
    _ts("updated_at", default_now=True),
    # The auto scaling and observability configuration revisions the service uses (full
    # ARNs); NULL auto scaling means the account's built-in DefaultConfiguration.
    Column("auto_scaling_configuration_arn", Text, nullable=True),
    Column("observability_configuration_arn", Text, nullable=True),
    Index(
        "ix_service_configurations_auto_scaling",
        "auto_scaling_configuration_arn",
        postgresql_where=text("auto_scaling_configuration_arn IS NOT NULL"),
    ),
    Index(
        "ix_service_configurations_observability",
        "observability_configuration_arn",
        postgresql_where=text("observability_configuration_arn IS NOT NULL"),
    ),
    # The network configuration (egress, ingress, IP address type); NULL: the defaults.
    Column("network_configuration", JSONB, nullable=True),
    # Which services send egress through a VPC connector (DeleteVpcConnector's check).
    Index(
        "ix_service_configurations_vpc_connector",
        text("(network_configuration #>> '{egress_configuration,vpc_connector_arn}')"),
        postgresql_where=text("network_configuration IS NOT NULL"),
    ),
)

# What the stand-in compute driver records: one row per service that has compute.
compute_instances = Table(
    "compute_instances",
    metadata,
    Column(
        "service_id",
        Text,
        ForeignKey("services.service_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("state", Text, nullable=False),
    Column("image_prefix", Text, nullable=True),
    Column("starts", Integer, nullable=False, server_default="0"),
    Column("stops", Integer, nullable=False, server_default="0"),
    _ts("updated_at", default_now=True),
)

operations = Table(
    "operations",
    metadata,
    Column("operation_id", UUID(as_uuid=False), primary_key=True),
    Column("account_id", Text, nullable=False),
    Column("service_id", Text, nullable=False),
    Column("target_arn", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("current_step", Text, nullable=False, server_default=""),
    Column("attempt", Integer, nullable=False, server_default="0"),
    Column("error", JSONB, nullable=True),
    Column("deletion_report", JSONB, nullable=True),
    Column("last_error", Text, nullable=False, server_default=""),
    _ts("next_attempt_at", nullable=True),
    # While retrying transient failures: when the job stops retrying.
    _ts("retry_until", nullable=True),
    _ts("started_at", default_now=True),
    _ts("updated_at", default_now=True),
    _ts("ended_at", nullable=True),
    # At most one PENDING or IN_PROGRESS operation per service, enforced by the database.
    Index(
        "ix_operations_one_active",
        "service_id",
        unique=True,
        postgresql_where=text("status IN ('PENDING', 'IN_PROGRESS')"),
    ),
    Index(
        "ix_operations_by_service",
        "service_id",
        text("started_at DESC"),
        text("operation_id DESC"),
    ),
    Index("ix_operations_ended_at", "ended_at", postgresql_where=text("ended_at IS NOT NULL")),
)

# Idempotency keys of mutating calls (AIP-155): the first call's fingerprint and result.
request_ids = Table(
    "request_ids",
    metadata,
    Column("account_id", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("result_kind", Text, nullable=False),
    Column("result_id", Text, nullable=False),
    _ts("created_at", default_now=True),
    PrimaryKeyConstraint("account_id", "request_id"),
    Index("ix_request_ids_created_at", "created_at"),
)

# The job queue. A job lives here while queued, running or failed; a finished job's row
# is deleted in the transaction that finishes it (its operation keeps the history).
jobs = Table(
    "jobs",
    metadata,
    Column("job_id", BigInteger, Identity(always=True), primary_key=True),
    Column("kind", Text, nullable=False),
    Column("operation_id", UUID(as_uuid=False), nullable=True, unique=True),
    Column("service_id", Text, nullable=True),
    Column("account_id", Text, nullable=True),
    Column("payload", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    # Step progress saved by the handler (fenced by the lease), read back on retry.
    Column("progress", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("state", Text, nullable=False, server_default="queued"),
    _ts("run_at", default_now=True),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("max_attempts", Integer, nullable=False),
    Column("lease_token", UUID(as_uuid=False), nullable=True),
    Column("lease_owner", Text, nullable=True),
    _ts("lease_expires_at", nullable=True),
    Column("last_error", Text, nullable=False, server_default=""),
    # The first transient failure of the job: its retry window starts here.
    _ts("retry_since", nullable=True),
    _ts("created_at", default_now=True),
    _ts("updated_at", default_now=True),
    Index("ix_jobs_ready", "run_at", "job_id", postgresql_where=text("state = 'queued'")),
    Index("ix_jobs_leases", "lease_expires_at", postgresql_where=text("state = 'running'")),
    # Failed jobs are few but live beside any backlog of queued ones: a resumed delete
    # finds its service's, and the reaper walks them, without reading the queue.
    Index("ix_jobs_failed", "job_id", postgresql_where=text("state = 'failed'")),
    Index("ix_jobs_failed_service", "service_id", postgresql_where=text("state = 'failed'")),
)

# Positions of relayed outbox rows (created by the migration; used only in raw SQL).
outbox_position_seq = Sequence("outbox_position_seq", metadata=metadata, data_type=BigInteger)

# The transactional outbox. Rows are written with the change they describe; the relay
# gives each a `position` in commit order, which WatchEvents streams from.
outbox = Table(
    "outbox",
    metadata,
    Column("event_id", UUID(as_uuid=False), primary_key=True),
    Column("seq", BigInteger, Identity(always=True), nullable=False, unique=True),
    Column("account_id", Text, nullable=False),
    Column("resource_arn", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    _ts("occurred_at", default_now=True),
    Column("position", BigInteger, nullable=True, unique=True),
    _ts("delivered_at", nullable=True),
    Index("ix_outbox_pending", "seq", postgresql_where=text("position IS NULL")),
    Index(
        "ix_outbox_stream",
        "account_id",
        "position",
        postgresql_where=text("position IS NOT NULL"),
    ),
    # Pruning finds the rows delivered longest ago, and none at all when none is old.
    Index("ix_outbox_delivered", "delivered_at", postgresql_where=text("position IS NOT NULL")),
)

connections = Table(
    "connections",
    metadata,
    Column("connection_id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.account_id"), nullable=False),
    Column("connection_name", Text, nullable=False),
    Column("connection_arn", Text, nullable=False, unique=True),
    Column("provider_type", Text, nullable=False),
    Column("status", Text, nullable=False),
    _ts("created_at", default_now=True),
    _ts("updated_at", default_now=True),
    _ts("deleted_at", nullable=True),
    _ts("purge_at", nullable=True),
    _region_of("connection_arn"),
    Index(
        "ix_connections_live_name",
        "account_id",
        "region",
        "connection_name",
        unique=True,
        postgresql_where=text("status <> 'DELETED'"),
    ),
    Index("ix_connections_purge_at", "purge_at", postgresql_where=text("purge_at IS NOT NULL")),
    # ListConnections: newest first, tombstones included.
    Index(
        "ix_connections_listing",
        "account_id",
        "region",
        text("created_at DESC"),
        text("connection_id DESC"),
    ),
)

# Certificate records outlive their associations for the retention window.
certificates = Table(
    "certificates",
    metadata,
    Column("certificate_id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.account_id"), nullable=False),
    Column("certificate_arn", Text, nullable=False, unique=True),
    Column("domain_name", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("validation_records", JSONB, nullable=False, server_default=text("'[]'::jsonb")),
    Column("service_id", Text, nullable=True),
    Column("service_arn", Text, nullable=True),
    _ts("created_at", default_now=True),
    _ts("unlinked_at", nullable=True),
    _ts("expires_at", nullable=True),
    _region_of("certificate_arn"),
    UniqueConstraint("account_id", "region", "domain_name"),
    Index(
        "ix_certificates_expires_at", "expires_at", postgresql_where=text("expires_at IS NOT NULL")
    ),
)

custom_domains = Table(
    "custom_domains",
    metadata,
    Column(
        "service_id",
        Text,
        ForeignKey("services.service_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("domain_name", Text, nullable=False),
    Column("enable_www_subdomain", Boolean, nullable=False),
    Column("status", Text, nullable=False),
    Column("certificate_id", Text, ForeignKey("certificates.certificate_id"), nullable=False),
    _ts("created_at", default_now=True),
    _ts("updated_at", default_now=True),
    PrimaryKeyConstraint("service_id", "domain_name"),
    # Whether a certificate record is still referenced (its purge checks).
    Index("ix_custom_domains_certificate", "certificate_id"),
    # The DNS validation pass walks the associations waiting for it, oldest first.
    Index(
        "ix_custom_domains_awaiting",
        "created_at",
        "service_id",
        "domain_name",
        postgresql_where=text("status = 'PENDING_CERTIFICATE_DNS_VALIDATION'"),
    ),
)

# API keys: the account and role a caller acts as. The secret itself is stored only
# encrypted (AES-GCM under the key-encryption key; SigV4 verification needs it) and as a
# SHA-256 hash (enough for bearer tokens).
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.account_id"), nullable=False),
    Column("role", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("secret_sealed", Text, nullable=False),
    _ts("created_at", default_now=True),
    _ts("expires_at", nullable=True),
    _ts("revoked_at", nullable=True),
    Index("ix_api_keys_account_id", "account_id"),
)

# Append-only: one row per mutation (in its transaction) and per refused call.
audit_log = Table(
    "audit_log",
    metadata,
    Column("audit_id", BigInteger, Identity(always=True), primary_key=True),
    _ts("occurred_at", default_now=True),
    Column("key_id", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("resource_arn", Text, nullable=False, server_default=""),
    Column("operation_id", Text, nullable=False, server_default=""),
    Column("request_id", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("source", Text, nullable=False, server_default=""),
    Index("ix_audit_log_account_id_occurred_at", "account_id", "occurred_at"),
)

# Tags of any App Runner resource, by its ARN; deleted with the resource.
resource_tags = Table(
    "resource_tags",
    metadata,
    Column("resource_arn", Text, nullable=False),
    Column("tag_key", Text, nullable=False),
    Column("account_id", Text, nullable=False),
    Column("tag_value", Text, nullable=False),
    PrimaryKeyConstraint("resource_arn", "tag_key"),
)

# Auto scaling and observability configurations: one row per revision. A deleted revision
# stays as INACTIVE (App Runner describes it so), which also keeps the built-in
# DefaultConfiguration from coming back once deleted.
config_resources = Table(
    "config_resources",
    metadata,
    Column("config_id", Text, primary_key=True),
    Column("account_id", Text, nullable=False),
    # autoscalingconfiguration | observabilityconfiguration (the ARN's resource type).
    Column("kind", Text, nullable=False),
    Column("name", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("arn", Text, nullable=False, unique=True),
    Column("status", Text, nullable=False),
    Column("settings", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("is_default", Boolean, nullable=False, server_default=text("false")),
    _ts("created_at", default_now=True),
    _ts("deleted_at", nullable=True),
    _region_of("arn"),
    # Revision numbers are unique among a name's active revisions; listings walk them.
    Index(
        "ix_config_resources_active_revision",
        "account_id",
        "region",
        "kind",
        "name",
        "revision",
        unique=True,
        postgresql_where=text("status = 'ACTIVE'"),
    ),
    # At most one default per account, region and kind.
    Index(
        "ix_config_resources_default",
        "account_id",
        "region",
        "kind",
        unique=True,
        postgresql_where=text("is_default"),
    ),
)


# VPC connectors: one ACTIVE revision per name; a deleted one is INACTIVE until purged.
# Recorded, not provisioned.
vpc_connectors = Table(
    "vpc_connectors",
    metadata,
    Column("connector_id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.account_id"), nullable=False),
    Column("connector_name", Text, nullable=False),
    Column("revision", Integer, nullable=False),
    Column("connector_arn", Text, nullable=False, unique=True),
    Column("subnets", JSONB, nullable=False),
    Column("security_groups", JSONB, nullable=False),
    Column("status", Text, nullable=False),
    _ts("created_at", default_now=True),
    _ts("updated_at", default_now=True),
    _ts("deleted_at", nullable=True),
    _ts("purge_at", nullable=True),
    _region_of("connector_arn"),
    UniqueConstraint("account_id", "region", "connector_name", "revision"),
    Index(
        "ix_vpc_connectors_active_name",
        "account_id",
        "region",
        "connector_name",
        unique=True,
        postgresql_where=text("status = 'ACTIVE'"),
    ),
    Index(
        "ix_vpc_connectors_listing",
        "account_id",
        "region",
        text("created_at DESC"),
        text("connector_id DESC"),
    ),
    Index("ix_vpc_connectors_purge_at", "purge_at", postgresql_where=text("purge_at IS NOT NULL")),
)

# VPC ingress connections: at most one non-deleted per service (App Runner's quota).
vpc_ingress_connections = Table(
    "vpc_ingress_connections",
    metadata,
    Column("connection_id", Text, primary_key=True),
    Column("account_id", Text, ForeignKey("accounts.account_id"), nullable=False),
    Column("connection_name", Text, nullable=False),
    Column("connection_arn", Text, nullable=False, unique=True),
    Column(
        "service_id",
        Text,
        ForeignKey("services.service_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("service_arn", Text, nullable=False),
    Column("vpc_id", Text, nullable=False),
    Column("vpc_endpoint_id", Text, nullable=False),
    Column("domain_name", Text, nullable=False),
    Column("status", Text, nullable=False),
    _ts("created_at", default_now=True),
    _ts("updated_at", default_now=True),
    _ts("deleted_at", nullable=True),
    _ts("purge_at", nullable=True),
    _region_of("connection_arn"),
    Index(
        "ix_vpc_ingress_connections_live_name",
        "account_id",
        "region",
        "connection_name",
        unique=True,
        postgresql_where=text("status <> 'DELETED'"),
    ),
    Index(
        "ix_vpc_ingress_connections_live_service",
        "service_id",
        unique=True,
        postgresql_where=text("status <> 'DELETED'"),
    ),
    Index(
        "ix_vpc_ingress_connections_listing",
        "account_id",
        "region",
        text("created_at DESC"),
        text("connection_id DESC"),
    ),
    Index(
        "ix_vpc_ingress_connections_purge_at",
        "purge_at",
        postgresql_where=text("purge_at IS NOT NULL"),
    ),
)
