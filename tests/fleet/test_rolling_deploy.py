"""A rolling deploy under load, from the last release (v0.1.0) to this checkout.

The fleet comes up on the release's code (tests/fleet/release.py: its tag exported, with a
virtualenv of its own). A steady stream of deposits and PSP webhooks goes through the
balancer while the deploy runs as Kubernetes would run it: this checkout's migrate job
(`connxt db upgrade`) while the release still serves, then each api host, each worker host
and beat, one at a time, stopped with SIGTERM and started on this checkout; an api host
is back in the balancer (two good checks) before the next one stops.

No request may fail: no 5xx, no broken connection. This release's api drains on SIGTERM
(/readyz 503 at once while it serves on for CONNXT_DRAIN_SECONDS, then a graceful close);
the release's does not, it stops listening at once and finishes what it has. haproxy
retries on another host a request whose connection could not be made (`retry-on
conn-failure`, `redispatch`), and sends each over a connection of its own
(`http-server-close`), so a refused connection is retried and never seen by the client.
The figures say how many requests haproxy retried away from each stopping api host. Last,
api1 is stopped once more, now running this checkout, to show its drain under the same
load: the balancer moves away while it still listens, so nothing needs retrying.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.chaos.bursts import settle_burst
from tests.chaos.world import record_result
from tests.fleet.fleet import HEAD, RESULTS, FleetWorld
from tests.fleet.load import counts, run_burst

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(900)]

DEPOSITS_PER_S, WEBHOOKS_PER_S = 6, 3
ROLL_AT = 8.0  # the release serves the load alone first
AFTER_ROLL = 8.0  # and this checkout alone at the end
ORDER = ("api1", "api2", "worker1", "worker2", "worker3", "beat")
# Then one api host stopped again, now on this checkout: its drain, under the same load.
DRAINED = "api1"


def test_a_rolling_deploy_from_the_last_release_fails_no_request(release_fleet: FleetWorld):
    fleet = release_fleet
    release = fleet.runs["api1"]
    steps: list[dict[str, Any]] = []
    before = fleet.balancer_view()

    def roll(timings: dict, began: float) -> None:
        def at() -> float:
            return round(time.monotonic() - began, 1)

        t0 = at()
        fleet.migrate()
        steps.append({"step": "connxt db upgrade", "began_s": t0, "took_s": round(at() - t0, 1)})
        for host, what in [*((h, "restarted") for h in ORDER), (DRAINED, "drained")]:
            step: dict[str, Any] = {"step": f"{host} {what}", "began_s": at()}
            seen = fleet.balancer_view().get(host)
            fleet.stop(host)  # SIGTERM to each of its processes, and wait for their exit
            step["stopped_in_s"] = round(at() - step["began_s"], 1)
            fleet.start(host)  # this checkout; returns once ready
            if seen is not None:  # an api host
                # Back in rotation before the next api host goes (a readiness gate).
                fleet.wait_balancer({host: "UP"})
                now = fleet.balancer_view()[host]
                step["retried_elsewhere"] = now["redispatches"] - seen["redispatches"]
            step["took_s"] = round(at() - step["began_s"], 1)
            steps.append(step)
            time.sleep(2)  # a moment of traffic on the new host before the next goes

    records, timings, summary, webhook_txns = run_burst(
        fleet,
        seconds=ROLL_AT + 1,
        deposit_rate=DEPOSITS_PER_S,
        webhook_rate=WEBHOOKS_PER_S,
        fault_at=ROLL_AT,
        fault=roll,
        after_fault=AFTER_ROLL,
    )
    settled = settle_burst(fleet, records, webhook_txns, timeout=90)
    after = fleet.balancer_view()
    balancer = {
        name: {k: after[name][k] - before[name][k] for k in after[name] if k != "status"}
        for name in after
    }
    failures = [
        {"kind": r.kind, "at_s": round(r.started, 1), "status": r.status, "error": r.error}
        for r in records
        if r.error or (r.status is not None and r.status >= 500)
    ]
    figures = {
        "release_from": release,
        "release_to": HEAD,
        **counts(records, settled),
        "rate_per_s": {"deposits": DEPOSITS_PER_S, "webhooks": WEBHOOKS_PER_S},
        "steps": steps,
        "load_s": round(timings["load_ended"], 1),
        "balancer": balancer,
        "failures": failures[:20],
        "seconds_to_settle": settled["seconds_to_settle"],
        "load_late_s": round(timings["late_s"], 2),
        **summary,
    }
    record_result("rolling_deploy", to=RESULTS, **figures)
    print(figures)

    diagnosis = (figures, settled["lost_detail"], settled["doubled_detail"])
    assert all(fleet.runs[host] == HEAD for host in ORDER), fleet.runs
    assert len(steps) == 2 + len(ORDER), diagnosis
    assert figures["failed"] == 0 and figures["accepted"] == figures["sent"], diagnosis
    assert figures["lost"] == 0 and figures["doubled"] == 0, diagnosis
    assert settled["ended_correct"] == settled["transactions_checked"], diagnosis
    assert figures["webhooks_sent"] > 0, diagnosis
