"""Every change to an API key is announced: NOTIFY api_key_changes

A server that keeps looked-up keys for a moment (adapters/postgres/key_cache.py) learns
of a key created, revoked, changed or deleted anywhere from this channel: each row
inserted, updated or deleted in api_keys notifies its key id, and a TRUNCATE notifies
'*' (every key). A notification is sent when its transaction commits, in commit order,
so a listener that has seen a later notification of its own has seen this one too
(docs/security.md, "The API key cache").

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION api_key_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' THEN
                PERFORM pg_notify('api_key_changes', OLD.key_id);
            ELSE
                PERFORM pg_notify('api_key_changes', NEW.key_id);
                -- A key id that changes (it never should) leaves its old id too.
                IF TG_OP = 'UPDATE' AND OLD.key_id IS DISTINCT FROM NEW.key_id THEN
                    PERFORM pg_notify('api_key_changes', OLD.key_id);
                END IF;
            END IF;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE FUNCTION api_keys_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('api_key_changes', '*');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE ON api_keys "
        "FOR EACH ROW EXECUTE FUNCTION api_key_changed()"
    )
    op.execute(
        "CREATE TRIGGER api_keys_truncated AFTER TRUNCATE ON api_keys "
        "FOR EACH STATEMENT EXECUTE FUNCTION api_keys_truncated()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER api_keys_truncated ON api_keys")
    op.execute("DROP TRIGGER api_keys_changed ON api_keys")
    op.execute("DROP FUNCTION api_keys_truncated()")
    op.execute("DROP FUNCTION api_key_changed()")
