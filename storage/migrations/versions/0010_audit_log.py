"""the audit trail: every administrative act, append-only

Revision ID: 0010_audit_log
Revises: 0009_unverified_inbox_keys

``audit_log`` keeps who did what, when, to what, with the state before and after (never a
secret: storage.audit). Append-only is the database's rule, not only the code's: a trigger
refuses every UPDATE, DELETE and TRUNCATE, so neither a bug nor a stolen application
connection rewrites history (a superuser can still disable the trigger; the README's
Operations section says how to run the service as a role that cannot).

No foreign keys: an entry outlives whatever it names. The brand and environment ids scope
the console's Audit page (a tenant sees its own entries only).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from storage.schema_changes import create_index_concurrently, drop_index_concurrently

revision = "0010_audit_log"
down_revision = "0009_unverified_inbox_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger(), autoincrement=True, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("action", sa.String(length=80), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("brand_id", sa.String(length=40), nullable=True),
        sa.Column("environment_id", sa.String(length=40), nullable=True),
        sa.Column("before", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("after", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    )
    # One line: the offline SQL the additive-migration test reads is split at ";<newline>".
    op.execute(
        "CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP "
        "USING ERRCODE = 'insufficient_privilege'; END $$"
    )
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only()"
    )
    # The console's page for a tenant: its own entries, newest first.
    create_index_concurrently("ix_audit_log_environment", "audit_log", ["environment_id", "id"])
    # `connxt audit list --since`.
    create_index_concurrently("ix_audit_log_at", "audit_log", ["at"])


def downgrade() -> None:
    drop_index_concurrently("ix_audit_log_at")
    drop_index_concurrently("ix_audit_log_environment")
    op.execute("DROP TABLE audit_log")
    op.execute("DROP FUNCTION audit_log_append_only()")
