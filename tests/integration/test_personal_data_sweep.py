"""The personal-data sweep and erasures at scale: each reads an index made for it, and
only what has ended, long enough ago, is redacted."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from connxt.settings import get_settings
from storage import personal_data
from storage.db import get_engine
from tests.support.flows import create_psp, stored_deposit, target

pytestmark = pytest.mark.integration


@pytest.fixture
def model(client, tenant):
    """A stored deposit to copy: its id."""
    _, headers = tenant
    flow_target = target(client, headers, "Paymaxis")
    psp = create_psp(client, headers, flow_target, {"apiKey": "pmx_pii"})
    return stored_deposit(client, headers, psp, flow_target)


# Transactions ended long ago, recently, and open; each a customer's.
_MANY = """
INSERT INTO transactions (id, brand_id, environment_id, psp_id, flow_action_id,
  flow_target_id, action, amount, currency, status, execute_payload, user_id, updated_at)
SELECT 'txn_pii_' || g, t.brand_id, t.environment_id, t.psp_id, t.flow_action_id,
  t.flow_target_id, t.action, t.amount, t.currency,
  CASE WHEN g % 3 = 0 THEN 'PG_ACCEPTED' ELSE 'SUCCESS' END,
  '{"body": {"customer": {"id": "c", "firstName": "Ada"}}}', 'cust-' || (g % 5000),
  now() - make_interval(days => g % 60)
FROM transactions t, generate_series(1, :count) g WHERE t.id = :model
"""


def test_the_sweep_and_the_erasure_read_their_indexes(model):
    with get_engine().connect() as conn, conn.begin() as work:
        conn.execute(text(_MANY), {"model": model, "count": 5000})
        conn.execute(text("ANALYZE transactions"))
        # Whether a scan is cheaper depends on how the table's rows happen to be spread (the
        # tests that ran before in this database): what must hold is that each index serves
        # its query's shape, so the plan is asked for with scans of the whole table refused.
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plans = {}
        for name, sql, params in (
            ("due", personal_data._DUE, {"days": 30, "batch": 1000}),
            ("erasure", personal_data._ERASURE_DUE, {"batch": 1000}),
            (
                "customer",
                "SELECT id FROM transactions WHERE brand_id = %(brand)s AND user_id = %(customer)s",
                {"brand": "brn_x", "customer": "cust-7"},
            ),
        ):
            rows = conn.exec_driver_sql("EXPLAIN " + sql, params)
            plans[name] = "\n".join(row[0] for row in rows)
        work.rollback()
    assert "ix_transactions_personal_data_due" in plans["due"], plans["due"]
    assert "ix_transactions_erasure_pending" in plans["erasure"], plans["erasure"]
    assert "ix_transactions_customer" in plans["customer"], plans["customer"]
    for plan in plans.values():
        assert "Seq Scan on transactions" not in plan, plan


def test_only_what_ended_long_enough_ago_is_redacted(model):
    settings = get_settings().model_copy(
        update={"pii_retention_days": 30, "retention_batch_rows": 100}
    )
    with get_engine().begin() as conn:
        conn.execute(text(_MANY), {"model": model, "count": 1500})
    started = time.monotonic()
    redacted = personal_data.redact_due(get_engine(), settings, time.monotonic() + 60)
    took = time.monotonic() - started
    with get_engine().connect() as conn:
        rows = conn.execute(
            text(
                "SELECT status, updated_at < now() - interval '30 days' AS old,"
                " personal_data_redacted_at IS NOT NULL AS redacted,"
                " execute_payload::text LIKE '%Ada%' AS named"
                " FROM transactions WHERE id LIKE 'txn_pii_%'"
            )
        ).all()
    due = [r for r in rows if r.status == "SUCCESS" and r.old]
    assert redacted == len(due) > 300, (redacted, took)  # several batches
    assert all(r.redacted and not r.named for r in due)
    assert all(not r.redacted and r.named for r in rows if r not in due)
    # Run again: nothing left to do, and nothing read twice.
    assert personal_data.redact_due(get_engine(), settings, time.monotonic() + 60) == 0
    print(f"{redacted} transactions redacted in {took:.2f} s")
