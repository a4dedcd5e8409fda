"""connxt_queue_depth asks the broker at most once per interval, however often it is
scraped (every scrape of every process asking would make monitoring a load of its own)."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, generate_latest

from connxt.metrics import QueueDepth


def test_the_broker_is_read_once_per_interval_whatever_the_scrapes():
    reads: list[float] = []

    def read() -> dict[str, int]:
        reads.append(time.monotonic())
        return {"notify": len(reads)}

    registry = CollectorRegistry()
    registry.register(QueueDepth(read, interval=0.3))
    for _ in range(20):
        assert b'connxt_queue_depth{queue="notify"} 1.0' in generate_latest(registry)
    assert len(reads) == 1
    time.sleep(0.35)
    assert b'connxt_queue_depth{queue="notify"} 2.0' in generate_latest(registry)


def test_a_broker_that_does_not_answer_reports_no_depths():
    def read() -> dict[str, int]:
        raise OSError("connection refused")

    registry = CollectorRegistry()
    registry.register(QueueDepth(read, interval=0.3))
    assert b"connxt_queue_depth{" not in generate_latest(registry)
