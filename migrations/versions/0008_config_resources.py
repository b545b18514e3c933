"""Auto scaling and observability configurations, and the services' references to them.

Services that exist already were shown the account's built-in DefaultConfiguration
revision 1 (under the same ARN, derived from the region and account); they are recorded as
using it, and that revision is created for their accounts.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "config_resources",
        sa.Column("config_id", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("arn", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column(
            "settings",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("is_default", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column(
            "created_at",
            postgresql.TIMESTAMP(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deleted_at", postgresql.TIMESTAMP(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("config_id", name="pk_config_resources"),
        sa.UniqueConstraint("arn", name="uq_config_resources_arn"),
    )
    op.create_index(
        "ix_config_resources_active_revision",
        "config_resources",
        ["account_id", "kind", "name", "revision"],
        unique=True,
        postgresql_where=sa.text("status = 'ACTIVE'"),
    )
    op.create_index(
        "ix_config_resources_default",
        "config_resources",
        ["account_id", "kind"],
        unique=True,
        postgresql_where=sa.text("is_default"),
    )
    op.add_column(
        "service_configurations",
        sa.Column("auto_scaling_configuration_arn", sa.Text(), nullable=True),
    )
    op.add_column(
        "service_configurations",
        sa.Column("observability_configuration_arn", sa.Text(), nullable=True),
    )
    op.create_index(
        "ix_service_configurations_auto_scaling",
        "service_configurations",
        ["auto_scaling_configuration_arn"],
        postgresql_where=sa.text("auto_scaling_configuration_arn IS NOT NULL"),
    )
    op.create_index(
        "ix_service_configurations_observability",
        "service_configurations",
        ["observability_configuration_arn"],
        postgresql_where=sa.text("observability_configuration_arn IS NOT NULL"),
    )
    op.execute(BACKFILL_DEFAULTS)
    op.execute(BACKFILL_REFERENCES)


# The built-in DefaultConfiguration of every (account, region) that has services, with the
# id domain/config_resources.default_config_id derives, and App Runner's default values.
# (The escaped colons keep SQLAlchemy's text() from reading them as bind parameters.)
BACKFILL_DEFAULTS = """
INSERT INTO config_resources
    (config_id, account_id, kind, name, revision, arn, status, settings, is_default)
SELECT d.config_id, d.account_id, 'autoscalingconfiguration', 'DefaultConfiguration', 1,
       'arn:aws:apprunner:' || d.region || ':' || d.account_id
           || '\\:autoscalingconfiguration/DefaultConfiguration/1/' || d.config_id,
       'ACTIVE', '{"max_concurrency": 100, "min_size": 1, "max_size": 25}'::jsonb, true
FROM (
    SELECT DISTINCT account_id, region,
        left(encode(sha256(convert_to(region || ':' || account_id || '\\:autoscaling', 'UTF8')),
                    'hex'), 32) AS config_id
    FROM services
) d
ON CONFLICT DO NOTHING
"""

# Every service with a configuration uses its account's DefaultConfiguration revision 1.
BACKFILL_REFERENCES = """
UPDATE service_configurations c
SET auto_scaling_configuration_arn =
    'arn:aws:apprunner:' || s.region || ':' || s.account_id
    || '\\:autoscalingconfiguration/DefaultConfiguration/1/'
    || left(encode(sha256(convert_to(s.region || ':' || s.account_id || '\\:autoscaling',
                                     'UTF8')), 'hex'), 32)
FROM services s
WHERE s.service_id = c.service_id AND c.auto_scaling_configuration_arn IS NULL
"""


def downgrade() -> None:
    op.drop_index("ix_service_configurations_observability", table_name="service_configurations")
    op.drop_index("ix_service_configurations_auto_scaling", table_name="service_configurations")
    op.drop_column("service_configurations", "observability_configuration_arn")
    op.drop_column("service_configurations", "auto_scaling_configuration_arn")
    op.drop_index("ix_config_resources_default", table_name="config_resources")
    op.drop_index("ix_config_resources_active_revision", table_name="config_resources")
    op.drop_table("config_resources")
