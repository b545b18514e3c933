"""Indexes for hot statements that read whole tables once they grow

Found by the grown-table plan tests (test_statement_plans.py): resuming a failed delete and reaping
orphaned failed jobs read the whole queue; ListConnections sorted every connection of
the account; certificate purges and the DNS validation pass read every custom domain;
pruning the outbox read every delivered event.

Revision ID: 0005
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_jobs_failed", "jobs", ["job_id"], postgresql_where=sa.text("state = 'failed'")
    )
    op.create_index(
        "ix_jobs_failed_service",
        "jobs",
        ["service_id"],
        postgresql_where=sa.text("state = 'failed'"),
    )
    op.create_index(
        "ix_outbox_delivered",
        "outbox",
        ["delivered_at"],
        postgresql_where=sa.text("position IS NOT NULL"),
    )
    op.create_index(
        "ix_connections_listing",
        "connections",
        ["account_id", sa.text("created_at DESC"), sa.text("connection_id DESC")],
    )
    op.create_index("ix_custom_domains_certificate", "custom_domains", ["certificate_id"])
    op.create_index(
        "ix_custom_domains_awaiting",
        "custom_domains",
        ["created_at", "service_id", "domain_name"],
        postgresql_where=sa.text("status = 'PENDING_CERTIFICATE_DNS_VALIDATION'"),
    )


def downgrade() -> None:
    for name, table in [
        ("ix_custom_domains_awaiting", "custom_domains"),
        ("ix_custom_domains_certificate", "custom_domains"),
        ("ix_connections_listing", "connections"),
        ("ix_outbox_delivered", "outbox"),
        ("ix_jobs_failed_service", "jobs"),
        ("ix_jobs_failed", "jobs"),
    ]:
        op.drop_index(name, table_name=table)
