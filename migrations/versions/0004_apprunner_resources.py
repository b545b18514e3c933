"""Tags of App Runner resources.

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "resource_tags",
        sa.Column("resource_arn", sa.Text(), nullable=False),
        sa.Column("tag_key", sa.Text(), nullable=False),
        sa.Column("account_id", sa.Text(), nullable=False),
        sa.Column("tag_value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("resource_arn", "tag_key", name="pk_resource_tags"),
    )


def downgrade() -> None:
    op.drop_table("resource_tags")
