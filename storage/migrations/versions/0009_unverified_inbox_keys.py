"""unverified PSP notifications stored apart from verified ones

Revision ID: 0009_unverified_inbox_keys
Revises: 0008_captured_and_reviews

An unverified notification (an account without a signing key) took the inbox's
(psp_id, event_key) slot, so the genuine signed webhook that followed it was acknowledged
as a duplicate and never applied. Unverified rows are now stored under
``unverified:<identity>`` (storage.inbox_writer.slot_key); the ones stored before are moved
there, so they no longer stand in a verified one's way. (One the previous release stores
during the rolling update keeps its plain key: it is a hint, processed like any other.)
"""

from alembic import op

revision = "0009_unverified_inbox_keys"
down_revision = "0008_captured_and_reviews"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        # Only keys the prefix does not cut short: two of those could become one.
        "UPDATE inbox SET event_key = 'unverified:' || event_key "
        "WHERE NOT verified AND event_key NOT LIKE 'unverified:%' AND length(event_key) <= 289"
    )


def downgrade() -> None:
    pass  # the keys stay apart: harmless to the previous release
