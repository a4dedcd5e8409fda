"""A worker host cut off from the db host for 30 s mid-burst, then healed.

Every packet between worker1 and the db host (PostgreSQL, Redis and the broker) is dropped
(an nftables rule in the switch), while worker1 still reaches the PSPs and keeps running:
a partition, not a lost host. Its processes hold initiations when the cut comes (Paymaxis
answers in 1.5 s); they finish their PSP calls and cannot record them. The broker gives
up on their silent connections and redelivers what they held to worker2 and worker3, which
ask the PSP before calling it; PostgreSQL ends the cut-off backends and their locks. When
the path heals, worker1's processes, which never stopped, come back with whatever they
still meant to write: the locks (Redis, with a TTL) and the fences (each write checks the
status it moves from) keep them from doubling anything. All settles, once.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.bursts import settle_burst
from tests.chaos.world import record_result
from tests.fleet.fleet import RESULTS, FleetWorld
from tests.fleet.load import counts, run_burst

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(600)]

CUT_OFF = "worker1"
SECONDS, DEPOSITS_PER_S, WEBHOOKS_PER_S = 20, 6, 3
CUT_AT, CUT_FOR = 6.0, 30.0
SETTLE_AFTER_HEAL_S = 60.0
PSP_DELAY_MS = 1500


def test_a_worker_host_cut_off_from_the_db_for_30_s_doubles_nothing(fleet: FleetWorld):
    marks: dict[str, float] = {}
    held: dict[str, int] = {}

    def partition(timings: dict, began: float) -> None:
        held["at_cut"] = fleet.held_by(CUT_OFF)
        fleet.cut(CUT_OFF, "db")
        marks["cut"] = time.monotonic()
        timings["cut"] = marks["cut"] - began
        time.sleep(max(0.0, marks["cut"] + CUT_FOR - time.monotonic()))
        # Still running, all of it, when the path comes back.
        marks["running_at_heal"] = all(
            running
            for unit, running in fleet.status()["units"].items()
            if unit.startswith(f"{CUT_OFF}/")
        )
        fleet.heal(CUT_OFF, "db")
        marks["healed"] = time.monotonic()
        timings["healed"] = marks["healed"] - began

    try:
        burst = run_burst(
            fleet,
            slow_psp_ms=PSP_DELAY_MS,
            seconds=SECONDS,
            deposit_rate=DEPOSITS_PER_S,
            webhook_rate=WEBHOOKS_PER_S,
            fault_at=CUT_AT,
            fault=partition,
        )
    finally:
        fleet.heal()
    records, timings, summary, webhook_txns = burst
    settle_started = time.monotonic()
    budget = max(1.0, marks["healed"] + SETTLE_AFTER_HEAL_S - settle_started)
    settled = settle_burst(fleet, records, webhook_txns, timeout=budget)
    settled_after_heal = settle_started + settled["seconds_to_settle"] - marks["healed"]
    held["after_heal"] = fleet.held_by(CUT_OFF)

    figures = {
        **counts(records, settled),
        "cut_s": CUT_FOR,
        "held_by_cut_off_host_at_cut": held["at_cut"],
        "cut_off_host_running_at_heal": marks["running_at_heal"],
        "settled_s_after_heal": round(settled_after_heal, 1),
        "fault_s": {k: round(v, 1) for k, v in timings.items() if isinstance(v, float)},
        **summary,
    }
    record_result("worker_host_cut_off_from_db", to=RESULTS, **figures)
    print(figures)

    diagnosis = (figures, settled["lost_detail"], settled["doubled_detail"])
    # The fault hit: the cut-off host held work, and it never stopped running.
    assert held["at_cut"] > 0, diagnosis
    assert marks["running_at_heal"], (diagnosis, fleet.status()["units"])
    # The API never depended on the cut-off host.
    assert figures["failed"] == 0 and figures["accepted"] == figures["sent"], diagnosis
    assert figures["lost"] == 0 and figures["doubled"] == 0, diagnosis
    assert settled["ended_correct"] == settled["transactions_checked"], diagnosis
