"""Regions: every regional resource belongs to the region its ARN names.

A stored generated `region` column (the ARN's fourth field) on connections,
certificates, configuration revisions, VPC connectors and VPC ingress connections, so
existing rows take the region of their stored ARNs; services already record theirs.
Names, defaults and listings become unique and indexed per account and region.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> the column holding its ARN
_ARNS = {
    "connections": "connection_arn",
    "certificates": "certificate_arn",
    "config_resources": "arn",
    "vpc_connectors": "connector_arn",
    "vpc_ingress_connections": "connection_arn",
}


def _add_region(table: str, arn_column: str) -> None:
    op.add_column(
        table,
        sa.Column(
            "region",
            sa.Text(),
            sa.Computed(f"split_part({arn_column}, ':', 4)", persisted=True),
            nullable=False,
        ),
    )


def _indexes(with_region: bool) -> None:
    """(Re)creates the indexes whose keys gain the region."""
    region = ["region"] if with_region else []
    not_deleted = sa.text("status <> 'DELETED'")
    op.create_index(
        "ix_services_live_name",
        "services",
        ["account_id", *region, "service_name"],
        unique=True,
        postgresql_where=not_deleted,
    )
    op.create_index(
        "ix_services_live_listing",
        "services",
        ["account_id", *region, sa.text("created_at DESC"), sa.text("service_id DESC")],
        postgresql_where=not_deleted,
    )
    op.create_index(
        "ix_connections_live_name",
        "connections",
        ["account_id", *region, "connection_name"],
        unique=True,
        postgresql_where=not_deleted,
    )
    op.create_index(
        "ix_connections_listing",
        "connections",
        ["account_id", *region, sa.text("created_at DESC"), sa.text("connection_id DESC")],
    )
    op.create_index(
        "ix_config_resources_active_revision",
        "config_resources",
        ["account_id", *region, "kind", "name", "revision"],
        unique=True,
        postgresql_where=sa.text("status = 'ACTIVE'"),
    )
    op.create_index(
        "ix_config_resources_default",
        "config_resources",
        ["account_id", *region, "kind"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.create_index(
        "ix_vpc_connectors_active_name",
        "vpc_connectors",
        ["account_id", *region, "connector_name"],
        unique=True,
        postgresql_where=sa.text("status = 'ACTIVE'"),
    )
    op.create_index(
        "ix_vpc_connectors_listing",
        "vpc_connectors",
        ["account_id", *region, sa.text("created_at DESC"), sa.text("connector_id DESC")],
    )
    op.create_index(
        "ix_vpc_ingress_connections_live_name",
        "vpc_ingress_connections",
        ["account_id", *region, "connection_name"],
        unique=True,
        postgresql_where=not_deleted,
    )
    op.create_index(
        "ix_vpc_ingress_connections_listing",
        "vpc_ingress_connections",
        ["account_id", *region, sa.text("created_at DESC"), sa.text("connection_id DESC")],
    )


def _drop_indexes() -> None:
    for table, name in (
        ("services", "ix_services_live_name"),
        ("services", "ix_services_live_listing"),
        ("connections", "ix_connections_live_name"),
        ("connections", "ix_connections_listing"),
        ("config_resources", "ix_config_resources_active_revision"),
        ("config_resources", "ix_config_resources_default"),
        ("vpc_connectors", "ix_vpc_connectors_active_name"),
        ("vpc_connectors", "ix_vpc_connectors_listing"),
        ("vpc_ingress_connections", "ix_vpc_ingress_connections_live_name"),
        ("vpc_ingress_connections", "ix_vpc_ingress_connections_listing"),
    ):
        op.drop_index(name, table_name=table)


def upgrade() -> None:
    for table, arn_column in _ARNS.items():
        _add_region(table, arn_column)
    _drop_indexes()
    _indexes(with_region=True)
    op.drop_constraint("uq_certificates_account_id_domain_name", "certificates", type_="unique")
    op.create_unique_constraint(
        "uq_certificates_account_id_region_domain_name",
        "certificates",
        ["account_id", "region", "domain_name"],
    )
    op.drop_constraint(
        "uq_vpc_connectors_account_id_connector_name_revision", "vpc_connectors", type_="unique"
    )
    op.create_unique_constraint(
        "uq_vpc_connectors_account_id_region_connector_name_revision",
        "vpc_connectors",
        ["account_id", "region", "connector_name", "revision"],
    )


def downgrade() -> None:
    op.drop_constraint(
        "uq_vpc_connectors_account_id_region_connector_name_revision",
        "vpc_connectors",
        type_="unique",
    )
    op.create_unique_constraint(
        "uq_vpc_connectors_account_id_connector_name_revision",
        "vpc_connectors",
        ["account_id", "connector_name", "revision"],
    )
    op.drop_constraint(
        "uq_certificates_account_id_region_domain_name", "certificates", type_="unique"
    )
    op.create_unique_constraint(
        "uq_certificates_account_id_domain_name", "certificates", ["account_id", "domain_name"]
    )
    _drop_indexes()
    _indexes(with_region=False)
    for table in _ARNS:
        op.drop_column(table, "region")
