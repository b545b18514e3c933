"""Retries of transient failures as a time window

jobs.retry_since: when the job's first transient failure happened (the window's start);
operations.retry_until: when the operation stops retrying and fails, shown to callers.

Revision ID: 0006
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("retry_since", sa.TIMESTAMP(timezone=True), nullable=True))
    op.add_column(
        "operations", sa.Column("retry_until", sa.TIMESTAMP(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("operations", "retry_until")
    op.drop_column("jobs", "retry_since")
