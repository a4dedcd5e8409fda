"""A worker host vanishes mid-burst: its link goes down, then its processes are killed.

A host that vanishes sends nothing more, no FIN and no RST: the broker, PostgreSQL and
Redis learn of it only by its silence. Until the broker gives up on its connections, the
messages it held unacknowledged stay with it; once it does (the fleet's broker heartbeat,
deploy/fleet/rabbitmq.conf), they go to the workers of the other hosts, which finish what
the lost host started (an initiation first asks the PSP whether the payment exists, so it
completes a call in flight, never repeats it). Everything accepted settles, once, within
60 s of the link going down. Paymaxis answers in 1.5 s during the burst, so that the lost
host certainly holds initiations when its link goes.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from tests.chaos.bursts import settle_burst
from tests.chaos.world import record_result
from tests.fleet.fleet import RESULTS, FleetWorld
from tests.fleet.load import counts, run_burst

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(600)]

LOST = "worker3"
SECONDS, DEPOSITS_PER_S, WEBHOOKS_PER_S = 24, 6, 3
LINK_DOWN_AT, KILL_AFTER = 6.0, 3.0
SETTLE_BOUND_S = 60.0
PSP_DELAY_MS = 1500


def broker_gave_up(world: FleetWorld, address: str, since: datetime) -> list[datetime]:
    """When the broker closed each of the host's connections for missed heartbeats since
    ``since`` (its log says so in two lines: the connection, then the reason, under one
    Erlang pid; the fleet is shared, so an earlier test's closures are in it too)."""
    closing = re.compile(
        rf"^(\S+ \S+) \[\w+\] (<[\d.]+>) closing AMQP connection .*\({re.escape(address)}:\d+ "
    )
    opened: dict[str, str] = {}
    closed: list[datetime] = []
    for line in world.stack.log("db.rabbitmq").splitlines():
        found = closing.match(line)
        if found:
            opened[found.group(2)] = found.group(1)
        elif "missed heartbeats from client" in line:
            pid = line.split("] ", 1)[1].split(" ", 1)[0]
            if pid in opened:
                closed.append(datetime.fromisoformat(opened.pop(pid)))
    return [at for at in closed if at >= since]


def test_a_worker_host_lost_mid_burst_settles_within_a_minute(fleet: FleetWorld):
    address = fleet.info["hosts"][LOST]
    marks: dict[str, float] = {}
    held: dict[str, int] = {}

    def lose_host(timings: dict, began: float) -> None:
        fleet.link(LOST, "down")
        marks["link_down"] = time.monotonic()
        marks["link_down_wall"] = time.time()
        timings["link_down"] = marks["link_down"] - began
        held["at_link_down"] = fleet.held_by(LOST)
        time.sleep(max(0.0, marks["link_down"] + KILL_AFTER - time.monotonic()))
        fleet.kill_host(LOST)
        timings["killed"] = time.monotonic() - began

    try:
        records, timings, summary, webhook_txns = run_burst(
            fleet,
            slow_psp_ms=PSP_DELAY_MS,
            seconds=SECONDS,
            deposit_rate=DEPOSITS_PER_S,
            webhook_rate=WEBHOOKS_PER_S,
            fault_at=LINK_DOWN_AT,
            fault=lose_host,
        )
        settle_started = time.monotonic()
        budget = max(1.0, marks["link_down"] + SETTLE_BOUND_S - settle_started)
        settled = settle_burst(fleet, records, webhook_txns, timeout=budget)
        settled_after = settle_started + settled["seconds_to_settle"] - marks["link_down"]
        link_down_at = datetime.fromtimestamp(marks["link_down_wall"], UTC)
        gave_up = broker_gave_up(fleet, address, since=link_down_at)
        gave_up_after = sorted({round((t - link_down_at).total_seconds(), 1) for t in gave_up})
    finally:
        # The host comes back for the tests after this one: link up, its units started.
        fleet.link(LOST, "up")
        fleet.start(LOST)

    figures = {
        **counts(records, settled),
        "held_by_lost_host_at_link_down": held["at_link_down"],
        "broker_closed_lost_connections": len(gave_up),
        "broker_gave_up_s_after_link_down": gave_up_after,
        "settled_s_after_link_down": round(settled_after, 1),
        "fault_s": {k: round(v, 1) for k, v in timings.items() if isinstance(v, float)},
        **summary,
    }
    record_result("worker_host_lost_mid_burst", to=RESULTS, **figures)
    print(figures)

    diagnosis = (figures, settled["lost_detail"], settled["doubled_detail"])
    # The fault hit: the lost host held work when its link went, and the broker gave its
    # connections up for their silence (no FIN ever came).
    assert held["at_link_down"] > 0, diagnosis
    assert gave_up, (diagnosis, fleet.logs("db.rabbitmq", tail=30))
    # The API never depended on the lost host: nothing refused, nothing broken.
    assert figures["failed"] == 0 and figures["accepted"] == figures["sent"], diagnosis
    assert figures["lost"] == 0 and figures["doubled"] == 0, diagnosis
    assert settled["ended_correct"] == settled["transactions_checked"], diagnosis
    assert settled_after <= SETTLE_BOUND_S, diagnosis
