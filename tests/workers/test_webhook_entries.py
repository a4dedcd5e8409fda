"""Every way into webhook handling ends the same: the same stored webhooks, in the same
order, fed through each entry point (the task's set, the set whose items do not name their
transaction, the inbox re-drive, ``connxt webhooks replay``, and sets of one under a lock
held by the caller, as a failed set falls back to) leave the same statuses, events,
reviews, inbox marks, inquiries and merchant notifications.

Each entry point gets a world of its own (its own deposits and stored webhooks), built
from the same scenario, inside the test's one rolled-back transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from commands.operations import replay_inbox
from connxt import tasks
from connxt.settings import get_settings
from state_machine import Status
from storage.db import session_scope
from tests.support.rollback import Ledger
from workers.app import celery_app
from workers.item_threads import Item
from workers.locks import transaction_lock
from workers.reconcile import redrive_inbox
from workers.webhooks import apply_held, apply_webhooks

pytestmark = pytest.mark.usefixtures("rolled_back")

STATUSES = [Status.CREATED, Status.INITIATED, Status.PG_ACCEPTED, Status.SUCCESS, Status.FAILED]
# Paymaxis states: accepted, completed, declined (later: failed), cancelled, and one unknown.
STATES = ["PENDING", "COMPLETED", "DECLINED", "CANCELLED", "ON_HOLD"]
# Our money, other money, or none stated.
AMOUNTS = ["10.00", "5.00", None]
# How a webhook arrives: as the PSP signs it, with a signature that does not match, as a
# body that is not a Paymaxis notification, or naming another of our transactions than the
# one it was stored for.
KINDS = ["signed", "signed", "signed", "bad_signature", "garbage", "foreign"]


@dataclass(frozen=True)
class Hook:
    txn: int  # index of the deposit it is stored for
    state: str
    amount: str | None
    kind: str


@dataclass(frozen=True)
class Scenario:
    statuses: tuple[Status, ...]
    hooks: tuple[Hook, ...]
    signing: bool  # False: the account has no signing key, every webhook is a hint


def scenarios() -> st.SearchStrategy[Scenario]:
    def with_hooks(statuses: list[Status]) -> st.SearchStrategy[Scenario]:
        hook = st.builds(
            Hook,
            st.integers(0, len(statuses) - 1),
            st.sampled_from(STATES),
            st.sampled_from(AMOUNTS),
            st.sampled_from(KINDS),
        )
        return st.builds(
            Scenario,
            st.just(tuple(statuses)),
            st.lists(hook, min_size=1, max_size=6).map(tuple),
            st.sampled_from([True, True, True, False]),
        )

    return st.lists(st.sampled_from(STATUSES), min_size=1, max_size=3).flatmap(with_hooks)


@dataclass
class World:
    txn_ids: list[str]
    inbox_ids: list[int]


def build(scenario: Scenario, ledgers: dict[bool, Ledger]) -> World:
    """The scenario's deposits and stored webhooks, new ones, on the account with or
    without a signing key (one of each for the whole test: opening a tenant costs more
    than the rest of a world)."""
    if scenario.signing not in ledgers:
        ledgers[scenario.signing] = Ledger.open(signing=scenario.signing)
    ledger = ledgers[scenario.signing]
    txn_ids = [ledger.deposit(status) for status in scenario.statuses]
    inbox_ids = []
    for hook in scenario.hooks:
        txn_id = txn_ids[hook.txn]
        names = txn_ids[(hook.txn + 1) % len(txn_ids)] if hook.kind == "foreign" else None
        if names == txn_id:
            names = "txn_of_nobody"
        inbox_ids.append(
            ledger.webhook(
                txn_id,
                hook.state,
                hook.amount,
                signed=hook.kind != "bad_signature",
                names=names,
                body=b"<html>not json</html>" if hook.kind == "garbage" else None,
            )
        )
    return World(txn_ids, inbox_ids)


def until_done(items: list[Item]) -> None:
    """The task's body, and its retries, until nothing is left to try again (what Celery's
    retry would send: the items handed back, in their order)."""
    for _ in range(len(items) + 2):
        if not items:
            return
        items = apply_webhooks(items)
    raise AssertionError(f"still to try again: {items}")


def as_set(world: World) -> None:
    """What the ingress sends: each item names its transaction."""
    pairs = zip(world.inbox_ids, stored_for(world), strict=True)
    until_done([{"inbox_id": i, "txn_id": t} for i, t in pairs])


def unnamed(world: World) -> None:
    """Items that do not name their transaction: the task reads it."""
    until_done([{"inbox_id": i} for i in world.inbox_ids])


def redriven(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The inbox re-drive, as beat runs it (its once-per-slot guard aside): what it would
    send to the broker is handed to the task's body."""
    sent: list[dict] = []
    monkeypatch.setattr(get_settings(), "inbox_redrive_after_seconds", 0)
    monkeypatch.setattr(
        celery_app, "send_task", lambda name, kwargs, **_: sent.append({"name": name, **kwargs})
    )
    redrive_inbox.run.__wrapped__()
    items = [item for message in sent for item in message["batch"]]
    assert {message["name"] for message in sent} == {tasks.WEBHOOK}
    assert [item["inbox_id"] for item in items] == world.inbox_ids
    until_done(items)


def replayed(world: World) -> None:
    """``connxt webhooks replay`` for each, in order."""
    for inbox_id in world.inbox_ids:
        assert replay_inbox(inbox_id) == 0


def one_at_a_time(world: World) -> None:
    """Sets of one under the lock the caller holds, as a set that failed falls back to."""
    for inbox_id, txn_id in zip(world.inbox_ids, stored_for(world), strict=True):
        with transaction_lock(txn_id):
            apply_held([{"inbox_id": inbox_id, "txn_id": txn_id}])


def stored_for(world: World) -> list[str]:
    with session_scope() as session:
        rows = session.execute(
            text("SELECT id, txn_id FROM inbox WHERE id = ANY(:ids)"), {"ids": world.inbox_ids}
        )
        named = dict(rows.all())
    return [named[i] for i in world.inbox_ids]


def outcome(world: World) -> dict:
    """Everything the handling left behind, with our ids replaced by their positions."""
    index = {txn_id: f"txn{n}" for n, txn_id in enumerate(world.txn_ids)}
    ids = world.txn_ids
    with session_scope() as session:

        def rows(sql: str, **params) -> list[tuple]:
            return [tuple(row) for row in session.execute(text(sql), params)]

        def labelled(value):
            """Our ids inside a value (a review's detail names the PSP's payment, pmx_<id>)
            replaced by their positions, as the ids themselves are."""
            text_form = json.dumps(value, sort_keys=True, default=str)
            for txn_id, label in index.items():
                text_form = text_form.replace(txn_id, label)
            return json.loads(text_form)

        return {
            "transactions": [
                (index[r[0]], *r[1:5], labelled(r[5]), *r[6:])
                for r in rows(
                    "SELECT id, status, version, psp_txn_id IS NOT NULL, review_reason,"
                    " review_detail, error, inquiry_requested_at IS NOT NULL"
                    " FROM transactions WHERE id = ANY(:ids) ORDER BY array_position(:ids, id)",
                    ids=ids,
                )
            ],
            "events": [
                (index[r[0]], *r[1:])
                for r in rows(
                    "SELECT txn_id, from_status, to_status, source, reason FROM transaction_events"
                    " WHERE txn_id = ANY(:ids) ORDER BY array_position(:ids, txn_id), id",
                    ids=ids,
                )
            ],
            "inbox": rows(
                "SELECT result, attempts, processed_at IS NOT NULL, parked_at IS NOT NULL"
                " FROM inbox WHERE id = ANY(:ids) ORDER BY id",
                ids=world.inbox_ids,
            ),
            "notifications": [
                (index[r[0]], *r[1:])
                for r in rows(
                    "SELECT txn_id, event_type, status FROM notifications"
                    " WHERE txn_id = ANY(:ids) ORDER BY array_position(:ids, txn_id), event_type",
                    ids=ids,
                )
            ],
            "outbox": sorted(
                (index[r[0]], *r[1:])
                for r in rows(
                    "SELECT args->>'txn_id', task, queue FROM outbox"
                    " WHERE args->>'txn_id' = ANY(:ids)",
                    ids=ids,
                )
            ),
        }


LEDGERS: dict[bool, Ledger] = {}


@pytest.fixture(autouse=True)
def _fresh_ledgers():
    # The accounts live in the test's rolled-back transaction: none outlives it.
    LEDGERS.clear()
    yield
    LEDGERS.clear()


@settings(
    database=None,  # no .hypothesis/ folder in the repository
    max_examples=30,
    deadline=None,
    # Each example builds worlds of its own (new deposits): nothing carries over.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(scenario=scenarios())
def test_every_entry_point_leaves_the_same_outcome(scenario: Scenario, monkeypatch, capsys):
    entries: dict[str, Callable[[World], None]] = {
        "set": as_set,
        "unnamed": unnamed,
        "re-drive": lambda world: redriven(world, monkeypatch),
        "replay": replayed,
        "one at a time": one_at_a_time,
    }
    outcomes = {}
    for name, entry in entries.items():
        world = build(scenario, LEDGERS)
        entry(world)
        outcomes[name] = outcome(world)
    capsys.readouterr()  # the replay command's lines
    first = outcomes["set"]
    # Every webhook was handled: marked done or parked, none left for a re-drive.
    assert all(done or parked for *_, done, parked in first["inbox"]), first["inbox"]
    for name, found in outcomes.items():
        assert found == first, f"{name} differs from the set path"
