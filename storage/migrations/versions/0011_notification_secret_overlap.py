"""a merchant notification secret can be rotated with an overlap

Revision ID: 0011_notification_secret_overlap
Revises: 0010_audit_log

During a rotation's overlap notifications carry two signatures, one with the new secret and
one with the previous (Standard Webhooks allows several in ``webhook-signature``), so a
merchant switches to the new secret when it is ready. The previous secret is kept sealed
beside the current one, with the moment it stops being used; both under the same
associated data (``env-webhook-secret:<environment id>``).
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_notification_secret_overlap"
down_revision = "0010_audit_log"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "environments", sa.Column("notification_secret_previous_key_id", sa.String(length=40))
    )
    op.add_column(
        "environments", sa.Column("notification_secret_previous_sealed", sa.LargeBinary())
    )
    op.add_column(
        "environments",
        sa.Column("notification_secret_previous_until", sa.DateTime(timezone=True)),
    )


def downgrade() -> None:
    op.drop_column("environments", "notification_secret_previous_until")
    op.drop_column("environments", "notification_secret_previous_sealed")
    op.drop_column("environments", "notification_secret_previous_key_id")
