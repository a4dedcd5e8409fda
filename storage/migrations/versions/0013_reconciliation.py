"""settlement reconciliation: runs, lines, results, differences, resolutions, due days;
merchant notifications tied to an environment

Revision ID: 0013_reconciliation
Revises: 0012_personal_data

Settlement reconciliation (storage/recon/) matches a PSP's settlement report of one
account and day against the transactions:

- ``recon_runs``: one row per run of an account and day (QUEUED, RUNNING, COMPLETED,
  FAILED, or SUPERSEDED by a later run of the same day), with its summary.
- ``recon_lines``: every line of the run's report and its class (the result per line);
  ``recon_txn_results``: the transactions whose result is not the class of their one line
  in the report (not settled by it, settled another day, or twice), with the day whose
  report settled them (storage.recon.results.transaction_classes reads both). Written in
  bulk, read by run: no foreign keys (a million rows would pay a check each) and no index
  beyond the key (a million random index entries cost more than the rest of a run).
- ``recon_differences``: what a run found not matched, both sides as the run saw them;
  ``recon_resolutions``: an operator's note on one, kept per account, day and subject so
  that it holds for every later run finding the same difference.
- ``recon_adjustments``: chargebacks and fee adjustments, tied to their transaction where
  they name one.
- ``recon_days``: which days of which account are due, kept here so that a beat started
  afresh never skips one.

``notifications``: a merchant notification may concern a reconciliation run instead of a
transaction (``reconciliation.completed``): ``txn_id`` becomes nullable, ``recon_run_id``
and the notification's own ``payload`` are added, one notification per run and type.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from storage.schema_changes import create_index_concurrently

revision = "0013_reconciliation"
down_revision = "0012_personal_data"
branch_labels = None
depends_on = None

# Amounts as the PSP wrote them, to the places it wrote them with (unconstrained numeric).
_MONEY = sa.Numeric()


def _now() -> sa.Column[Any]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "recon_runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("brand_id", sa.String(40), sa.ForeignKey("brands.id"), nullable=False),
        sa.Column(
            "environment_id", sa.String(40), sa.ForeignKey("environments.id"), nullable=False
        ),
        sa.Column("psp_id", sa.String(40), sa.ForeignKey("psps.id"), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("requested_by", sa.String(200)),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("lines", sa.BigInteger()),
        sa.Column("matched", sa.BigInteger()),
        sa.Column("summary", JSONB()),
        _now(),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "recon_lines",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("line_no", sa.Integer(), primary_key=True),
        sa.Column("psp_payment_id", sa.Text()),
        sa.Column("reference", sa.Text()),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("gross", _MONEY, nullable=False),
        sa.Column("fee", _MONEY, nullable=False),
        sa.Column("net", _MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("txn_id", sa.String(40)),
        sa.Column("class", sa.String(20), nullable=False),
    )
    op.create_table(
        "recon_txn_results",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("txn_id", sa.String(40), primary_key=True),
        sa.Column("class", sa.String(20), nullable=False),
        # The line that settled it: in this run's report, or another day's (settled_day).
        sa.Column("line_no", sa.Integer()),
        sa.Column("settled_day", sa.Date()),
    )
    op.create_table(
        "recon_differences",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(40), sa.ForeignKey("recon_runs.id"), nullable=False),
        sa.Column("brand_id", sa.String(40), nullable=False),
        sa.Column("environment_id", sa.String(40), nullable=False),
        sa.Column("psp_id", sa.String(40), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("class", sa.String(20), nullable=False),
        # What the difference is about, the same in every run of the day that finds it.
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("txn_id", sa.String(40)),
        sa.Column("line_no", sa.Integer()),
        sa.Column("ours", JSONB()),
        sa.Column("theirs", JSONB()),
        # inquiry | review: what was done about it automatically (workers.settlement).
        sa.Column("action", sa.String(20)),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        _now(),
        sa.UniqueConstraint("run_id", "subject", name="uq_recon_differences_run_subject"),
    )
    op.create_table(
        "recon_resolutions",
        sa.Column("psp_id", sa.String(40), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("subject", sa.Text(), primary_key=True),
        sa.Column("difference_id", sa.BigInteger(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("resolved_by", sa.String(200), nullable=False),
        sa.Column(
            "resolved_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.create_table(
        "recon_adjustments",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("line_no", sa.Integer(), primary_key=True),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("txn_id", sa.String(40)),
        sa.Column("psp_payment_id", sa.Text()),
        sa.Column("gross", _MONEY, nullable=False),
        sa.Column("fee", _MONEY, nullable=False),
        sa.Column("net", _MONEY, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "recon_days",
        sa.Column("psp_id", sa.String(40), sa.ForeignKey("psps.id"), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("brand_id", sa.String(40), nullable=False),
        sa.Column("environment_id", sa.String(40), nullable=False),
        # When the day is due next; NULL once its last scheduled run (the day after, then
        # each look-back day: storage.recon.schedule) is done.
        sa.Column("next_run_at", sa.DateTime(timezone=True)),
        # Whether the schedule has taken the day on (a day first run on demand has not).
        sa.Column("scheduled", sa.Boolean(), server_default=sa.false(), nullable=False),
        # The latest completed run: the day's result.
        sa.Column("current_run_id", sa.String(40)),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
    )
    op.alter_column("notifications", "txn_id", nullable=True)
    op.add_column("notifications", sa.Column("recon_run_id", sa.String(40)))
    op.add_column("notifications", sa.Column("payload", JSONB()))

    create_index_concurrently(
        "ix_recon_runs_tenant_day", "recon_runs", ["environment_id", "day", "created_at"]
    )
    create_index_concurrently("ix_recon_runs_psp_day", "recon_runs", ["psp_id", "day"])
    create_index_concurrently(
        "ix_recon_runs_unfinished",
        "recon_runs",
        ["created_at"],
        where="status IN ('QUEUED', 'RUNNING')",
    )
    create_index_concurrently("ix_recon_differences_day", "recon_differences", ["psp_id", "day"])
    create_index_concurrently(
        "ix_recon_days_due", "recon_days", ["next_run_at"], where="next_run_at IS NOT NULL"
    )
    create_index_concurrently(
        "uq_notifications_recon_run",
        "notifications",
        ["recon_run_id", "event_type"],
        unique=True,
        where="recon_run_id IS NOT NULL",
    )


def downgrade() -> None:
    op.drop_index("uq_notifications_recon_run", table_name="notifications")
    op.drop_column("notifications", "payload")
    op.drop_column("notifications", "recon_run_id")
    op.execute("DELETE FROM notifications WHERE txn_id IS NULL")
    op.alter_column("notifications", "txn_id", nullable=False)
    for table in (
        "recon_days",
        "recon_adjustments",
        "recon_resolutions",
        "recon_differences",
        "recon_txn_results",
        "recon_lines",
        "recon_runs",
    ):
        op.drop_table(table)
