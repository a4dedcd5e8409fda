"""Planner statistics that mislead, made on purpose: ``transactions`` as ANALYZE saw it
while it held a few live rows over many dead ones (bursts rolled back), then grown. What
a new account's first day, or a day loaded in bulk before autovacuum came by, looks like
to the planner; the statements that must go by key are checked under it."""

from __future__ import annotations

from sqlalchemy import Connection, text

from storage.db import get_engine

# Twenty thousand finished transactions and a hundred open ones, due for a look: copies of
# one transaction (``model``), their ids ``prefix`` and a number.
_COPIES = """
INSERT INTO transactions (id, brand_id, environment_id, psp_id, flow_action_id,
  flow_target_id, action, amount, currency, status, execute_payload, next_inquiry_at)
SELECT CAST(:prefix AS text) || g, t.brand_id, t.environment_id, t.psp_id, t.flow_action_id,
  t.flow_target_id, t.action, t.amount, t.currency,
  CASE WHEN g % 200 = 0 THEN 'PG_ACCEPTED' ELSE 'SUCCESS' END, '{}',
  now() - make_interval(secs => g)
FROM transactions t, generate_series(1, 20000) g WHERE t.id = :model
"""


def copy_transaction(conn: Connection, model: str, prefix: str) -> None:
    """Twenty thousand copies of ``model`` in ``conn``'s transaction (``_COPIES``)."""
    conn.execute(text(_COPIES), {"model": model, "prefix": prefix})


def stale_statistics(model: str, bursts: int = 3) -> None:
    """``bursts`` of copies of ``model``, each rolled back after ANALYZE (its figures
    survive a rollback: it writes them in place), then ANALYZE over the dead rows they
    left: the statistics count a few live rows over many pages, and know none of the
    accounts the table will hold next."""
    for _ in range(bursts):
        with get_engine().connect() as conn, conn.begin() as work:
            copy_transaction(conn, model, "txn_dead_")
            conn.execute(text("ANALYZE transactions"))
            work.rollback()
    with get_engine().begin() as conn:
        conn.execute(text("ANALYZE transactions"))
