"""The markdown tables printed at the end of a run, and ``bench/results/latest.json``."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from bench.measure import ROLES, Floor, Row

RESULTS = Path(__file__).resolve().parent / "results"
CPU_HEADS = {"api": "api", "worker": "workers", "beat": "beat", "sandbox": "sandbox",
             "postgres": "PG", "redis": "Redis", "wrk": "wrk"}  # fmt: skip


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def _num(value: float | None, places: int = 1) -> str:
    if value is None:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{places}f}"


def _met(row: Row) -> str:
    if row.bar is None:
        return ""
    return {True: "✅", False: "❌", None: "?"}[row.met]


def _ratio(row: Row) -> str:
    if row.ratio is None:
        return "–"
    text = f"{row.ratio:.3f}" if row.ratio < 1 else f"{row.ratio:.2f}"
    return text if not row.reference else f"{text} of {row.reference}"


def _not_ok(row: Row) -> str:
    if not row.not_ok:
        return "0"
    items = sorted(row.not_ok.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{k}: {v}" for k, v in items[:3])
    return shown + (", …" if len(items) > 3 else "")


def _per_ok(row: Row) -> str:
    """Commits per success; the warm-up's commits are in the count, so its successes are
    too (backends report commits late, so the warm-up cannot be cut out of the count)."""
    commits = row.pg.get("commits")
    done = row.ok + row.pg.get("warm_ok", 0)
    if commits is None or not done:
        return "–"
    return f"{commits / done:.1f}"


def _wal_per_ok(row: Row) -> str:
    """Write-ahead log bytes per success (the warm-up's too, as for commits): what the
    database writes for one payment, the figure a disk and a replica are sized by."""
    wal = row.pg.get("wal_bytes")
    done = row.ok + row.pg.get("warm_ok", 0)
    if wal is None or not done:
        return "–"
    return f"{wal / done / 1024:.1f}"


def table(rows: list[Row]) -> str:
    head = (
        ["scenario", "ok/s", "p50 ms", "p99 ms", "floor/s", "ratio", "bar", ""]
        + [f"CPU s {CPU_HEADS[r]}" for r in ROLES]
        + ["PG commits (incl. warm-up)", "commits/ok", "WAL KiB/ok"]
        + ["backends born (sampled/counted)", "not ok"]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        floor = f"{_num(row.floor.rate)} ({row.floor.ref})" if row.floor else "–"
        cells = [
            row.label,
            _num(row.rate),
            _num(row.p50_ms),
            _num(row.p99_ms),
            floor,
            _ratio(row),
            row.bar or "",
            _met(row),
            *(_num(row.cpu.get(role), 2) if role in row.cpu else "–" for role in ROLES),
            str(row.pg.get("commits", "–")),
            _per_ok(row),
            _wal_per_ok(row),
            f"{row.pg.get('born_sampled', '–')}/{row.pg.get('sessions', '–')}",
            _not_ok(row),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def floors_table(floors: list[Floor]) -> str:
    lines = [
        "| floor | req/s | p50 ms | p99 ms | CPU s server | CPU s wrk |",
        "|---|---|---|---|---|---|",
    ]
    for f in floors:
        runs = [("", f.result, f.cpu)]
        if f.after is not None:
            # Ratios divide by the mean of the runs on either side of the scenario.
            runs = [(" (before)", f.result, f.cpu), (" (after)", f.after, f.after_cpu or {})]
        for when, r, cpu in runs:
            lines.append(
                f"| {f.ref} {f.name}{when} | {_num(r.rate)} | {_num(r.p50_ms)} |"
                f" {_num(r.p99_ms)} | {_num(cpu.get('server'), 2)} | {_num(cpu.get('wrk'), 2)} |"
            )
        if f.after is not None:
            lines.append(f"| {f.ref} mean, what the ratios divide by | {_num(f.rate)} | | | | |")
    return "\n".join(lines)


def markdown(results: dict[str, Any], rows: list[Row], floors: list[Floor]) -> str:
    m = results["machine"]
    load = results["loadavg"]
    intro = (
        f"{results['started_at'][:16].replace('T', ' ')} UTC, {m['cpu_model']}, {m['cores']} cores,"
        f" commit {results.get('commit') or '?'}, {results['profile']} run"
        f" ({results['total_s']:.0f} s); workers: `{results['workers']}`;"
        f" 1-minute load average {load['before'][0]} before, {load['after'][0]} after."
    )
    notes = [f"- *{r.label}*: {note}" for r in rows for note in r.notes]
    parts = [intro, "", table(rows), "", "Floors (same generator, script and bodies):", ""]
    parts += [floors_table(floors)]
    if notes:
        parts += ["", *notes]
    return "\n".join(parts)


def write(results: dict[str, Any], rows: list[Row], floors: list[Floor], complete: bool) -> Path:
    """A full run of every scenario is ``latest.json`` (the one kept in git); a quick or
    partial run goes beside it, so it never overwrites the figures the README shows."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / ("latest.json" if complete else "latest-partial.json")
    doc = {**results, "rows": [r.summary() for r in rows], "floors": [f.summary() for f in floors]}
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path
