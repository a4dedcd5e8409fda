"""Lanes: which worker process consumes which queues (connxt.tasks).

`connxt worker` runs one process per lane, so a lane's threads and broker prefetch are its
own: a PSP that answers in five seconds fills its lane, and the others go on. A fleet can
run any lane alone on hosts of its own (`connxt worker -Q psp.paymaxis`).
"""

from __future__ import annotations

from dataclasses import dataclass

from connectors.registry import all_connectors
from connxt import tasks
from connxt.settings import Settings


@dataclass(frozen=True)
class Lane:
    name: str
    queues: tuple[str, ...]
    threads: int  # items worked on side by side (workers.item_threads)
    relay: bool = False  # runs the outbox relay (workers.relay): one per worker group


def default_lanes(settings: Settings) -> list[Lane]:
    """One lane per connector; PSP webhooks (with anything not routed to a PSP) in one,
    merchant notifications in another; the reconciliation sweep's looks have their own,
    with fewer threads, so that however many transactions are due they never take the
    threads (or the PSP's patience) fresh payments need.

    Webhooks and notifications come in the same bursts (a PSP settling many payments at
    once makes as many notifications): in two processes they use two cores, not one."""
    psp = [
        Lane(tasks.psp_queue(name), (tasks.psp_queue(name),), settings.worker_threads)
        for name in sorted(all_connectors())
    ]
    shared = (tasks.CALLBACKS_QUEUE, tasks.ANY_PSP_QUEUE)
    return [
        *psp,
        Lane("shared", shared, settings.worker_threads, relay=True),
        Lane(tasks.NOTIFY_QUEUE, (tasks.NOTIFY_QUEUE,), settings.notify_threads),
        Lane(tasks.RECONCILE_QUEUE, (tasks.RECONCILE_QUEUE,), settings.reconcile_threads),
    ]


def lane_for(queues: str, settings: Settings) -> Lane | None:
    """The lane whose queues ``-Q`` names (in any order), so that a process started for one
    lane (a container, a fleet host) takes its threads and relay from it."""
    wanted = set(queues.split(","))
    return next((lane for lane in default_lanes(settings) if set(lane.queues) == wanted), None)
