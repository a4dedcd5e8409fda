"""The relay's wake-ups (storage.outbox.wakeups): a commit that wrote outbox rows wakes it
at once, and every wake-up that queued meanwhile goes with the one drain that answers it."""

from __future__ import annotations

import time

import psycopg

from storage.aio import libpq_url
from storage.outbox import CHANNEL, wakeups


def _notify(database_url: str, times: int) -> None:
    # As add_message's commit does (storage.outbox), from a connection of its own.
    with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
        for _ in range(times):
            conn.execute("SELECT pg_notify(%s, '')", [CHANNEL])


def _waited(commits, timeout: float) -> float:
    began = time.monotonic()
    commits.wait(timeout)
    return time.monotonic() - began


def test_a_commit_wakes_the_relay_and_queued_wakeups_go_with_it(database):
    with wakeups(database) as commits:
        assert _waited(commits, 0.3) >= 0.25  # nothing committed: the poll's bound
        _notify(database, times=3)
        time.sleep(0.2)  # all three arrive, as commits do while the relay drains
        assert _waited(commits, 10.0) < 2.0  # woken, not left to the bound
        assert _waited(commits, 0.3) >= 0.25  # the other two went with that wake-up
