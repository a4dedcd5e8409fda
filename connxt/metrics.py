"""Prometheus metrics, one definition for every process.

Each process serves them on ``--metrics-port`` (commands/processes.py; the API also at
/metrics on its public port with CONNXT_PUBLIC_METRICS): `connxt worker` the sum of its
lane processes (they write to a shared directory: prometheus-client's multiprocess mode),
`connxt beat` and `connxt api` their own. What a process never records, it reports empty.
Recording costs a counter increment on the hot paths: label children that are known up
front are made once (``labelled``), not per request.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 45)

TRANSITIONS = Counter(
    "connxt_transitions_total", "Transaction status changes", ["to_status", "source"]
)
CONFLICTS = Counter(
    "connxt_conflicting_events_total", "Events contradicting a final status", ["source"]
)
PSP_REQUESTS = Histogram(
    "connxt_psp_request_seconds",
    "PSP HTTP round trips",
    ["psp", "method", "status"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
)
PSP_CALLS = Histogram(
    "connxt_psp_call_seconds",
    "PSP operations by PSP, action (initiate, inquire, cancel) and result (the outcome, "
    "or error when the connector raised); UNKNOWN and error are the PSP's failures",
    ["psp", "action", "result"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20),
)
HTTP_REQUESTS = Histogram(
    "connxt_http_request_seconds",
    "Ingress requests",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TASKS = Histogram(
    "connxt_task_seconds",
    "Celery tasks by name and outcome (success, failure, retry)",
    ["task", "outcome"],
    buckets=_SECONDS,
)
LOCK_BUSY = Counter("connxt_lock_busy_total", "Tasks re-scheduled because a lock was held")
WEBHOOKS = Counter("connxt_webhooks_total", "PSP notifications received", ["result"])
GROUP_COMMIT_BATCH = Histogram(
    "connxt_group_commit_batch_size",
    "Requests stored by one group-commit statement",
    ["writer"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
REVIEWS = Counter(
    "connxt_reviews_total",
    "Transactions held for an operator (amount_mismatch, late_success)",
    ["reason", "source"],
)
PARKED = Counter(
    "connxt_parked_total",
    "Work set aside for an operator: PSP webhooks, outbox messages, initiations, merchant "
    "notifications out of retries",
    ["kind"],
)
NOTIFICATION_ATTEMPTS = Counter(
    "connxt_notification_attempts_total",
    "Merchant notification delivery attempts by what became of the notification",
    ["outcome"],
)
SWEEPS = Counter(
    "connxt_sweeps_total",
    "Scheduled sweeps by name: ran, or skipped (another ran it in this slot, or runs it now)",
    ["sweep", "result"],
)
BEAT_SENT = Counter("connxt_beat_sent_total", "Scheduled tasks sent by beat", ["task"])
RECON_LINES = Counter(
    "connxt_recon_lines_total",
    "Settlement lines reconciled, by the class each ended in (matched, amount_mismatch, ...)",
    ["class"],
)
RECON_RUNS = Histogram(
    "connxt_recon_run_seconds",
    "Settlement reconciliation runs, fetch and match, by PSP and outcome (completed, failed)",
    ["psp", "outcome"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)


def labelled(metric: Any) -> Callable[..., Any]:
    """``metric.labels`` with the children kept: the hot paths look one up in a dict."""
    children: dict[tuple[str, ...], Any] = {}

    def child(*values: str) -> Any:
        found = children.get(values)
        if found is None:
            found = children[values] = metric.labels(*values)
        return found

    return child


class OpenDifferences(Collector):
    """Settlement differences nobody resolved (``pending`` aside), read when scraped:
    ``connxt_recon_open_differences`` and ``connxt_recon_oldest_open_difference_seconds``
    (what the alert for differences left past a day reads)."""

    def __init__(self, read: Callable[[], tuple[int, float]]):
        self._read = read

    def collect(self):
        try:
            count, oldest = self._read()
        except Exception:  # the database is away: the other metrics still count
            return
        families = (
            ("connxt_recon_open_differences", "Open settlement differences", count),
            (
                "connxt_recon_oldest_open_difference_seconds",
                "Age of the oldest open settlement difference",
                oldest,
            ),
        )
        for name, documentation, value in families:
            family = GaugeMetricFamily(name, documentation)
            family.add_metric([], value)
            yield family


class QueueDepth(Collector):
    """``connxt_queue_depth{queue}``, read from the broker at most once per ``interval``
    seconds whatever the number of scrapers: every scrape of every process asking the
    broker would make monitoring a load of its own."""

    def __init__(self, read: Callable[[], dict[str, int]], interval: float):
        self._read = read
        self._interval = interval
        self._depths: dict[str, int] = {}
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def _current(self) -> dict[str, int]:
        with self._lock:
            if time.monotonic() - self._read_at >= self._interval:
                self._read_at = time.monotonic()
                try:
                    self._depths = self._read()
                except Exception:  # the broker is away: the rest still counts
                    self._depths = {}
            return self._depths

    def collect(self):
        family = GaugeMetricFamily(
            "connxt_queue_depth", "Messages waiting in each worker queue", labels=["queue"]
        )
        depths = self._current()
        for queue, depth in sorted(depths.items()):
            family.add_metric([queue], depth)
        yield family
