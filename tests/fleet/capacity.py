"""What a phase of load cost the fleet: CPU time of each kind of process, and PostgreSQL's
commits and write-ahead log.

A process belongs to the fleet host whose network namespace it is in. Which kind it is
says its environment (CONNXT_FLEET_UNIT, which fleet.sh gives each unit and its children
inherit: ``api``, each worker lane by name, ``beat``, ``haproxy``, ``sandbox``,
``prometheus``) or, on the db host, its command: PostgreSQL rewrites the memory its
environment was in to show its process titles, so a backend's /proc environ no longer
says anything. A kind's CPU time is the sum over its processes of their own user and
system time and that of their children already reaped (a PostgreSQL backend that exits
hands its time to the postmaster), so the difference between two snapshots is what the
kind used in between, processes born and gone meanwhile included.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _marks(pid: str) -> tuple[str, str] | None:
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return None
    found = dict(item.split(b"=", 1) for item in environ if b"=" in item)
    host, unit = found.get(b"CONNXT_FLEET_HOST"), found.get(b"CONNXT_FLEET_UNIT")
    return (host.decode(), unit.decode()) if host and unit else None


def _ticks(pid: str) -> int | None:
    """utime + stime + cutime + cstime of the process (fields 14-17 of its stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return sum(int(value) for value in fields[11:15])


# The db host's servers by command: PostgreSQL's processes, Redis, RabbitMQ's Erlang VM
# and its helpers.
DB_COMMANDS = {
    "postgres": "postgres",
    "redis-server": "redis",
    "beam.smp": "rabbitmq",
    "epmd": "rabbitmq",
    "erl_child_setup": "rabbitmq",
    "inet_gethost": "rabbitmq",
}
# Units that are commands run once (fleet.sh exec, the migrate job), not the fleet.
ONE_OFF_UNITS = {"cli", "exec", "migrate", "rabbitmqctl", "demo"}


def fleet_namespaces() -> dict[int, str]:
    """Network namespace inode -> fleet host."""
    found = {}
    for path in Path("/run/netns").glob("connxt-*"):
        found[path.stat().st_ino] = path.name.removeprefix("connxt-")
    return found


def kind_of(host: str, unit: str | None, command: str) -> str | None:
    """api1 and api2 are one kind (api); a worker host's units are its lanes."""
    if unit in ONE_OFF_UNITS:
        return None
    if host == "db":
        return DB_COMMANDS.get(command, unit)
    if unit is None:
        return None
    if host.startswith("api"):
        return "api"
    if host.startswith("worker"):
        return f"lane {unit}"
    return unit


def cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by each kind of fleet process."""
    hosts = fleet_namespaces()
    by_kind: dict[str, int] = defaultdict(int)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            host = hosts.get(os.stat(f"/proc/{entry}/ns/net").st_ino)
            command = Path(f"/proc/{entry}/comm").read_text().strip()
        except OSError:
            continue  # gone meanwhile
        if host is None:
            continue
        marks = _marks(entry)
        kind = kind_of(host, marks[1] if marks else None, command)
        ticks = _ticks(entry) if kind else None
        if kind and ticks is not None:
            by_kind[kind] += ticks
    return {kind: ticks / TICKS_PER_S for kind, ticks in by_kind.items()}


@dataclass
class Snapshot:
    cpu_s: dict[str, float]
    commits: int
    rollbacks: int
    wal_lsn: str
    at: float
    extra: dict = field(default_factory=dict)


DATABASE_COUNTERS = """
SELECT xact_commit, xact_rollback, pg_current_wal_lsn()::text
FROM pg_stat_database WHERE datname = current_database()
"""


def snapshot(world, at: float) -> Snapshot:
    """The fleet's CPU times and the database's counters now. The query is one commit."""
    ((commits, rollbacks, lsn),) = world.query(DATABASE_COUNTERS)
    return Snapshot(cpu_seconds(), int(commits), int(rollbacks), lsn, at)


def lsn_bytes(lsn: str) -> int:
    high, low = lsn.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def phase_cost(before: Snapshot, after: Snapshot, own_queries: int = 0) -> dict:
    """What the fleet used between two snapshots: CPU seconds per kind, commits (less the
    ``own_queries`` the measuring itself made, one commit each) and WAL bytes."""
    kinds = sorted(set(before.cpu_s) | set(after.cpu_s))
    return {
        "seconds": after.at - before.at,
        "cpu_s": {k: after.cpu_s.get(k, 0.0) - before.cpu_s.get(k, 0.0) for k in kinds},
        "commits": after.commits - before.commits - own_queries,
        "rollbacks": after.rollbacks - before.rollbacks,
        "wal_bytes": lsn_bytes(after.wal_lsn) - lsn_bytes(before.wal_lsn),
    }


def per_item(cost: dict, idle: dict, items: int) -> dict:
    """A phase's cost per item (deposit, webhook), the idle fleet's cost for as long taken
    off first: CPU in milliseconds per kind, commits and WAL bytes."""
    scale = cost["seconds"] / idle["seconds"]

    def net(value: float, idle_value: float) -> float:
        return (value - idle_value * scale) / items

    return {
        "cpu_ms": {
            kind: round(1000 * net(cost["cpu_s"][kind], idle["cpu_s"].get(kind, 0.0)), 2)
            for kind in cost["cpu_s"]
        },
        "commits": round(net(cost["commits"], idle["commits"]), 2),
        "wal_bytes": round(net(cost["wal_bytes"], idle["wal_bytes"])),
    }
