"""Restart Redis (broker, locks, hand-off) in the middle of a burst of deposits and webhooks.

The world has a private ``redis-server`` without persistence: the restart loses every
queued message, lock and hand-off key, as a crashed cache would. The PSP is slowed so
the worker is busy and messages are waiting in the queues when Redis goes. Whatever was accepted
(200/202) must still end in its right state, once, with one PSP payment; whatever was
refused must be refused cleanly (a 5xx in the envelope, quickly), never hang.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

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


@pytest.fixture(scope="module")
def world(world_factory) -> World:
    return world_factory("redis")


def test_redis_restart_during_a_burst_loses_and_doubles_nothing(world: World):
    webhook_txns = accepted_deposits(world, 10)
    # A slow PSP (each call 1.5 s) keeps the worker's four slots busy with initiations, so
    # messages wait in Redis queues (initiations, webhooks, merchant notifications,
    # inquiries) when it goes down: the restart loses them, as a real crash would.
    world.control(delay_ms=1500)

    broker = redis.Redis.from_url(world.redis.url(0), socket_timeout=2)
    prefix = world.stack.env.get("CONNXT_BROKER_KEY_PREFIX", "")
    queued_at_stop: dict[str, int] = {}

    def queued() -> dict[str, int]:
        """Messages waiting in Celery's queues by task name (kombu keeps each queue as
        Redis lists, one per priority)."""
        counts: dict[str, int] = {}
        for key in broker.scan_iter(f"{prefix}*"):
            if broker.type(key) != b"list" or b"_kombu" in key:
                continue
            for raw in broker.lrange(key, 0, -1):
                try:
                    task = str(json.loads(raw)["headers"]["task"])
                except (ValueError, KeyError, TypeError):
                    task = "?"
                counts[task] = counts.get(task, 0) + 1
        return counts

    def restart_redis(timings: dict[str, float], began: float) -> None:
        # Aim: stop while a `notify.merchant` is queued (a terminal transition's merchant
        # notification, of which the broker holds the only live copy); give up aiming
        # after 4 s and stop anyway.
        aim_until, seen = time.monotonic() + 4, 0
        counts: dict[str, int] = {}
        while time.monotonic() < aim_until:
            try:
                counts = queued()
            except redis.RedisError:
                break
            # Seen waiting in three polls in a row: the busy worker is not about to take it.
            seen = seen + 1 if counts.get("notify.merchant", 0) > 0 else 0
            if seen >= 3:
                break
            time.sleep(0.02)
        queued_at_stop.update(counts)
        world.redis.stop()
        timings["redis_down"] = time.monotonic() - began
        time.sleep(DOWN_SECONDS)
        world.redis.start()
        timings["redis_up"] = time.monotonic() - began

    # The webhooks land around the restart: their callbacks, and the merchant
    # notifications they cause, are running or queued when Redis goes.
    try:
        records, timings = run_burst(
            world,
            seconds=11,
            fault_at=3,
            fault=restart_redis,
            webhook_txns=webhook_txns,
            webhooks_until=6,
        )
    finally:
        broker.close()
    world.control(delay_ms=0)
    summary = burst_summary(records)
    during = [r for r in records if timings["redis_down"] - 0.5 <= r.started <= timings["redis_up"]]
    retry_refused(world, records)
    settled = settle_burst(world, records, webhook_txns, timeout=75)
    hangs = [r for r in records if r.error or r.elapsed > HANG_SECONDS]
    figures = {
        "hit": len(during),
        **{k: settled[k] for k in ("ended_correct", "lost", "doubled")},
        "fault_window_s": [round(timings["redis_down"], 1), round(timings["redis_up"], 1)],
        "messages_queued_at_stop": queued_at_stop,
        **summary,
        **{k: v for k, v in settled.items() if k not in ("ended_correct", "lost", "doubled")},
        "hangs": len(hangs),
    }
    record_result("redis_restart_during_burst", **figures)

    diagnosis = (figures, world.logs("api", world.worker_name, "beat", tail=80))
    assert summary["deposits_accepted"] > 0 and summary["webhooks_accepted"] > 0, diagnosis
    assert not hangs, ([vars(r) for r in hangs], diagnosis)
    assert summary["refused_outside_envelope"] == 0, diagnosis
    assert all(code.startswith("5") for code in summary["refused_by_status"]), diagnosis
    assert settled["lost"] == 0 and settled["doubled"] == 0, diagnosis
    assert settled["ended_correct"] == settled["transactions_checked"], diagnosis
