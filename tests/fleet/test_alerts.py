"""A lost worker host pages: deploy/prometheus/alerts.yml's ConnxtProcessDown fires.

The fleet's Prometheus (deploy/prometheus/fleet.yml, scraping every 5 s) loads the shipped
rules. worker3's link goes down: its processes keep running but answer no scrape, `up` of
each of its lanes drops to 0 within a scrape or two, the alert is pending, and once the
rule's `for:` has passed it fires, for each of worker3's lanes and for nothing else. The
rule is the shipped one, read by Prometheus through its /api/v1/alerts.
"""

from __future__ import annotations

import time

import pytest
import yaml

from tests.chaos.world import record_result
from tests.fleet.fleet import RESULTS, FleetWorld, HostClient

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(300)]

LOST = "worker3"
ALERT = "ConnxtProcessDown"
RULES = "deploy/prometheus/alerts.yml"


def rule_for_seconds() -> float:
    """The rule's `for:` (e.g. "1m"), in seconds."""
    from tests.fleet.fleet import ROOT

    groups = yaml.safe_load((ROOT / RULES).read_text())["groups"]
    rule = next(r for g in groups for r in g["rules"] if r.get("alert") == ALERT)
    value = str(rule["for"])
    units = {"s": 1, "m": 60, "h": 3600}
    return float(value[:-1]) * units[value[-1]]


def alerts(client: HostClient, prometheus: str) -> list[dict]:
    answer = client.get(f"{prometheus}/api/v1/alerts")
    answer.raise_for_status()
    return [a for a in answer.json()["data"]["alerts"] if a["labels"]["alertname"] == ALERT]


def test_a_lost_worker_host_fires_the_process_down_alert(fleet: FleetWorld):
    lanes = set(fleet.info["lanes"])
    hold_for = rule_for_seconds()
    bound = hold_for + 30  # a scrape (5 s) to see it, evaluations 5 s apart, a busy machine
    seen: dict[str, float] = {}
    prometheus = fleet.info["prometheus"]
    with HostClient("mon", timeout=10) as client:
        settled_before = time.monotonic() + 30  # an earlier test's fault, resolving
        while any(a["labels"].get("host") == LOST for a in alerts(client, prometheus)):
            assert time.monotonic() < settled_before, alerts(client, prometheus)
            time.sleep(1)
        fleet.link(LOST, "down")
        down_at = time.monotonic()
        try:
            while time.monotonic() - down_at < bound:
                found = alerts(client, prometheus)
                lost = [a for a in found if a["labels"].get("host") == LOST]
                if lost and "pending" not in seen:
                    seen["pending"] = time.monotonic() - down_at
                firing = {a["labels"].get("lane") for a in lost if a["state"] == "firing"}
                if firing == lanes:
                    seen["firing"] = time.monotonic() - down_at
                    break
                time.sleep(1)
            others = [a["labels"] for a in found if a["labels"].get("host") != LOST]
        finally:
            fleet.link(LOST, "up")

    figures = {
        "rule": f"{ALERT} (up == 0, for: {hold_for:g} s)",
        "lanes_of_the_lost_host": len(lanes),
        "pending_s_after_link_down": round(seen.get("pending", -1), 1),
        "firing_s_after_link_down": round(seen.get("firing", -1), 1),
        "firing_for_other_hosts": len(others),
    }
    record_result("worker_host_lost_alert", to=RESULTS, **figures)
    print(figures)

    assert "firing" in seen, (figures, found)
    assert seen["firing"] >= hold_for, figures  # the rule's `for:`, not a test-only rule
    assert not others, others
