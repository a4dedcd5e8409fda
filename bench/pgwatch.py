"""What PostgreSQL did during a scenario: commits, backends born, the processes to meter.

Counters come from the statistics views, read over an admin connection to the ``postgres``
database so that reading them adds nothing to the bench database's own counters.

Backends report their counters with a lag (at most once a second while busy, and ten
seconds after going idle), so a scenario's commits are read only after every process that
had a connection to the bench database has exited: a backend reports on exit.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import psycopg

OWN = "connxt-bench"  # application_name of the bench's own connections to a phase's database


def admin(dsn: str) -> psycopg.Connection:
    return psycopg.connect(dsn, autocommit=True)


def postmaster_pid(dsn: str) -> int:
    """The postmaster: the parent of any backend, e.g. ours."""
    with admin(dsn) as conn:  # read while the backend lives
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        status = Path(f"/proc/{backend}/status").read_text()
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("PPid:")))


def counters(dsn: str, database: str) -> dict[str, int]:
    """Cumulative commits and sessions (backends ever started) of one database."""
    with admin(dsn) as conn:
        row = conn.execute(
            "SELECT xact_commit, sessions FROM pg_stat_database WHERE datname = %s", (database,)
        ).fetchone()
    return {"commits": int(row[0]), "sessions": int(row[1])}


def wal_position(dsn: str) -> str:
    """Where the write-ahead log stands now (the cluster's: on a quiet machine, the bench's)."""
    with admin(dsn) as conn:
        return str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])


def wal_bytes_since(dsn: str, position: str) -> int:
    with admin(dsn) as conn:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (position,)
        ).fetchone()
    return int(row[0])


def wait_no_backends(dsn: str, database: str, timeout_s: float = 20.0) -> int:
    """Wait until no backend serves ``database`` (their counters are then reported)."""
    deadline = time.monotonic() + timeout_s
    with admin(dsn) as conn:
        while True:
            left = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (database,)
            ).fetchone()[0]
            if left == 0 or time.monotonic() > deadline:
                return left
            time.sleep(0.05)


class BirthWatch:
    """Samples pg_stat_activity: backends of the database born after ``since``, and the
    most backends alive at once. Short-lived backends between samples are missed; the
    ``sessions`` counter catches those."""

    def __init__(self, dsn: str, database: str, interval_s: float = 0.1):
        self.dsn, self.database, self.interval_s = dsn, database, interval_s
        self.born: set[tuple[int, datetime]] = set()
        self.most_alive = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> BirthWatch:
        self._thread = threading.Thread(target=self._run, name="birth-watch", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        with admin(self.dsn) as conn:
            since = conn.execute("SELECT now()").fetchone()[0]
            while not self._stop.is_set():
                rows = conn.execute(
                    "SELECT pid, backend_start FROM pg_stat_activity"
                    " WHERE datname = %s AND application_name <> %s",
                    (self.database, OWN),
                ).fetchall()
                self.most_alive = max(self.most_alive, len(rows))
                self.born.update((pid, start) for pid, start in rows if start and start > since)
                self._stop.wait(self.interval_s)

    def stop(self) -> dict[str, int]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return {"born_sampled": len(self.born), "most_alive": self.most_alive}


class Poller:
    """The bench's own connection to the bench database, for watching progress.

    Every query it runs is one commit in the database's counters, and the connection is one
    session; ``own`` says how many, so the scenario can leave them out of its figures.
    """

    def __init__(self, dsn: str):
        self.conn = psycopg.connect(dsn, autocommit=True, application_name=OWN)
        self.queries = 0

    def scalar(self, sql: str, params: tuple = ()) -> object:
        self.queries += 1
        return self.conn.execute(sql, params).fetchone()[0]

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        self.queries += 1
        return self.conn.execute(sql, params).fetchall()

    def close(self) -> dict[str, int]:
        self.conn.close()
        return {"commits": self.queries, "sessions": 1}


@contextmanager
def poller(dsn: str):
    p = Poller(dsn)
    try:
        yield p
    finally:
        p.close()
