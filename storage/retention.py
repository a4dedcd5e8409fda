"""Retention: rows that have served their purpose are deleted after a number of days.

What is kept, and why:
- transactions, their events and notifications: the record of what happened to money
  (the customer's personal data in them is redacted after ``pii_retention_days``:
  storage.personal_data);
- the outbox deletes a row as soon as its message left; a parked row stays until an
  operator looks at it (it is work that was never done);
- the inbox keeps a PSP notification until it is processed and ``inbox_retention_days``
  old: a duplicate of it arriving later is stored again and applied as a no-op (the state
  machine ignores what a transaction already knows). Parked ones stay;
- idempotency keys answer retries for ``idempotency_retention_days``, far longer than any
  client retries a request;
- notification attempts (one row per try at a merchant's URL) for
  ``notification_attempts_retention_days``.

Each table is pruned in small batches, one short transaction each, locking only rows
nobody else holds (``SKIP LOCKED``): the service's own writes never wait on retention.
Each query reads an index made for it (0005_operations).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import Engine

from connxt.settings import Settings
from storage.personal_data import redact_due


@dataclass(frozen=True)
class Rule:
    table: str
    days_setting: str  # the Settings field holding the retention in days
    delete: str  # one batch: %(cutoff_days)s and %(batch)s; rowcount is what it deleted


RULES = (
    Rule(
        "inbox",
        "inbox_retention_days",
        """DELETE FROM inbox WHERE id IN (
             SELECT id FROM inbox
             WHERE processed_at < now() - make_interval(days => %(cutoff_days)s)
             ORDER BY processed_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED)""",
    ),
    Rule(
        "idempotency_keys",
        "idempotency_retention_days",
        """DELETE FROM idempotency_keys WHERE (environment_id, key) IN (
             SELECT environment_id, key FROM idempotency_keys
             WHERE created_at < now() - make_interval(days => %(cutoff_days)s)
             ORDER BY created_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED)""",
    ),
    Rule(
        "notification_attempts",
        "notification_attempts_retention_days",
        """DELETE FROM notification_attempts WHERE id IN (
             SELECT id FROM notification_attempts
             WHERE created_at < now() - make_interval(days => %(cutoff_days)s)
             ORDER BY created_at LIMIT %(batch)s FOR UPDATE SKIP LOCKED)""",
    ),
)


def prune_batch(engine: Engine, settings: Settings, rule: Rule) -> int:
    """One batch of one table, in a transaction of its own; the rows deleted."""
    params = {
        "cutoff_days": int(getattr(settings, rule.days_setting)),
        "batch": settings.retention_batch_rows,
    }
    with engine.begin() as conn:
        return conn.exec_driver_sql(rule.delete, params).rowcount


def prune(engine: Engine, settings: Settings, budget_seconds: float) -> dict[str, int]:
    """Delete what each rule lets go, batch by batch, until none is left or the time
    budget is spent (the next run goes on); rows deleted per table, and transactions whose
    customer's personal data was redacted (storage.personal_data)."""
    deadline = time.monotonic() + budget_seconds
    deleted = dict.fromkeys((rule.table for rule in RULES), 0)
    # Personal data first: it has a promise to keep (CONNXT_PII_RETENTION_DAYS), the rest
    # only takes room.
    deleted["personal_data_redacted"] = redact_due(engine, settings, deadline)
    for rule in RULES:
        while time.monotonic() < deadline:
            count = prune_batch(engine, settings, rule)
            deleted[rule.table] += count
            if count < settings.retention_batch_rows:
                break
    return deleted
