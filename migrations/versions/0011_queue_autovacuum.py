"""Autovacuum settings of the tables whose rows churn; the queue's pending updates indexed

The queue (jobs), the outbox, operations, idempotency keys, service tombstones and
retained certificates are written, rewritten and purged all day. Postgres's defaults
vacuum a table once a fifth of it is dead, which on a grown table lets hundreds of
thousands of dead tuples sit in front of the hot statements' index scans; these settings
vacuum them after a bounded number of dead rows instead (reasons beside
STORAGE_PARAMETERS in adapters/postgres/schema.py, which must match this list).

ix_jobs_active_updates: whether a configuration revision is still wanted by an update not
yet applied read the whole queue (found by tests/integration/test_statement_plans.py with
a backlog of 20,000 jobs); the partial index holds the queued and running updates only.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# As of this revision (a migration never reads the current schema.py).
STORAGE_PARAMETERS: dict[str, dict[str, str]] = {
    "jobs": {
        "autovacuum_vacuum_scale_factor": "0",
        "autovacuum_vacuum_threshold": "1000",
        "autovacuum_vacuum_insert_scale_factor": "0",
        "autovacuum_vacuum_insert_threshold": "1000",
        "autovacuum_analyze_scale_factor": "0",
        "autovacuum_analyze_threshold": "1000",
        "autovacuum_vacuum_cost_delay": "0",
    },
    "outbox": {
        "autovacuum_vacuum_scale_factor": "0.01",
        "autovacuum_vacuum_threshold": "1000",
        "autovacuum_vacuum_insert_scale_factor": "0.02",
        "autovacuum_analyze_scale_factor": "0.02",
        "autovacuum_vacuum_cost_limit": "2000",
    },
    "operations": {
        "autovacuum_vacuum_scale_factor": "0.02",
        "autovacuum_vacuum_threshold": "500",
        "autovacuum_analyze_scale_factor": "0.02",
    },
    "request_ids": {
        "autovacuum_vacuum_scale_factor": "0.02",
        "autovacuum_vacuum_threshold": "500",
        "autovacuum_analyze_scale_factor": "0.02",
    },
    "services": {
        "autovacuum_vacuum_scale_factor": "0.05",
        "autovacuum_vacuum_threshold": "500",
        "autovacuum_analyze_scale_factor": "0.05",
    },
    "certificates": {
        "autovacuum_vacuum_scale_factor": "0.05",
        "autovacuum_vacuum_threshold": "500",
        "autovacuum_analyze_scale_factor": "0.05",
    },
}


def upgrade() -> None:
    for table, parameters in STORAGE_PARAMETERS.items():
        settings = ", ".join(f"{name} = {value}" for name, value in parameters.items())
        op.execute(f"ALTER TABLE {table} SET ({settings})")
    op.create_index(
        "ix_jobs_active_updates",
        "jobs",
        ["job_id"],
        postgresql_where=sa.text("kind = 'update_service' AND state IN ('queued', 'running')"),
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_active_updates", table_name="jobs")
    for table, parameters in STORAGE_PARAMETERS.items():
        op.execute(f"ALTER TABLE {table} RESET ({', '.join(parameters)})")
