"""The scenarios by name, in the order a full run takes them (``--only`` picks some)."""

from __future__ import annotations

from collections.abc import Callable

from bench.measure import Ctx
from bench.scenarios.ingest import accept, webhooks
from bench.scenarios.lifecycle import abandoned, backlog_drain, waiting
from bench.scenarios.psp import bulkheads, latency, scaleout
from bench.scenarios.recon import recon

SCENARIOS: dict[str, Callable[[Ctx], None]] = {
    "accept": accept,
    "webhooks": webhooks,
    "waiting": waiting,
    "drain": backlog_drain,
    "abandoned": abandoned,
    "latency": latency,
    "bulkheads": bulkheads,
    "scaleout": scaleout,
    "recon": recon,
}
