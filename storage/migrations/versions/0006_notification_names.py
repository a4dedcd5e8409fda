"""merchant notification settings named as notifications, not webhooks

Revision ID: 0006_notification_names
Revises: 0005_operations

"Webhook" is what a PSP sends us, "notification" what we send a merchant. An environment's
merchant notification URL and signing secret were named ``webhook_*``; renamed in place
(data kept, nothing re-sealed: the secret's associated data stays the same).
"""

from alembic import op

revision = "0006_notification_names"
down_revision = "0005_operations"
branch_labels = None
depends_on = None

_RENAMES = (
    ("webhook_url", "notification_url"),
    ("webhook_secret_key_id", "notification_secret_key_id"),
    ("webhook_secret_sealed", "notification_secret_sealed"),
)


def upgrade() -> None:
    for old, new in _RENAMES:
        op.alter_column("environments", old, new_column_name=new)


def downgrade() -> None:
    for old, new in _RENAMES:
        op.alter_column("environments", new, new_column_name=old)
