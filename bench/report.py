"""The results table (stdout) and ``bench/results/latest.json``."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def _ratio(measured: float | None, floor: float | None) -> float | None:
    if not measured or not floor or math.isnan(measured) or math.isnan(floor):
        return None
    return round(measured / floor, 3)


def comparisons(r: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of (metric, measured, floor name, floor value, ratio = measured / floor)."""
    rows: list[dict[str, Any]] = []

    def row(metric: str, measured: Any, floor_name: str, floor: Any, unit: str) -> None:
        rows.append(
            {
                "metric": metric,
                "unit": unit,
                "measured": measured,
                "floor": floor_name,
                "floor_value": floor,
                "ratio": _ratio(measured, floor),
            }
        )

    dep, h1, psp = r["deposits"], r["floor_healthz_1"], r["floor_sandbox"]
    row("deposits PG_ACCEPTED /s", dep["ok_per_s"], "healthz req/s", h1["ok_per_s"], "/s")
    row("deposits PG_ACCEPTED /s", dep["ok_per_s"], "sandbox create /s", psp["ok_per_s"], "/s")
    row("deposit POST p50", dep["p50_ms"], "healthz p50", h1["p50_ms"], "ms")
    row("deposit POST p99", dep["p99_ms"], "healthz p99", h1["p99_ms"], "ms")
    row("deposit POST p50", dep["p50_ms"], "sandbox create p50", psp["p50_ms"], "ms")
    wh, h2 = r["webhooks"], r["floor_healthz_2"]
    acc, settle = wh["delivered"], wh["settle"]
    row("webhooks accepted (2xx) /s", acc["ok_per_s"], "healthz req/s", h2["ok_per_s"], "/s")
    row("webhook POST p50", acc["p50_ms"], "healthz p50", h2["p50_ms"], "ms")
    row("webhook POST p99", acc["p99_ms"], "healthz p99", h2["p99_ms"], "ms")
    row(
        "webhook -> SUCCESS /s (all settled)",
        settle["success_per_s"],
        "healthz req/s",
        h2["ok_per_s"],
        "/s",
    )
    row(
        "webhook -> SUCCESS /s (all settled)",
        settle["success_per_s"],
        "webhooks accepted /s",
        acc["ok_per_s"],
        "/s",
    )
    ca = wh["create_async"]
    row("async create (respond-async) /s", ca["ok_per_s"], "healthz req/s", h2["ok_per_s"], "/s")
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}" if value < 10 else f"{value:,.1f}"
    return str(value)


def table(r: dict[str, Any]) -> str:
    lines = []
    head = f"{'metric':38} {'measured':>10} {'floor':>22} {'floor val':>10} {'ratio':>7}"
    lines += [head, "-" * len(head)]
    for c in r["comparisons"]:
        lines.append(
            f"{c['metric'] + ' [' + c['unit'] + ']':38} {_fmt(c['measured']):>10} "
            f"{c['floor']:>22} {_fmt(c['floor_value']):>10} {_fmt(c['ratio']):>7}"
        )
    lines += ["", "runs (sent / ok / wall s / ok/s / p50 / p99 ms / outcomes):"]
    runs = [
        r["floor_healthz_1"],
        r["floor_sandbox"],
        r["deposits"],
        r["floor_healthz_2"],
        r["webhooks"]["create_async"],
        r["webhooks"]["delivered"],
    ]
    for run in runs:
        lines.append(
            f"  {run['name'][:52]:52} {run['sent']:>5} {run['ok']:>5} {run['wall_s']:>7.2f}"
            f" {run['ok_per_s']:>7.1f} {run['p50_ms']:>7.1f} {run['p99_ms']:>7.1f}"
            f"  {run['outcomes']}" + ("  [TIME LIMIT]" if run["hit_time_limit"] else "")
        )
    for name, run in r.get("floor_slices", {}).items():
        lines.append(
            f"  floor slice {name:20} {run['ok_per_s']:>7.1f}/s  p50 {run['p50_ms']:>7.1f}"
            f"  p99 {run['p99_ms']:>7.1f} ms"
        )
    wh = r["webhooks"]
    lines.append(
        f"  wait for PG_ACCEPTED: {wh['wait_pg_accepted']}; PSP ids found: {wh['psp_ids_found']}"
    )
    for name, t in r.get("worker_tasks", {}).items():
        lines.append(
            f"  worker task {name:24} n={t['n']:<4} p50 {t['p50_ms']} ms  "
            f"p99 {t['p99_ms']} ms  mean {t['mean_ms']} ms"
        )
    for name, p in r.get("log_problems", {}).items():
        lines.append(
            f"  {name}.log lines with ERROR/Traceback/Exception: {p['count']}"
            + (f"  first: {p['first'][0]}" if p["first"] else "")
        )
    lines.append(f"  settle: {wh['settle']}")
    loads = "; ".join(f"{k[:28]}: {v[0]}" for k, v in r.get("loadavg_1_5_15", {}).items())
    lines.append(f"  1-min load average at phase start (2 cores, shared machine): {loads}")
    return "\n".join(lines)


def write(r: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    gitignore = RESULTS / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text("*.json\n")
    path = RESULTS / "latest.json"
    path.write_text(json.dumps(r, indent=2, default=str) + "\n")
    return path
