"""One measured phase: CPU per process, PostgreSQL commits and backends born, into a Row.

A phase owns a fresh scene (database + broker prefix). Its PostgreSQL counters are read
when it opens (nothing connected yet) and after its processes have stopped (every backend
has reported), so commits are exact: warm-up included, the bench's own polling left out.
CPU and backend births cover only the measured window (after the warm-up).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench import pgwatch, wrk
from bench.procstat import CpuMeter
from bench.settings import Profile, Workers
from bench.stack import Stack
from bench.world import ADMIN_DSN, REDIS_URL, Scene, World

ROLES = ("api", "worker", "beat", "sandbox", "postgres", "redis", "wrk")


@dataclass
class Floor:
    ref: str  # "F1", "F2", ...: how the table's rows point at their floor
    name: str
    result: wrk.WrkResult
    cpu: dict[str, float]
    load: wrk.Load
    # The same load run again once the scenario is over (``floor_again``). A shared 2-core
    # host drifts by ±15% within minutes; a floor taken on both sides of its scenario puts
    # that drift on both sides of the ratio alike.
    after: wrk.WrkResult | None = None
    after_cpu: dict[str, float] | None = None

    @property
    def rate(self) -> float:
        """What ratios divide by: the mean of the runs before and after, when both ran."""
        if self.after is None:
            return self.result.rate
        return (self.result.rate + self.after.rate) / 2

    def summary(self) -> dict[str, Any]:
        doc = {"ref": self.ref, "name": self.name, **self.result.summary(), "cpu_s": self.cpu}
        if self.after is not None:
            doc["after"] = {**self.after.summary(), "cpu_s": self.after_cpu}
            doc["rate_mean"] = round(self.rate, 1)
        return doc


@dataclass
class Row:
    """One line of the table."""

    key: str
    label: str
    rate: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    floor: Floor | None = None
    reference: str | None = None  # what the ratio divides by, when not the floor
    reference_rate: float | None = None
    bar: str | None = None
    met: bool | None = None
    ok: int = 0
    not_ok: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    pg: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        base = self.reference_rate if self.reference else (self.floor and self.floor.rate)
        if not base or self.rate is None:
            return None
        return round(self.rate / base, 3)

    def take(self, result: wrk.WrkResult) -> Row:
        """Rate, latency and refusals from a wrk run."""
        self.rate, self.ok = round(result.rate, 1), result.ok
        self.p50_ms, self.p99_ms = result.p50_ms, result.p99_ms
        self.not_ok = result.not_ok()
        self.detail["wrk"] = result.summary()
        return self

    def summary(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "rate": self.rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "floor": self.floor.summary() if self.floor else None,
            "reference": self.reference,
            "reference_rate": self.reference_rate,
            "ratio": self.ratio,
            "bar": self.bar,
            "met": self.met,
            "ok": self.ok,
            "not_ok": self.not_ok,
            "cpu_s": self.cpu,
            "postgres": self.pg,
            "notes": self.notes,
            "detail": self.detail,
        }


@dataclass
class Ctx:
    """What every scenario is given."""

    world: World
    stack: Stack
    profile: Profile
    workers: Workers
    files: Path  # request files for wrk
    postmaster: int
    redis_pid: int
    rows: list[Row] = field(default_factory=list)
    floors: list[Floor] = field(default_factory=list)

    def load(self, path: str, file: Path, **kw: Any) -> wrk.Load:
        """A wrk load against the API (``url`` may be overridden for floors)."""
        kw.setdefault("url", self.stack.api_url)
        kw.setdefault("duration_s", self.profile.run_s)
        kw.setdefault("connections", 16)
        return wrk.Load(path=path, file=file, **kw)

    def roots(self) -> dict[str, list[int]]:
        return {**self.stack.running(), "postgres": [self.postmaster], "redis": [self.redis_pid]}


def redis_pid() -> int:
    return int(redis.Redis.from_url(REDIS_URL).info("server")["process_id"])


class Phase:
    """``with Phase(ctx, scene) as phase:`` start processes, warm up, ``phase.start()``,
    load, ``phase.stop(row)``; leaving the block stops the processes and fills ``row.pg``."""

    def __init__(self, ctx: Ctx, scene: Scene):
        self.ctx, self.scene = ctx, scene
        self.wrk_cpu = 0.0
        self.warm_ok = 0  # the warm-up's successes: its commits are in the phase's count
        self.own = {"commits": 0, "sessions": 0}
        self._rows: list[Row] = []
        self._cpu: CpuMeter | None = None
        self._births: pgwatch.BirthWatch | None = None

    def __enter__(self) -> Phase:
        pgwatch.wait_no_backends(ADMIN_DSN, self.scene.db)
        self._before = pgwatch.counters(ADMIN_DSN, self.scene.db)
        self._wal = pgwatch.wal_position(ADMIN_DSN)
        # Redis is shared with whatever else runs on the machine: a key of ours that is
        # gone at the end means someone flushed it, queued messages with it.
        self._sentinel = f"{self.scene.db}:bench-sentinel"
        redis.Redis.from_url(REDIS_URL).set(self._sentinel, "1")
        return self

    def start(self) -> None:
        self.wrk_cpu = 0.0
        # Roles with no process now are left out: the table shows "–", not a zero.
        roots = {role: pids for role, pids in self.ctx.roots().items() if pids}
        self._cpu = CpuMeter(roots).start()
        self._births = pgwatch.BirthWatch(ADMIN_DSN, self.scene.db).start()

    def ran(self, result: wrk.WrkResult) -> wrk.WrkResult:
        """Count a wrk run of the measured window (its CPU goes in the wrk column)."""
        self.wrk_cpu += result.cpu_s
        return result

    def polled(self, own: dict[str, int]) -> None:
        for key, value in own.items():
            self.own[key] += value

    def stop(self, row: Row) -> Row:
        assert self._cpu is not None and self._births is not None
        row.cpu = {**self._cpu.stop(), "wrk": round(self.wrk_cpu, 2)}
        row.pg = self._births.stop()
        self._rows.append(row)
        self.ctx.rows.append(row)
        return row

    def __exit__(self, *exc: object) -> None:
        self.ctx.stack.stop_service()
        left = pgwatch.wait_no_backends(ADMIN_DSN, self.scene.db)
        after = pgwatch.counters(ADMIN_DSN, self.scene.db)
        wal_bytes = pgwatch.wal_bytes_since(ADMIN_DSN, self._wal)
        commits = after["commits"] - self._before["commits"] - self.own["commits"]
        sessions = after["sessions"] - self._before["sessions"] - self.own["sessions"]
        flushed = not redis.Redis.from_url(REDIS_URL).exists(self._sentinel)
        for row in self._rows:  # one row per phase, as scenarios use it
            row.pg.update(
                commits=commits, sessions=sessions, warm_ok=self.warm_ok, wal_bytes=wal_bytes
            )
            if left:
                row.notes.append(f"{left} backends still open when counters were read")
            if flushed:
                row.notes.append("INVALID: Redis was flushed during this phase (not by us)")


def floor(ctx: Ctx, name: str, load: wrk.Load) -> Floor:
    """The same wrk load against a bare server: the floor app, or the sandbox alone."""
    result, cpu = _run_floor(ctx, load)
    measured = Floor(f"F{len(ctx.floors) + 1}", name, result, cpu, load)
    ctx.floors.append(measured)
    return measured


def floor_again(ctx: Ctx, measured: Floor) -> None:
    """The floor's load once more, after the scenario it is the floor of."""
    measured.after, measured.after_cpu = _run_floor(ctx, measured.load)


def _run_floor(ctx: Ctx, load: wrk.Load) -> tuple[wrk.WrkResult, dict[str, float]]:
    target = ctx.stack.pid("floor") if load.url == ctx.stack.floor_url else ctx.stack.pid("sandbox")
    meter = CpuMeter({"server": [target] if target else []}).start()
    result = wrk.run(load)
    return result, {**meter.stop(), "wrk": round(result.cpu_s, 2)}
