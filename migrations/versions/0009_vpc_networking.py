"""VPC connectors, VPC ingress connections and services' network configuration.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
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
    op.add_column(
        "service_configurations",
        sa.Column("network_configuration", postgresql.JSONB(), nullable=True),
    )
    op.create_index(
        "ix_service_configurations_vpc_connector",
        "service_configurations",
        [sa.text("(network_configuration #>> '{egress_configuration,vpc_connector_arn}')")],
        postgresql_where=sa.text("network_configuration IS NOT NULL"),
    )

    op.create_table(
        "vpc_connectors",
        sa.Column("connector_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("connector_name", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("connector_arn", sa.Text(), nullable=False),
        sa.Column("subnets", postgresql.JSONB(), nullable=False),
        sa.Column("security_groups", postgresql.JSONB(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        _ts("created_at", default_now=True),
        _ts("updated_at", default_now=True),
        _ts("deleted_at", nullable=True),
        _ts("purge_at", nullable=True),
        sa.PrimaryKeyConstraint("connector_id", name="pk_vpc_connectors"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.account_id"], name="fk_vpc_connectors_account_id_accounts"
        ),
        sa.UniqueConstraint("connector_arn", name="uq_vpc_connectors_connector_arn"),
        sa.UniqueConstraint(
            "account_id",
            "connector_name",
            "revision",
            name="uq_vpc_connectors_account_id_connector_name_revision",
        ),
    )
    op.create_index(
        "ix_vpc_connectors_active_name",
        "vpc_connectors",
        ["account_id", "connector_name"],
        unique=True,
        postgresql_where=sa.text("status = 'ACTIVE'"),
    )
    op.create_index(
        "ix_vpc_connectors_listing",
        "vpc_connectors",
        ["account_id", sa.text("created_at DESC"), sa.text("connector_id DESC")],
    )
    op.create_index(
        "ix_vpc_connectors_purge_at",
        "vpc_connectors",
        ["purge_at"],
        postgresql_where=sa.text("purge_at IS NOT NULL"),
    )

    op.create_table(
        "vpc_ingress_connections",
        sa.Column("connection_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("connection_name", sa.Text(), nullable=False),
        sa.Column("connection_arn", sa.Text(), nullable=False),
        sa.Column("service_id", sa.Text(), nullable=False),
        sa.Column("service_arn", sa.Text(), nullable=False),
        sa.Column("vpc_id", sa.Text(), nullable=False),
        sa.Column("vpc_endpoint_id", sa.Text(), nullable=False),
        sa.Column("domain_name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        _ts("created_at", default_now=True),
        _ts("updated_at", default_now=True),
        _ts("deleted_at", nullable=True),
        _ts("purge_at", nullable=True),
        sa.PrimaryKeyConstraint("connection_id", name="pk_vpc_ingress_connections"),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.account_id"],
            name="fk_vpc_ingress_connections_account_id_accounts",
        ),
        sa.ForeignKeyConstraint(
            ["service_id"],
            ["services.service_id"],
            name="fk_vpc_ingress_connections_service_id_services",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("connection_arn", name="uq_vpc_ingress_connections_connection_arn"),
    )
    op.create_index(
        "ix_vpc_ingress_connections_live_name",
        "vpc_ingress_connections",
        ["account_id", "connection_name"],
        unique=True,
        postgresql_where=sa.text("status <> 'DELETED'"),
    )
    op.create_index(
        "ix_vpc_ingress_connections_live_service",
        "vpc_ingress_connections",
        ["service_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'DELETED'"),
    )
    op.create_index(
        "ix_vpc_ingress_connections_listing",
        "vpc_ingress_connections",
        ["account_id", sa.text("created_at DESC"), sa.text("connection_id DESC")],
    )
    op.create_index(
        "ix_vpc_ingress_connections_purge_at",
        "vpc_ingress_connections",
        ["purge_at"],
        postgresql_where=sa.text("purge_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("vpc_ingress_connections")
    op.drop_table("vpc_connectors")
    op.drop_index("ix_service_configurations_vpc_connector", "service_configurations")
    op.drop_column("service_configurations", "network_configuration")
