"""Restart PostgreSQL in the middle of a burst of deposits and webhooks.

The world has its own PostgreSQL cluster (initdb'd for this module, on a spare port):
stopping it disturbs nobody else. While it is down, requests must be refused with a 503
in the envelope within a few seconds (never a 500, never a hang); everything accepted
before or after must complete, once, with one PSP payment.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.bursts import (
    accepted_deposits,
    burst_summary,
    retry_refused,
    run_burst,
    settle_burst,
)
from tests.chaos.world import World, record_result

# A server restarted under a burst: run alone (deploy/test.sh), whose timing nothing disturbs.
pytestmark = pytest.mark.chaos

DOWN_SECONDS = 4.0
REFUSAL_SECONDS = 10.0  # a refusal while the database is down must come this fast


@pytest.fixture(scope="module")
def world(world_factory) -> World:
    return world_factory("pg", private_postgres=True)


def test_postgres_restart_during_a_burst_answers_503_and_completes_the_rest(world: World):
    webhook_txns = accepted_deposits(world, 8)

    def restart_postgres(timings: dict[str, float], began: float) -> None:
        world.pg.stop("fast")
        timings["pg_down"] = time.monotonic() - began
        time.sleep(DOWN_SECONDS)
        world.pg.start()
        timings["pg_up"] = time.monotonic() - began

    records, timings = run_burst(
        world, seconds=11, fault_at=3, fault=restart_postgres, webhook_txns=webhook_txns
    )
    summary = burst_summary(records)
    during = [r for r in records if timings["pg_down"] - 0.5 <= r.started <= timings["pg_up"]]
    refused = [r for r in records if r.status is not None and not r.accepted]
    slow_refusals = [r for r in refused if r.elapsed > REFUSAL_SECONDS]
    retry_refused(world, records)
    settled = settle_burst(world, records, webhook_txns, timeout=75)
    figures = {
        "hit": len(during),
        **{k: settled[k] for k in ("ended_correct", "lost", "doubled")},
        "fault_window_s": [round(timings["pg_down"], 1), round(timings["pg_up"], 1)],
        "refused_during_outage": sum(1 for r in during if r.status and not r.accepted),
        **summary,
        **{k: v for k, v in settled.items() if k not in ("ended_correct", "lost", "doubled")},
    }
    record_result("postgres_restart_during_burst", **figures)

    diagnosis = (figures, world.logs("api", world.worker_name, "beat", tail=80))
    assert summary["deposits_accepted"] > 0, diagnosis
    assert figures["refused_during_outage"] > 0, ("the outage refused nothing", diagnosis)
    assert not summary["client_errors_or_hangs"], diagnosis
    assert set(summary["refused_by_status"]) <= {"503"}, diagnosis
    assert summary["refused_outside_envelope"] == 0, diagnosis
    assert not slow_refusals, ([vars(r) for r in slow_refusals], diagnosis)
    assert settled["lost"] == 0 and settled["doubled"] == 0, diagnosis
    assert settled["ended_correct"] == settled["transactions_checked"], diagnosis
    # A refusal must be clean: the merchant's retry with the same Idempotency-Key, once the
    # database is back, gets the answer (a new transaction, or the stored one replayed).
    assert set(settled["merchant_retries_final"]) <= {"200", "202"}, diagnosis
