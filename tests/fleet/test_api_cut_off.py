"""An api host cut off from the db host: the balancer stops sending to it.

Every packet between api1 and the db host is dropped. api1 still answers the balancer,
but its /readyz now fails (its PostgreSQL connections do not answer within the check's
bound), and haproxy takes it out after two failed checks a second apart (`inter 1s fall
2`, each check bounded by `timeout check 2s`). Until then, requests still go to it and
cannot be stored. Clients see no more failures than the requests api1 had in flight at the
cut plus those the balancer sent it before it noticed, and that window is bounded by the
shipped check settings. Everything answered 2xx is stored; the refused deposits, retried
by the merchant with their Idempotency-Key once api1 is back, settle once.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.bursts import settle_burst
from tests.chaos.world import record_result
from tests.fleet.fleet import RESULTS, FleetWorld
from tests.fleet.load import counts, run_burst

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(600)]

CUT_OFF = "api1"
SECONDS, DEPOSITS_PER_S, WEBHOOKS_PER_S = 24, 6, 3
CUT_AT, CUT_FOR = 6.0, 15.0
# deploy/haproxy/haproxy.cfg: `default-server inter 1s fall 2`, `timeout check 2s`. The
# worst case: a check passed just before the cut (the next starts `inter` later), then
# `fall` checks fail, each within `timeout check` and `inter` apart; a second more for
# this test's poll of the stats page on a loaded machine. (/readyz answers 503 within its
# own 1 s bound, so a failed check takes about a second, not two.)
INTER_S, FALL, TIMEOUT_CHECK_S = 1, 2, 2
CHECK_BOUND_S = INTER_S + FALL * (INTER_S + TIMEOUT_CHECK_S) + 1


def test_an_api_host_cut_off_from_the_db_leaves_the_balancer(fleet: FleetWorld):
    marks: dict[str, float] = {}
    view: dict[str, dict] = {}

    def cut_api(timings: dict, began: float) -> None:
        view["before_cut"] = fleet.balancer_view()[CUT_OFF]
        fleet.cut(CUT_OFF, "db")
        marks["cut"] = time.monotonic()
        timings["cut"] = marks["cut"] - began
        while True:  # what the balancer sees of api1, until it takes it out
            seen = fleet.balancer_view()[CUT_OFF]
            if seen["status"].startswith("DOWN") or time.monotonic() - marks["cut"] > 30:
                break
            time.sleep(0.1)
        marks["down"] = time.monotonic()
        view["at_down"] = seen
        timings["balancer_took_it_out"] = marks["down"] - began
        time.sleep(max(0.0, marks["cut"] + CUT_FOR - time.monotonic()))
        fleet.heal(CUT_OFF, "db")
        timings["healed"] = time.monotonic() - began
        fleet.wait_balancer({CUT_OFF: "UP"})
        timings["back_in"] = time.monotonic() - began

    try:
        burst = run_burst(
            fleet,
            seconds=SECONDS,
            deposit_rate=DEPOSITS_PER_S,
            webhook_rate=WEBHOOKS_PER_S,
            fault_at=CUT_AT,
            fault=cut_api,
        )
    finally:
        fleet.heal()
    records, timings, summary, webhook_txns = burst
    settled = settle_burst(fleet, records, webhook_txns, timeout=60)

    in_flight_at_cut = view["before_cut"]["open"]
    routed_before_noticed = view["at_down"]["sent"] - view["before_cut"]["sent"]
    noticed_after = marks["down"] - marks["cut"]
    figures = {
        **counts(records, settled),
        "in_flight_on_cut_off_host_at_cut": in_flight_at_cut,
        "routed_to_it_before_the_balancer_noticed": routed_before_noticed,
        "failure_bound": in_flight_at_cut + routed_before_noticed,
        "balancer_noticed_s_after_cut": round(noticed_after, 1),
        "check_bound_s": CHECK_BOUND_S,
        "balancer_status_at_down": view["at_down"]["status"],
        "fault_s": {k: round(v, 1) for k, v in timings.items() if isinstance(v, float)},
        **summary,
        "refused_but_committed": settled["refused_but_committed"],
        "merchant_retries_final": settled["merchant_retries_final"],
    }
    record_result("api_host_cut_off_from_db", to=RESULTS, **figures)
    print(figures)

    diagnosis = (figures, settled["lost_detail"], settled["doubled_detail"])
    assert view["at_down"]["status"].startswith("DOWN"), diagnosis
    assert noticed_after <= CHECK_BOUND_S, diagnosis
    assert figures["failed"] <= figures["failure_bound"], diagnosis
    # Every failure was a refusal in the envelope or a broken request, never a 2xx lost.
    assert figures["lost"] == 0 and figures["doubled"] == 0, diagnosis
    assert settled["ended_correct"] == settled["transactions_checked"], diagnosis
