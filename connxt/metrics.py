"""Prometheus metrics. Worker processes write to a shared directory (multiprocess mode) so
one endpoint per worker host reports all of its pool processes."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
HTTP_REQUESTS = Histogram(
    "connxt_http_request_seconds",
    "Ingress requests",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
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
