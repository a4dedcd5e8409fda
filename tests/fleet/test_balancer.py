"""The fleet comes up, Prometheus finds every process of it, and a steady load through the
balancer settles: once each.

Deposits and PSP webhooks at a fixed rate from the load host, through haproxy, to two api
hosts; three worker hosts share every lane on RabbitMQ. Nothing is faulted: this is the
harness proving itself, and the figures every fault is compared with.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.bursts import settle_burst
from tests.chaos.world import record_result
from tests.fleet.fleet import RESULTS, FleetWorld, HostClient
from tests.fleet.load import counts, run_burst

# The first test brings the fleet up (about a minute on two busy cores).
pytestmark = [pytest.mark.fleet, pytest.mark.timeout(600)]

SECONDS, DEPOSITS_PER_S, WEBHOOKS_PER_S = 20, 6, 3


def test_a_steady_load_through_the_balancer_settles_once(fleet: FleetWorld):
    before = fleet.balancer_view()
    records, timings, summary, webhook_txns = run_burst(
        fleet, seconds=SECONDS, deposit_rate=DEPOSITS_PER_S, webhook_rate=WEBHOOKS_PER_S
    )
    settled = settle_burst(fleet, records, webhook_txns, timeout=60)
    after = fleet.balancer_view()
    served = {name: after[name]["sent"] - before[name]["sent"] for name in after}
    figures = {
        **counts(records, settled),
        "rate_per_s": {"deposits": DEPOSITS_PER_S, "webhooks": WEBHOOKS_PER_S},
        "seconds_to_settle": settled["seconds_to_settle"],
        "served_by_api_host": served,
        "load_late_s": round(timings["late_s"], 2),
        "webhooks_skipped": timings["webhooks_skipped"],
        **summary,
    }
    record_result("steady_load_through_the_balancer", to=RESULTS, **figures)
    print(figures)

    diagnosis = (figures, settled["lost_detail"], settled["doubled_detail"])
    assert figures["deposits_sent"] == SECONDS * DEPOSITS_PER_S, diagnosis
    assert figures["webhooks_sent"] > 0, diagnosis
    assert figures["failed"] == 0 and figures["accepted"] == figures["sent"], diagnosis
    assert figures["lost"] == 0 and figures["doubled"] == 0, diagnosis
    assert settled["ended_correct"] == settled["transactions_checked"], diagnosis
    # Both api hosts took their share, and the balancer sees both healthy.
    assert all(n > 0 for n in served.values()) and len(served) == 2, diagnosis
    assert {v["status"] for v in after.values()} == {"UP"}, after


def test_prometheus_finds_every_process_of_the_fleet(fleet: FleetWorld):
    """deploy/prometheus/fleet.yml, fed by the target files the fleet writes: every api
    host, every lane of every worker host, beat and the balancer, each answering."""
    with HostClient("mon", timeout=10) as client:
        deadline = time.monotonic() + 30
        while True:
            targets = client.get(f"{fleet.info['prometheus']}/api/v1/targets").json()
            active = targets["data"]["activeTargets"]
            settled = active and all(t["health"] == "up" for t in active)
            if settled or time.monotonic() > deadline:
                break
            time.sleep(1)
    by_job: dict[str, list[str]] = {}
    for target in active:
        labels = target["labels"]
        by_job.setdefault(labels["job"], []).append(f"{labels['host']}/{labels.get('lane', '-')}")
    lanes = fleet.info["lanes"]
    assert {t["health"] for t in active} == {"up"}, [
        (t["scrapeUrl"], t["lastError"]) for t in active
    ]
    assert sorted(by_job["connxt-api"]) == ["api1/-", "api2/-"], by_job
    assert len(by_job["connxt-worker"]) == 3 * len(lanes), by_job
    assert {w.split("/")[1] for w in by_job["connxt-worker"]} == set(lanes), by_job
    assert by_job["connxt-beat"] == ["beat/-"] and by_job["connxt-lb"] == ["lb/-"], by_job
