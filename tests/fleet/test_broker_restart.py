"""The broker restarted mid-burst: RabbitMQ on the db host stopped (SIGTERM) and started.

Paymaxis answers in 1.5 s, so initiations wait in the queues and are held by the worker
hosts when the broker stops. The API does not use the broker (Step 3 and PSP webhooks are
stored with their messages in the outbox), so no request fails; the relay publishes what
the outbox holds once the broker is back, the queues (quorum, durable) keep what waited,
what the workers held unacknowledged is redelivered, and the workers reconnect by
themselves. Everything accepted settles: 0 lost, 0 doubled.
"""

from __future__ import annotations

import time

import pytest

from tests.chaos.bursts import settle_burst
from tests.chaos.world import record_result
from tests.fleet.fleet import RESULTS, FleetWorld
from tests.fleet.load import counts, run_burst

pytestmark = [pytest.mark.fleet, pytest.mark.timeout(600)]

SECONDS, DEPOSITS_PER_S, WEBHOOKS_PER_S = 20, 6, 3
STOP_AT = 6.0
WORKERS = ("worker1", "worker2", "worker3")
PSP_DELAY_MS = 1500


def test_the_broker_restarted_mid_burst_loses_and_doubles_nothing(fleet: FleetWorld):
    seen: dict[str, object] = {}
    consumers_before = {host: fleet.consumers(host) for host in WORKERS}

    def restart_broker(timings: dict, began: float) -> None:
        seen["queued_at_stop"] = sum(fleet.queued().values())
        seen["held_at_stop"] = sum(fleet.held_by(host) for host in WORKERS)
        fleet.stop("db", "rabbitmq")
        timings["broker_stopped"] = time.monotonic() - began
        fleet.start("db", "rabbitmq")  # returns once the node has started
        timings["broker_started"] = time.monotonic() - began

    records, timings, summary, webhook_txns = run_burst(
        fleet,
        slow_psp_ms=PSP_DELAY_MS,
        seconds=SECONDS,
        deposit_rate=DEPOSITS_PER_S,
        webhook_rate=WEBHOOKS_PER_S,
        fault_at=STOP_AT,
        fault=restart_broker,
    )
    settled = settle_burst(fleet, records, webhook_txns, timeout=90)
    # Every worker host consumes again, as many queues as before the restart.
    consumers = {host: fleet.consumers(host) for host in WORKERS}

    figures = {
        **counts(records, settled),
        **seen,
        "consumers_by_host": {"before": consumers_before, "after": consumers},
        "seconds_to_settle": settled["seconds_to_settle"],
        "fault_s": {k: round(v, 1) for k, v in timings.items() if isinstance(v, float)},
        **summary,
    }
    record_result("broker_restarted_mid_burst", to=RESULTS, **figures)
    print(figures)

    diagnosis = (figures, settled["lost_detail"], settled["doubled_detail"])
    assert seen["queued_at_stop"] or seen["held_at_stop"], diagnosis  # the fault hit work
    assert figures["failed"] == 0 and figures["accepted"] == figures["sent"], diagnosis
    assert figures["lost"] == 0 and figures["doubled"] == 0, diagnosis
    assert settled["ended_correct"] == settled["transactions_checked"], diagnosis
    assert all(consumers[h] >= consumers_before[h] > 0 for h in WORKERS), diagnosis
