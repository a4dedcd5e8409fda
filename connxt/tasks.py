"""Task and queue names: the contract between whoever asks for work and the workers.

Importing nothing of ours, this module lets the ingress and storage name a task without
importing the workers. Names are dotted and stable: messages outlive deployments.

Queues are lanes. Every task that calls a PSP goes to its connector's own queue
(``psp.paymaxis``), so a slow or failing PSP fills its own lane and nobody else's; the
rest share ``callbacks`` (PSP webhooks), ``notify`` (merchant notifications) and
``reconcile`` (scheduled sweeps and the inquiries they start).
"""

from __future__ import annotations

import re

INITIATE = "transactions.initiate"
WEBHOOK = "callbacks.webhook"
# Ask the PSP where a transaction stands: for a redirect or an unverifiable webhook (on the
# PSP's lane), or a scheduled look of the reconciliation sweep (on the reconcile lane).
INQUIRE = "callbacks.inquire"
# The scheduled looks' own task name before there was one inquiry task: still consumed,
# for messages an earlier release left in the queues.
RETIRED_SCHEDULED_INQUIRE = "reconcile.inquire"
# Settlement reconciliation (`connxt recon`): one run of a PSP account and day, and the
# sweep that finds the days due; both on the reconcile lane, with the status sweeps.
RECON_RUN = "recon.run"
RECON_SCHEDULE = "recon.schedule"
NOTIFY = "notify.merchant"
DELIVER = "notify.deliver"
# Applied as a set in the database, with no PSP call: their messages carry more items.
SET_TASKS = frozenset({WEBHOOK, NOTIFY, DELIVER})

CALLBACKS_QUEUE = "callbacks"
NOTIFY_QUEUE = "notify"
RECONCILE_QUEUE = "reconcile"
# PSP work whose connector is not known where it was asked for (none in this code base;
# a message from an older release, say): consumed by the shared lane.
ANY_PSP_QUEUE = "psp"
SHARED_QUEUES = (CALLBACKS_QUEUE, NOTIFY_QUEUE, RECONCILE_QUEUE, ANY_PSP_QUEUE)


def psp_queue(connector_name: str) -> str:
    """The lane of one connector's PSP calls: ``Paymaxis`` → ``psp.paymaxis``."""
    return "psp." + re.sub(r"[^a-z0-9]+", "-", connector_name.lower()).strip("-")


def all_queues(connector_names: list[str]) -> list[str]:
    """Every lane: one per connector, then the shared ones."""
    return sorted(psp_queue(name) for name in connector_names) + list(SHARED_QUEUES)
