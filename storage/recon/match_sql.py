"""The statement that matches a run's staged report (storage.recon.matching): one pass.

Its parts, in order:

- ``by_reference``: each line's transaction by our reference (the primary key), of this
  PSP account; ``unresolved``/``by_payment``: the few lines it names none of, looked for by
  the PSP's payment id among the account's transactions of the last month.
- ``settled_before``: transactions made before this day whose line in this report comes
  after their settlement in an earlier day's report (a duplicate). Read only when such
  transactions exist (most lines are of the day's own payments), from the earlier days'
  lines in their runs: the lines have no index beyond their key, which is what lets a
  million of them be written in seconds.
- ``classed``: every line's class, the window numbering each transaction's lines.
- ``no_line``: the day's SUCCESSes no line settles; ``later``: those a later day's report
  settled (once that day was reconciled), read as ``settled_before`` is; the rest pending
  inside the window, else missing at the PSP.
- What is written: the class and transaction of the lines that are not what they were
  staged as (storage.recon.matching: a match by reference); transactions whose result is
  not the class of their one line in this report (``recon_txn_results``: unsettled ones,
  settled another day, settled twice); chargebacks and fee adjustments; differences, each
  with what the run it replaces saw of it (since when, what was done).
- What is answered: the summary's counts and sums.

Joins of the million-row parts are hashed or merged (a FULL JOIN must be), or probe a key
once per line (``by_reference``): no plan walks one side once per row of the other, however
stale the statistics of a table just loaded.
"""

from __future__ import annotations

_ADJUSTMENT = "type IN ('chargeback', 'fee_adjustment')"
_SETTLING = "type IN ('payment', 'refund', 'payout')"

# Each line's verdict, given its transaction (``txn_id`` NULL: none found) and how many
# lines of that transaction came before it in this report (``nth``).
_VERDICT = """
CASE
  WHEN l.txn_id IS NULL THEN
    CASE WHEN l.adjustment AND l.psp_payment_id IS NULL AND l.reference IS NULL
      THEN 'matched' ELSE 'missing_at_connxt' END
  WHEN l.adjustment THEN 'matched'
  WHEN l.nth > 1 THEN 'duplicate'
  WHEN l.txn_created < %(day_start)s
    AND l.txn_id IN (SELECT txn_id FROM settled_before) THEN 'duplicate'
  WHEN l.status <> 'SUCCESS' THEN 'status_mismatch'
  WHEN l.gross <> l.txn_amount OR l.currency <> l.txn_currency
    OR l.type <> CASE l.action WHEN 'DEPOSIT' THEN 'payment' WHEN 'WITHDRAW' THEN 'payout'
                               ELSE 'refund' END
    THEN 'amount_mismatch'
  ELSE 'matched'
END"""

MATCH = f"""
WITH by_reference AS MATERIALIZED (
  SELECT s.line_no, s.psp_payment_id, s.reference, s.type, s.gross, s.fee, s.net, s.currency,
         s.settled_at, s.txn_id AS staged_txn, s.{_ADJUSTMENT} AS adjustment,
         t.id AS txn_id, t.status, t.amount AS txn_amount, t.currency AS txn_currency,
         t.action, t.created_at AS txn_created
  FROM recon_lines s
  -- One probe of the primary key per line (OFFSET 0 keeps the planner from folding this
  -- into a join it plans by its estimates): a run's lines are new to the statistics, and
  -- an account's transactions may be too, and with both taken for a few rows the planner
  -- walked the transactions once per line (41 s for 40,000 lines instead of 3 s).
  LEFT JOIN LATERAL (
    SELECT id, status, amount, currency, action, created_at FROM transactions
    WHERE id = s.txn_id AND psp_id = %(psp)s OFFSET 0
  ) t ON true
  WHERE s.run_id = %(run)s
), unresolved AS MATERIALIZED (
  SELECT line_no, psp_payment_id, adjustment FROM by_reference
  WHERE txn_id IS NULL AND psp_payment_id IS NOT NULL
), by_payment AS MATERIALIZED (
  SELECT DISTINCT ON (u.line_no) u.line_no, u.adjustment, t.id, t.status, t.amount, t.currency,
         t.action, t.created_at
  FROM unresolved u JOIN transactions t ON t.psp_txn_id = u.psp_payment_id
  WHERE t.environment_id = %(env)s AND t.psp_id = %(psp)s
    AND t.created_at >= %(payment_id_from)s AND t.created_at < %(day_end)s
  ORDER BY u.line_no, t.created_at DESC
), early AS MATERIALIZED (
  SELECT txn_id, txn_created FROM by_reference
  WHERE txn_created < %(day_start)s AND NOT adjustment
  UNION
  SELECT id, created_at FROM by_payment WHERE created_at < %(day_start)s AND NOT adjustment
), settled_before AS (
  SELECT DISTINCT e.txn_id
  FROM recon_days rd
  JOIN recon_lines e ON e.run_id = rd.current_run_id
  JOIN early x ON x.txn_id = e.txn_id
  WHERE EXISTS (SELECT 1 FROM early)
    AND rd.psp_id = %(psp)s AND rd.day < %(day)s AND rd.day >= %(first_earlier_day)s
    AND rd.day >= (SELECT CAST(min(txn_created) AT TIME ZONE 'UTC' AS date) - 1 FROM early)
    AND e.{_SETTLING} AND e.class <> 'duplicate'
), found AS (
  SELECT r.line_no, r.psp_payment_id, r.reference, r.type, r.adjustment, r.gross, r.fee, r.net,
         r.currency, r.settled_at, r.staged_txn, coalesce(r.txn_id, b.id) AS txn_id,
         coalesce(r.status, b.status) AS status,
         coalesce(r.txn_amount, b.amount) AS txn_amount,
         coalesce(r.txn_currency, b.currency) AS txn_currency,
         coalesce(r.action, b.action) AS action,
         coalesce(r.txn_created, b.created_at) AS txn_created
  FROM by_reference r LEFT JOIN by_payment b ON b.line_no = r.line_no
), classed AS MATERIALIZED (
  SELECT l.*, {_VERDICT} AS class
  FROM (SELECT f.*,
               row_number() OVER (PARTITION BY f.txn_id, f.adjustment ORDER BY f.line_no) AS nth,
               count(*) OVER (PARTITION BY f.txn_id, f.adjustment) AS times
        FROM found f) l
), corrected AS (
  -- The lines written as matching by reference that do not: few, each by its key.
  UPDATE recon_lines l SET txn_id = c.txn_id, class = c.class
  FROM (SELECT line_no, txn_id, class FROM classed
        WHERE class <> 'matched' OR txn_id IS DISTINCT FROM staged_txn) c
  WHERE l.run_id = %(run)s AND l.line_no = c.line_no
), adjustments AS (
  INSERT INTO recon_adjustments (run_id, line_no, type, txn_id, psp_payment_id, gross, fee, net,
                                 currency, settled_at)
  SELECT %(run)s, line_no, type, txn_id, psp_payment_id, gross, fee, net, currency, settled_at
  FROM classed WHERE adjustment
), settling AS MATERIALIZED (
  -- Each transaction this report settles, once: as its line says, or settled twice.
  SELECT txn_id, line_no, CASE WHEN times > 1 THEN 'duplicate' ELSE class END AS class
  FROM classed WHERE nth = 1 AND txn_id IS NOT NULL AND NOT adjustment
), day_set AS (
  SELECT id, created_at, status, amount, currency, action FROM transactions
  WHERE environment_id = %(env)s AND created_at >= %(day_start)s AND created_at < %(day_end)s
    AND psp_id = %(psp)s AND status = 'SUCCESS'
), no_line AS MATERIALIZED (
  SELECT d.* FROM settling s FULL JOIN day_set d ON d.id = s.txn_id WHERE s.txn_id IS NULL
), later AS (
  SELECT DISTINCT ON (e.txn_id) e.txn_id, e.class, e.line_no, rd.day
  FROM recon_days rd
  JOIN recon_lines e ON e.run_id = rd.current_run_id
  JOIN no_line n ON n.id = e.txn_id
  WHERE EXISTS (SELECT 1 FROM no_line)
    AND rd.psp_id = %(psp)s AND rd.day > %(day)s AND rd.day <= %(last_later_day)s
    AND e.{_SETTLING}
  ORDER BY e.txn_id, rd.day, e.line_no
), unsettled AS MATERIALIZED (
  SELECT n.id AS txn_id,
         CASE WHEN l.day IS NOT NULL THEN l.class
              WHEN n.created_at > %(pending_after)s THEN 'pending'
              ELSE 'missing_at_psp' END AS class,
         l.line_no, l.day AS settled_day,
         jsonb_build_object('status', n.status, 'amount', n.amount::text,
                            'currency', n.currency, 'action', n.action,
                            'createdAt', n.created_at) AS ours
  FROM no_line n LEFT JOIN later l ON l.txn_id = n.id
), stored_txns AS (
  INSERT INTO recon_txn_results (run_id, txn_id, class, line_no, settled_day)
  SELECT %(run)s, txn_id, class, line_no, settled_day FROM unsettled
  UNION ALL
  SELECT %(run)s, txn_id, class, line_no, %(day)s FROM settling WHERE class = 'duplicate'
), found_differences AS (
  SELECT class,
         'line:' || type || ':' || coalesce(psp_payment_id, '') || ':' || coalesce(reference, '')
           || ':' || row_number() OVER (PARTITION BY type, psp_payment_id, reference
                                        ORDER BY line_no) AS subject,
         txn_id, line_no,
         CASE WHEN txn_id IS NOT NULL THEN jsonb_build_object(
           'status', status, 'amount', txn_amount::text, 'currency', txn_currency,
           'action', action) END AS ours,
         jsonb_build_object(
           'type', type, 'pspPaymentId', psp_payment_id, 'reference', reference,
           'gross', gross::text, 'fee', fee::text, 'net', net::text, 'currency', currency,
           'settledAt', settled_at) AS theirs
  FROM classed WHERE class <> 'matched'
  UNION ALL
  SELECT class, 'txn:' || txn_id, txn_id, NULL, ours, NULL
  FROM unsettled WHERE class IN ('pending', 'missing_at_psp')
), differences AS (
  INSERT INTO recon_differences (run_id, brand_id, environment_id, psp_id, day, class, subject,
                                 txn_id, line_no, ours, theirs, first_seen_at, action)
  -- Seen before by the run this one replaces: since when, and what was done about it.
  SELECT %(run)s, %(brand)s, %(env)s, %(psp)s, %(day)s, d.class, d.subject, d.txn_id,
         d.line_no, d.ours, d.theirs, coalesce(p.first_seen_at, now()), p.action
  FROM found_differences d
  LEFT JOIN recon_differences p ON p.run_id = %(previous)s AND p.subject = d.subject
  RETURNING class
)
SELECT
  (SELECT coalesce(jsonb_agg(a), '[]') FROM (
     SELECT class, type, currency, count(*) AS count, sum(gross)::text AS gross,
            sum(fee)::text AS fee, sum(net)::text AS net
     FROM classed GROUP BY class, type, currency ORDER BY class, type, currency) a) AS lines,
  (SELECT coalesce(jsonb_object_agg(class, n), '{{}}') FROM (
     SELECT class, count(*) AS n FROM (
       SELECT class FROM settling UNION ALL SELECT class FROM unsettled) t
     GROUP BY class) b) AS transactions,
  (SELECT coalesce(jsonb_object_agg(class, n), '{{}}')
   FROM (SELECT class, count(*) AS n FROM differences GROUP BY class) c) AS differences
"""
