"""Capacity, measured on the fleet: what one deposit and one webhook cost each kind of
process, and PostgreSQL.

Three phases at known rates on a whole, quiet fleet (the deposits earlier tests left open
are completed first: beat's status sweeps would ask the PSP about them meanwhile, in bursts
that blur the baseline): the fleet idle, then deposits only (half of them `Prefer:
respond-async`, each initiated at the PSP), then the PSP's COMPLETED webhook for each of
them (each a status change and a merchant notification).
Each phase ends once everything it started has ended (PG_ACCEPTED; SUCCESS and notified),
so a phase's cost is all of its items' work. Between snapshots the fleet's CPU time per
kind of process is read from /proc (tests/fleet/capacity.py) and the database's commits and
write-ahead log from pg_stat_database and pg_current_wal_lsn(); the idle fleet's cost for
as long (health checks, scrapes, beat's sweeps, the relay's polls) is taken off. The
figures go to tests/fleet/capacity.json, which the README's sizing table is written from.
CPU time is the processes' own, so other work on the machine slows the phases without
changing the figures much (a busy machine's caches make them a little higher).
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.chaos.bursts import merchant_deliveries
from tests.fleet.capacity import Snapshot, per_item, phase_cost, snapshot
from tests.fleet.fleet import FleetWorld
from tests.fleet.load import run_load, send_webhooks

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(600)]

CAPACITY = Path(__file__).with_name("capacity.json")
IDLE_S = 20
# Deposits, then webhooks, this many a second (CONNXT_FLEET_CAPACITY_RATE to measure at
# another rate), for DEPOSIT_S seconds each.
DEPOSITS_PER_S = WEBHOOKS_PER_S = int(os.environ.get("CONNXT_FLEET_CAPACITY_RATE", "8"))
DEPOSIT_S = 20
QUIET_S = 3  # after a phase's last item ends: the last commits' statistics are flushed
CLOSING_PER_S = 40  # the earlier tests' open deposits completed before measuring


class CountedQueries:
    """The test's own queries (each one commit, on a connection of its own), counted so
    that a phase's commits are the fleet's alone."""

    def __init__(self, world: FleetWorld):
        self.world, self.count = world, 0

    def __call__(self, sql: str, *params):
        self.count += 1
        return FleetWorld.query(self.world, sql, *params)

    def snapshot(self) -> Snapshot:
        """The phase's first snapshot: the count starts with its query."""
        self.count = 0
        return snapshot(self.world, time.monotonic())

    def cost_since(self, before: Snapshot) -> dict:
        """The phase's cost, less the test's own commits in it: every query since the
        first snapshot's (itself included), but not the last snapshot's own."""
        after = snapshot(self.world, time.monotonic())
        return phase_cost(before, after, own_queries=self.count - 1)


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(1)


def quiet(fleet: FleetWorld) -> int:
    """Complete what earlier tests left open: their PG_ACCEPTED deposits are what beat's
    status sweeps ask the PSP about (1 and 5 minutes after each was made), in bursts that
    would blur the idle baseline. Each gets its PSP's COMPLETED webhook, then the fleet
    is left to finish. How many there were."""
    open_ids = [
        row[0]
        for row in fleet.query("SELECT id FROM transactions WHERE status = %s", "PG_ACCEPTED")
    ]
    if open_ids:
        answers = send_webhooks(fleet, open_ids, CLOSING_PER_S)
        closed = [r.key for r in answers if r.accepted]

        def ended() -> bool:
            statuses = fleet.statuses(closed)
            return all(statuses.get(t) == "SUCCESS" for t in closed)

        wait_for(ended, 90, "the earlier tests' open deposits SUCCESS")
    time.sleep(QUIET_S * 3)  # their notifications sent, the queues empty
    return len(open_ids)


def test_capacity_per_deposit_and_per_webhook(fleet: FleetWorld):
    closed_first = quiet(fleet)
    own = CountedQueries(fleet)
    fleet.query = own  # every query the phases make is counted, and taken off

    idle_from = own.snapshot()
    time.sleep(IDLE_S)
    idle = own.cost_since(idle_from)

    deposits_from = own.snapshot()
    records, _ = run_load(
        fleet, seconds=DEPOSIT_S, deposit_rate=DEPOSITS_PER_S, webhook_rate=0, senders=16
    )
    accepted = [r.txn_id for r in records if r.accepted]
    assert len(accepted) == len(records) == DEPOSIT_S * DEPOSITS_PER_S, records[:3]

    def initiated() -> bool:
        statuses = fleet.statuses(accepted)
        return all(statuses.get(t) == "PG_ACCEPTED" for t in accepted)

    wait_for(initiated, 60, "every deposit PG_ACCEPTED")
    time.sleep(QUIET_S)
    deposits = own.cost_since(deposits_from)

    webhooks_from = own.snapshot()
    answers = send_webhooks(fleet, accepted, WEBHOOKS_PER_S)
    assert all(r.accepted for r in answers), [r for r in answers if not r.accepted][:3]

    def succeeded() -> bool:
        statuses = fleet.statuses(accepted)
        return all(statuses.get(t) == "SUCCESS" for t in accepted)

    def notified() -> bool:
        return all(n["received"] >= 1 for n in merchant_deliveries(fleet, accepted).values())

    wait_for(succeeded, 60, "every deposit SUCCESS")
    wait_for(notified, 60, "every merchant notification delivered")
    time.sleep(QUIET_S)
    webhooks = own.cost_since(webhooks_from)
    del fleet.query  # the class's own again

    per_deposit = per_item(deposits, idle, len(accepted))
    per_webhook = per_item(webhooks, idle, len(accepted))
    figures = {
        "recordedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "fleet": "2 api hosts, 3 worker hosts (a process per lane), beat; one db host",
        "phases": {
            "before": f"{closed_first} open deposits of earlier tests completed first",
            "idle": {"seconds": round(idle["seconds"], 1)},
            "deposits": {
                "count": len(accepted),
                "rate_per_s": DEPOSITS_PER_S,
                "seconds": round(deposits["seconds"], 1),
            },
            "webhooks": {
                "count": len(accepted),
                "rate_per_s": WEBHOOKS_PER_S,
                "seconds": round(webhooks["seconds"], 1),
            },
        },
        "idle_cpu_ms_per_s": {
            kind: round(1000 * cpu / idle["seconds"], 2) for kind, cpu in idle["cpu_s"].items()
        },
        "idle_commits_per_s": round(idle["commits"] / idle["seconds"], 2),
        "per_deposit": per_deposit,
        "per_webhook": per_webhook,
    }
    CAPACITY.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(json.dumps(figures, indent=2, sort_keys=True))

    # The measurement saw the work: the api, the PSP lane and PostgreSQL each spent time
    # on every deposit, every deposit committed and wrote to the log.
    assert per_deposit["cpu_ms"]["api"] > 0, figures
    assert per_deposit["cpu_ms"]["lane psp.paymaxis"] > 0, figures
    assert per_deposit["cpu_ms"]["postgres"] > 0, figures
    assert per_deposit["commits"] >= 1 and per_deposit["wal_bytes"] > 0, figures
    assert per_webhook["commits"] >= 1 and per_webhook["wal_bytes"] > 0, figures
