"""Growth: the tables a busy service fills stay cheap to read and do not grow for ever."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update

from connxt.ids import random_id
from connxt.settings import get_settings
from storage import retention, status_writes
from storage.db import get_engine, session_scope
from storage.inquiry_schedule import claim_query
from storage.models import (
    IdempotencyKey,
    InboxMessage,
    Notification,
    NotificationAttempt,
    OutboxMessage,
)
from tests.support.flows import create_psp, stored_deposit, target
from tests.support.statistics import copy_transaction, stale_statistics
from workers.app import celery_app
from workers.reconcile import prune

OLD = datetime.now(UTC) - timedelta(days=400)


@pytest.fixture
def deposit(client, tenant):
    """A stored deposit, its PSP and tenant: (txn_id, psp_id, environment_id)."""
    issued, headers = tenant
    flow_target = target(client, headers, "Paymaxis")
    psp = create_psp(client, headers, flow_target, {"apiKey": "pmx_growth"})
    return stored_deposit(client, headers, psp, flow_target), psp["id"], issued.environment_id


def test_the_reconciliation_sweep_reads_its_partial_index(deposit):
    txn_id, _, _ = deposit
    statement, params = claim_query(limit=200)
    with get_engine().connect() as conn, conn.begin() as work:
        copy_transaction(conn, txn_id, "txn_growth_")
        conn.execute(text("ANALYZE transactions"))
        plan = "\n".join(row[0] for row in conn.execute(text("EXPLAIN " + statement), params))
        work.rollback()  # the rows and the statistics go
    assert "ix_transactions_due" in plan, plan
    assert "Seq Scan on transactions" not in plan, plan


def test_batch_transitions_find_their_rows_by_key_whatever_the_statistics_say(deposit):
    """The statistics are taken while the table holds few live rows over many dead ones (three
    bursts rolled back), then it grows twenty-thousand-fold: the worker's batch statements
    must still go by key, not scan the table, the open-transactions index or the listing
    index for each batch. (Before migration 0015 the planner took a whole scan of the
    listing index, its id a key column, for as cheap as the primary key.)"""
    txn_id, _, _ = deposit
    stale_statistics(txn_id)
    booking = {
        "ids": [txn_id, "txn_growth_7", "txn_growth_400"],
        "to_status": "INITIATED",
        "first_look": 60.0,
        "source": "worker",
        "reason": "plan",
        "step_from": ["CREATED"],
        "step_to": ["INITIATED"],
    }
    moves = [{"n": 0, "id": txn_id, "version": 0, "to_status": "PG_ACCEPTED", "steps": []}]
    with get_engine().connect() as conn, conn.begin() as work:
        conn.execute(text("ANALYZE transactions"))
        copy_transaction(conn, txn_id, "txn_growth_")
        plans = [
            "\n".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql, params))
            for sql, params in (
                (status_writes._START, booking),
                (status_writes._MOVE_MANY, {"moves": json.dumps(moves)}),
            )
        ]
        work.rollback()
    for plan in plans:
        assert "Seq Scan on transactions" not in plan, plan
        assert "ix_transactions_due" not in plan, plan
        assert "ix_transactions_tenant" not in plan, plan
        assert "transactions_pkey" in plan, plan


def test_no_index_of_the_transactions_table_duplicates_another():
    with get_engine().connect() as conn:
        indexes = conn.execute(
            text(
                "SELECT indexrelid::regclass::text, indkey::text,"
                " coalesce(pg_get_expr(indpred, indrelid), '')"
                " FROM pg_index WHERE indrelid = 'transactions'::regclass"
            )
        ).all()
    names = {name for name, _, _ in indexes}
    # Indexes no query reads, dropped (0003, 0007): each cost an entry per row and transition.
    assert not names & {"ix_transactions_status", "ix_transactions_open"}, names
    shapes = [(columns, predicate) for _, columns, predicate in indexes]
    assert len(shapes) == len(set(shapes)), indexes


def _age(model, column, row_filter) -> None:
    with session_scope() as session:
        session.execute(update(model).where(row_filter).values({column: OLD}))


def _count(model, *where) -> int:
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(model).where(*where))


def test_retention_deletes_old_rows_in_small_batches_and_keeps_the_rest(deposit):
    txn_id, psp_id, environment_id = deposit
    with session_scope() as session:
        notification = Notification(
            id=random_id("ntf"),
            txn_id=txn_id,
            environment_id=environment_id,
            event_type="transaction.success",
            status="DELIVERED",
        )
        session.add(notification)
        session.flush()
        for i in range(5):
            session.add(NotificationAttempt(notification_id=notification.id, url=f"old-{i}"))
        session.add(NotificationAttempt(notification_id=notification.id, url="recent"))
        now = datetime.now(UTC)
        for key, processed, parked in (
            ("old-done", now, None),
            ("old-waiting", None, None),
            ("old-parked", None, now),
            ("recent-done", now, None),
        ):
            session.add(
                InboxMessage(
                    psp_id=psp_id,
                    event_key=key,
                    txn_id=txn_id,
                    headers={},
                    body=b"{}",
                    processed_at=processed,
                    parked_at=parked,
                )
            )
        for key in ("old-1", "old-2", "old-3", "recent"):
            session.add(IdempotencyKey(environment_id=environment_id, key=key, request_sha256="0"))
        session.add(OutboxMessage(task="x", args={}, parked_at=now))
    _age(NotificationAttempt, "created_at", NotificationAttempt.url.like("old-%"))
    _age(InboxMessage, "received_at", InboxMessage.event_key.like("old-%"))
    _age(InboxMessage, "processed_at", InboxMessage.event_key == "old-done")
    _age(IdempotencyKey, "created_at", IdempotencyKey.key.like("old-%"))
    _age(OutboxMessage, "created_at", OutboxMessage.task == "x")

    small = get_settings().model_copy(update={"retention_batch_rows": 2})
    attempts = next(r for r in retention.RULES if r.table == "notification_attempts")
    assert retention.prune_batch(get_engine(), small, attempts) == 2  # one small batch
    assert _count(NotificationAttempt) == 4

    assert retention.prune(get_engine(), small, budget_seconds=30) == {
        "personal_data_redacted": 0,  # the one transaction is open
        "inbox": 1,
        "idempotency_keys": 3,
        "notification_attempts": 3,
    }
    with session_scope() as session:
        assert session.scalars(select(NotificationAttempt.url)).all() == ["recent"]
        assert sorted(session.scalars(select(InboxMessage.event_key))) == [
            "old-parked",
            "old-waiting",
            "recent-done",
        ]
        assert session.scalars(select(IdempotencyKey.key)).all() == ["recent"]
    assert _count(OutboxMessage, OutboxMessage.task == "x") == 1  # parked: for an operator
    assert _count(Notification) == 1  # the record of what the merchant was told


def test_beat_runs_retention_on_its_interval(deposit):
    (entry,) = [e for e in celery_app.conf.beat_schedule.values() if e["task"] == "reconcile.prune"]
    assert entry["schedule"] == get_settings().retention_interval_seconds
    # The sweep itself, past its once-per-slot guard: the session's beat may have run it in
    # this slot already, and the guard would answer {} for the skip.
    assert set(prune.run.__wrapped__()) == {
        "personal_data_redacted",
        "inbox",
        "idempotency_keys",
        "notification_attempts",
    }
