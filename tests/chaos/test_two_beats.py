"""Two `connxt beat` processes for half a minute, as two hosts would run them by mistake.

Every scheduled sweep is then sent twice. What must hold (workers.sweeps, the claims of
workers.reconcile): no sweep runs beside itself, none runs twice in one slot of its
interval, and no open transaction is asked about twice for one booked look: each look
the sweep books in PostgreSQL (``inquiry_count``) is one inquiry at the PSP.
"""

from __future__ import annotations

import itertools
import re
import signal
import time
from collections import Counter, defaultdict
from datetime import datetime

import pytest

from tests.chaos.bursts import accepted_deposits
from tests.chaos.world import World, record_result

pytestmark = pytest.mark.chaos

RUN_SECONDS = 30  # thirty slots of the one-second sweeps: enough to see any double
OPEN_DEPOSITS = 12
# The suite's settings (tests/support/testenv.py): the reconcile sweep and the outbox
# re-drive every second, the inbox re-drive and the notification sweep every two.
INTERVALS = {
    "reconcile.sweep": 1.0,
    "reconcile.redrive_outbox": 1.0,
    "reconcile.redrive_inbox": 2.0,
    "notify.sweep": 2.0,
}
_FIELD = re.compile(r"(\w+)=(\S+)")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


@pytest.fixture(scope="module")
def world(world_factory) -> World:
    return world_factory("beats")


def _events(log: str, event: str) -> list[dict[str, str]]:
    """The fields of each ``event`` line. Lane threads share one log file, and another
    library's line sometimes lands on the end of ours: values are read up to where they
    end (``_number``), ids matched against the known ones."""
    found = []
    for line in log.splitlines():
        if f" {event} " in line or line.rstrip().endswith(f" {event}"):
            fields = dict(_FIELD.findall(line))
            fields["at"] = line.split(" ", 1)[0]
            found.append(fields)
    return found


def test_two_beats_run_no_sweep_twice_and_inquire_once_per_look(world: World):
    txn_ids = accepted_deposits(world, OPEN_DEPOSITS)  # PG_ACCEPTED, never paid: open
    world.stack.kill("beat", signal.SIGTERM)
    began = time.time()
    world.stack.start_beat(name="beat-a", loglevel="INFO")
    world.stack.start_beat(name="beat-b", loglevel="INFO")
    time.sleep(RUN_SECONDS)
    world.stack.kill("beat-a", signal.SIGTERM)
    world.stack.kill("beat-b", signal.SIGTERM)
    time.sleep(8)  # the last looks booked finish (the schedule's longest gap is 5 s)

    log = world.stack.log(world.worker_name)
    sent = {
        name: world.stack.log(name).count("Sending due task reconcile-sweep")
        for name in ("beat-a", "beat-b")
    }
    runs = [r for r in _events(log, "sweep.ran") if _number(r["started"]) >= began]
    skipped = [r for r in _events(log, "sweep.skipped") if _epoch(r["at"]) >= began]
    by_sweep: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for run in runs:
        by_sweep[run["sweep"]].append(
            (_number(run["started"]), _number(run["ended"]), int(_number(run["slot"])))
        )
    overlaps = {
        name: sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
        for name, spans in ((n, sorted(s)) for n, s in by_sweep.items())
    }
    twice_in_a_slot = {
        name: sum(n - 1 for n in Counter(slot for *_, slot in spans).values() if n > 1)
        for name, spans in by_sweep.items()
    }

    looks = dict(
        world.query("SELECT id, inquiry_count FROM transactions WHERE id = ANY(%s)", txn_ids)
    )
    inquiries: dict[str, list[float]] = defaultdict(list)
    for line in _events(log, "inquiry.done"):
        for txn_id in looks:
            if line.get("txn_id", "").startswith(txn_id):
                inquiries[txn_id].append(_epoch(line["at"]))
    per_look = {t: (looks[t], len(inquiries[t])) for t in txn_ids}
    gaps = [b - a for t in inquiries.values() for a, b in itertools.pairwise(sorted(t))]
    closest = min(gaps, default=None)
    figures = {
        "beat_sends_of_reconcile_sweep": sent,
        "sweeps_ran": dict(Counter(r["sweep"] for r in runs)),
        "sweeps_skipped": dict(Counter(r["sweep"] for r in skipped)),
        "overlapping_runs": overlaps,
        "runs_twice_in_a_slot": twice_in_a_slot,
        "looks_booked_vs_inquiries": per_look,
        "closest_two_inquiries_s": round(closest, 2) if closest is not None else None,
    }
    record_result("two_beats_for_half_a_minute", **figures)

    diagnosis = (figures, world.logs(world.worker_name, "beat-a", "beat-b", tail=40))
    # Both beats really sent the sweeps, every second or so.
    assert all(n >= RUN_SECONDS * 0.7 for n in sent.values()), diagnosis
    # Every sweep ran, about once per slot, and the second beat's copies were skipped.
    for name, interval in INTERVALS.items():
        assert len(by_sweep[name]) >= RUN_SECONDS / interval * 0.5, (name, diagnosis)
    assert len(skipped) >= RUN_SECONDS * 0.5, diagnosis
    assert not any(overlaps.values()), diagnosis
    assert not any(twice_in_a_slot.values()), diagnosis
    # Each look booked by a sweep is exactly one inquiry, and there were many looks.
    assert all(booked == made for booked, made in per_look.values()), diagnosis
    assert all(booked >= 5 for booked, _ in per_look.values()), diagnosis
    # The schedule's shortest gap is 2 s: no two looks at one transaction came together.
    assert closest is not None and closest >= 1.0, diagnosis


def _number(value: str) -> float:
    found = _NUMBER.match(value)
    assert found, value
    return float(found.group())


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
