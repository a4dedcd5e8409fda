"""Settlement reconciliation's tasks (`recon.run`, `recon.schedule`), on the reconcile lane.

Thin: the work is workers.recon's. A run whose day is locked by another run is tried
again later (the other may be a copy of this very message: a day is run by one at a time,
and a finished run is not run again).
"""

from __future__ import annotations

from typing import Any

from connxt import tasks
from workers import recon
from workers.app import celery_app
from workers.item_threads import TRANSIENT, Item, items_of
from workers.sweeps import once_per_slot


# A day of a million lines takes longer than the ordinary task limit (workers.app); on the
# threads pool the limit is not enforced anyway, but it is what Celery reports.
@celery_app.task(name=tasks.RECON_RUN, bind=True, time_limit=3600, soft_time_limit=3540)
def run(self, batch: list[Item] | None = None, **item: Any) -> None:
    """Each run of the message, one after the other."""
    again: list[Item] = []
    for one in items_of(batch, item):
        try:
            recon.execute(one["run_id"])
        except (recon.RunBusy, *TRANSIENT):
            again.append(one)
    self.retry_items(again, countdown=30)


@celery_app.task(name=tasks.RECON_SCHEDULE)
@once_per_slot(tasks.RECON_SCHEDULE, lambda s: s.recon_sweep_interval_seconds)
def schedule() -> int:
    """Days due get their runs; runs whose process died are sent again."""
    return len(recon.schedule_due())
