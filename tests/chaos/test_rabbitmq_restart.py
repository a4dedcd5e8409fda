"""Restart RabbitMQ (the fleet broker) in the middle of a burst of deposits and webhooks.

The world's broker is a private RabbitMQ node (tests.support.rabbitmq) with the lanes as
durable quorum queues and publisher confirms; Redis keeps the locks and the hand-off. The
PSP is slowed so that messages wait in the queues when the node stops. Unlike a Redis
without persistence, RabbitMQ must bring every waiting message back after the restart:
whatever was accepted (200/202) ends in its right state, once, with one PSP payment, and
the messages that waited at the stop are still there, in the same queues, once it is up.
"""

from __future__ import annotations

import time

import pytest

from connxt import tasks
from connxt.broker import queue_depths
from connxt.settings import Settings
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

DOWN_SECONDS = 3.0
HANG_SECONDS = 12.0  # the ingress waits at most 10 s for an initiation, then answers 202
LANES = tasks.all_queues(["paymaxis", "sticpay"])


@pytest.fixture(scope="module")
def world(world_factory) -> World:
    # One message at a time per lane, one deposit per message: with the PSP slowed, the
    # burst outruns the lanes for certain, so messages wait in the queues at the stop.
    return world_factory(
        "rabbit",
        broker="private-rabbitmq",
        worker_concurrency=1,
        extra_env={"CONNXT_RELAY_MESSAGE_ITEMS": "1", "CONNXT_SET_MESSAGE_ITEMS": "1"},
    )


def _depths(world: World) -> dict[str, int]:
    assert world.rabbit is not None
    return queue_depths(Settings(broker_url=world.rabbit.url), LANES)


def test_rabbitmq_restart_during_a_burst_loses_and_doubles_nothing(world: World):
    webhook_txns = accepted_deposits(world, 10)
    # A slow PSP (each call 1.5 s) and a stopped callbacks lane would not do: the worker
    # must keep running. So the PSP is slowed and the burst sent faster than the PSP lane
    # drains it; what waits in the queues at the stop must come back after it.
    world.control(delay_ms=1500)
    waiting: dict[str, int] = {}
    after: dict[str, int] = {}

    def restart_rabbitmq(timings: dict[str, float], began: float) -> None:
        aim_until = time.monotonic() + 4
        while time.monotonic() < aim_until:
            depths = _depths(world)
            if sum(depths.values()) > 0:
                waiting.update(depths)
                break
            time.sleep(0.05)
        assert world.rabbit is not None
        world.rabbit.stop()
        timings["broker_down"] = time.monotonic() - began
        time.sleep(DOWN_SECONDS)
        world.rabbit.start()
        timings["broker_up"] = time.monotonic() - began
        # Read at once, before the workers reconnect: the durable queues kept what waited.
        after.update(_depths(world))

    records, timings = run_burst(
        world,
        seconds=12,
        fault_at=3,
        fault=restart_rabbitmq,
        webhook_txns=webhook_txns,
        webhooks_until=6,
    )
    world.control(delay_ms=0)
    summary = burst_summary(records)
    retry_refused(world, records)
    settled = settle_burst(world, records, webhook_txns, timeout=90)
    hangs = [r for r in records if r.error or r.elapsed > HANG_SECONDS]
    figures = {
        "hit": sum(waiting.values()),
        **{k: settled[k] for k in ("ended_correct", "lost", "doubled")},
        "fault_window_s": [round(timings["broker_down"], 1), round(timings["broker_up"], 1)],
        "messages_waiting_at_stop": waiting,
        "messages_waiting_after_restart": after,
        **summary,
        **{k: v for k, v in settled.items() if k not in ("ended_correct", "lost", "doubled")},
        "hangs": len(hangs),
    }
    record_result("rabbitmq_restart_during_burst", **figures)

    diagnosis = (figures, world.logs("api", world.worker_name, "beat", tail=80))
    assert summary["deposits_accepted"] > 0 and summary["webhooks_accepted"] > 0, diagnosis
    assert sum(waiting.values()) > 0, ("nothing waited in the queues at the stop", diagnosis)
    # Durable quorum queues: the restart brought the waiting messages back (the workers,
    # still reconnecting, cannot have taken them yet).
    assert sum(after.values()) > 0, diagnosis
    assert not hangs, ([vars(r) for r in hangs], diagnosis)
    # The ingress never talks to the broker (the outbox does): nothing is refused for it.
    assert summary["refused_by_status"] == {}, diagnosis
    assert settled["lost"] == 0 and settled["doubled"] == 0, diagnosis
    assert settled["ended_correct"] == settled["transactions_checked"], diagnosis
