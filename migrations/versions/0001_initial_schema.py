"""Initial schema: accounts, services and their configuration, operations, idempotency
keys, the job queue, the outbox, connections, certificates and custom domains.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Written out in full rather than built from schema.py: a migration records the schema as it
was when released, so later edits to schema.py must not change what this one creates.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False, default_now: bool = False) -> sa.Column:
    return sa.Column(
        name,
        postgresql.TIMESTAMP(timezone=True),
        nullable=nullable,
        server_default=sa.text("now()") if default_now else None,
    )


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.Text(), nullable=False),
        _ts("created_at", default_now=True),
        sa.PrimaryKeyConstraint("account_id", name="pk_accounts"),
    )

    op.create_table(
        "services",
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("region", sa.Text(), nullable=False),
        sa.Column("service_name", sa.Text(), nullable=False),
        sa.Column("service_arn", sa.Text(), nullable=False),
        sa.Column("service_url", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("status_message", sa.Text(), nullable=False, server_default=""),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        sa.Column("current_operation_id", postgresql.UUID(as_uuid=False), nullable=True),
        sa.Column("status_before_operation", sa.Text(), nullable=True),
        sa.Column("connection_arn", sa.Text(), nullable=True),
        _ts("created_at", default_now=True),
        _ts("updated_at", default_now=True),
        _ts("deleted_at", nullable=True),
        _ts("purge_at", nullable=True),
        sa.PrimaryKeyConstraint("service_id", name="pk_services"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_services_account_id_accounts"
        ),
        sa.UniqueConstraint("service_arn", name="uq_services_service_arn"),
        sa.UniqueConstraint("service_url", name="uq_services_service_url"),
    )
    op.create_index(
        "ix_services_live_name",
        "services",
        ["account_id", "service_name"],
        unique=True,
        postgresql_where=sa.text("status <> 'DELETED'"),
    )
    op.create_index(
        "ix_services_live_listing",
        "services",
        ["account_id", sa.text("created_at DESC"), sa.text("service_id DESC")],
        postgresql_where=sa.text("status <> 'DELETED'"),
    )
    op.create_index(
        "ix_services_purge_at",
        "services",
        ["purge_at"],
        postgresql_where=sa.text("purge_at IS NOT NULL"),
    )
    op.create_index(
        "ix_services_connection_arn",
        "services",
        ["connection_arn"],
        postgresql_where=sa.text("connection_arn IS NOT NULL"),
    )

    op.create_table(
        "service_configurations",
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("source_configuration", postgresql.JSONB(), nullable=False),
        sa.Column("instance_configuration", postgresql.JSONB(), nullable=False),
        sa.Column("health_check_configuration", postgresql.JSONB(), nullable=False),
        sa.Column("image_identifier", sa.Text(), nullable=True),
        sa.Column("image_bucket", sa.Text(), nullable=True),
        sa.Column("image_prefix", sa.Text(), nullable=True),
        _ts("updated_at", default_now=True),
        sa.PrimaryKeyConstraint("service_id", name="pk_service_configurations"),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.service_id"],
            name="fk_service_configurations_service_id_services",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "compute_instances",
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("image_prefix", sa.Text(), nullable=True),
        sa.Column("starts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("stops", sa.Integer(), nullable=False, server_default="0"),
        _ts("updated_at", default_now=True),
        sa.PrimaryKeyConstraint("service_id", name="pk_compute_instances"),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.service_id"],
            name="fk_compute_instances_service_id_services",
            ondelete="CASCADE",
        ),
    )

    op.create_table(
        "operations",
        sa.Column("operation_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("target_arn", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("current_step", sa.Text(), nullable=False, server_default=""),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("error", postgresql.JSONB(), nullable=True),
        sa.Column("deletion_report", postgresql.JSONB(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        _ts("next_attempt_at", nullable=True),
        _ts("started_at", default_now=True),
        _ts("updated_at", default_now=True),
        _ts("ended_at", nullable=True),
        sa.PrimaryKeyConstraint("operation_id", name="pk_operations"),
    )
    op.create_index(
        "ix_operations_one_active",
        "operations",
        ["service_id"],
        unique=True,
        postgresql_where=sa.text("status IN ('PENDING', 'IN_PROGRESS')"),
    )
    op.create_index(
        "ix_operations_by_service",
        "operations",
        ["service_id", sa.text("started_at DESC"), sa.text("operation_id DESC")],
    )
    op.create_index(
        "ix_operations_ended_at",
        "operations",
        ["ended_at"],
        postgresql_where=sa.text("ended_at IS NOT NULL"),
    )

    op.create_table(
        "request_ids",
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("result_kind", sa.Text(), nullable=False),
        sa.Column("result_id", sa.Text(), nullable=False),
        _ts("created_at", default_now=True),
        sa.PrimaryKeyConstraint("account_id", "request_id", name="pk_request_ids"),
    )
    op.create_index("ix_request_ids_created_at", "request_ids", ["created_at"])

    op.create_table(
        "jobs",
        sa.Column("job_id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("operation_id", postgresql.UUID(as_uuid=False), nullable=True),
        sa.Column("service_id", sa.Text(), nullable=True),
        sa.Column("account_id", sa.Text(), nullable=True),
        sa.Column(
            "payload", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column(
            "progress", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("state", sa.Text(), nullable=False, server_default="queued"),
        _ts("run_at", default_now=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("lease_token", postgresql.UUID(as_uuid=False), nullable=True),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        _ts("lease_expires_at", nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False, server_default=""),
        _ts("created_at", default_now=True),
        _ts("updated_at", default_now=True),
        sa.PrimaryKeyConstraint("job_id", name="pk_jobs"),
        sa.UniqueConstraint("operation_id", name="uq_jobs_operation_id"),
    )
    op.create_index(
        "ix_jobs_ready",
        "jobs",
        ["run_at", "job_id"],
        postgresql_where=sa.text("state = 'queued'"),
    )
    op.create_index(
        "ix_jobs_leases",
        "jobs",
        ["lease_expires_at"],
        postgresql_where=sa.text("state = 'running'"),
    )

    op.create_table(
        "outbox",
        sa.Column("event_id", postgresql.UUID(as_uuid=False), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("resource_arn", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        _ts("occurred_at", default_now=True),
        sa.Column("position", sa.BigInteger(), nullable=True),
        _ts("delivered_at", nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_outbox"),
        sa.UniqueConstraint("seq", name="uq_outbox_seq"),
        sa.UniqueConstraint("position", name="uq_outbox_position"),
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["seq"],
        postgresql_where=sa.text("position IS NULL"),
    )
    op.create_index(
        "ix_outbox_stream",
        "outbox",
        ["account_id", "position"],
        postgresql_where=sa.text("position IS NOT NULL"),
    )

    op.create_table(
        "connections",
        sa.Column("connection_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("connection_name", sa.Text(), nullable=False),
        sa.Column("connection_arn", sa.Text(), nullable=False),
        sa.Column("provider_type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        _ts("created_at", default_now=True),
        _ts("updated_at", default_now=True),
        _ts("deleted_at", nullable=True),
        _ts("purge_at", nullable=True),
        sa.PrimaryKeyConstraint("connection_id", name="pk_connections"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_connections_account_id_accounts"
        ),
        sa.UniqueConstraint("connection_arn", name="uq_connections_connection_arn"),
    )
    op.create_index(
        "ix_connections_live_name",
        "connections",
        ["account_id", "connection_name"],
        unique=True,
        postgresql_where=sa.text("status <> 'DELETED'"),
    )
    op.create_index(
        "ix_connections_purge_at",
        "connections",
        ["purge_at"],
        postgresql_where=sa.text("purge_at IS NOT NULL"),
    )

    op.create_table(
        "certificates",
        sa.Column("certificate_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("certificate_arn", sa.Text(), nullable=False),
        sa.Column("domain_name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column(
            "validation_records",
            postgresql.JSONB(),
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
        sa.Column("service_id", sa.Text(), nullable=True),
        sa.Column("service_arn", sa.Text(), nullable=True),
        _ts("created_at", default_now=True),
        _ts("unlinked_at", nullable=True),
        _ts("expires_at", nullable=True),
        sa.PrimaryKeyConstraint("certificate_id", name="pk_certificates"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_certificates_account_id_accounts"
        ),
        sa.UniqueConstraint("certificate_arn", name="uq_certificates_certificate_arn"),
        sa.UniqueConstraint(
            "account_id", "domain_name", name="uq_certificates_account_id_domain_name"
        ),
    )
    op.create_index(
        "ix_certificates_expires_at",
        "certificates",
        ["expires_at"],
        postgresql_where=sa.text("expires_at IS NOT NULL"),
    )

    op.create_table(
        "custom_domains",
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("domain_name", sa.Text(), nullable=False),
        sa.Column("enable_www_subdomain", sa.Boolean(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("certificate_id", sa.Text(), nullable=False),
        _ts("created_at", default_now=True),
        _ts("updated_at", default_now=True),
        sa.PrimaryKeyConstraint("service_id", "domain_name", name="pk_custom_domains"),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.service_id"],
            name="fk_custom_domains_service_id_services",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["certificates.certificate_id"],
            name="fk_custom_domains_certificate_id_certificates",
        ),
    )
    # Outbox positions: drawn by the relay in commit order (see adapters/postgres/outbox.py).
    op.execute("CREATE SEQUENCE outbox_position_seq AS bigint")


def downgrade() -> None:
    op.execute("DROP SEQUENCE IF EXISTS outbox_position_seq")
    # Dependants first; a table's indexes and constraints go with it.
    for table in (
        "custom_domains",
        "certificates",
        "connections",
        "outbox",
        "jobs",
        "request_ids",
        "operations",
        "compute_instances",
        "service_configurations",
        "services",
        "accounts",
    ):
        op.drop_table(table)
