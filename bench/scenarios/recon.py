"""Settlement reconciliation at volume: one account's day of a million settlement lines,
fetched from the sandbox's Paymaxis (JSON cursor pages) and matched, by `connxt recon run`
as an operator runs it.

Set-up, not measured: the matching SUCCESS transactions written in bulk (``COPY``, then
``ANALYZE`` as autovacuum would after a load), and the sandbox told to make the day's
report up from a seed (sandbox.settlements.Synthetic), line by line as it is read.

The floor is PostgreSQL taking the same lines alone: their text, made beforehand, ``COPY``'d
into a bare table of the same columns. The row's rate is lines per second of the run
(fetch, parse, copy, match, results written), its ratio that over the floor's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta

import httpx
import psycopg

from bench import settings
from bench.measure import Ctx, Row
from bench.procstat import CpuMeter
from bench.scenarios.common import scene
from bench.world import Scene

SEED = 20
PREFIX = "txn_bench"
_COLUMNS = (
    "id, brand_id, environment_id, psp_id, flow_action_id, flow_target_id, action,"
    " transaction_type, amount, currency, status, psp_txn_id, execute_payload, created_at"
)
BARE = (
    "CREATE TABLE recon_floor (line_no int, psp_payment_id text, reference text, type text,"
    " gross numeric, fee numeric, net numeric, currency text, settled_at timestamptz)"
)


def _gross(i: int) -> int:
    """Line ``i``'s gross in cents, as the sandbox's synthetic report makes it."""
    return 100 + (i * 7919 + SEED) % 99900


def _cents(value: int) -> str:
    sign = "-" if value < 0 else ""
    return f"{sign}{abs(value) // 100}.{abs(value) % 100:02d}"


def seed_transactions(ctx: Ctx, sc: Scene, day: date, lines: int) -> float:
    """The SUCCESS deposits the report settles, COPY'd; seconds taken."""
    psp, tenant = ctx.world.paymaxis, ctx.world.tenant
    created = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=1)
    began = time.monotonic()
    with psycopg.connect(sc.dsn) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY transactions ({_COLUMNS}) FROM STDIN") as copy:
            for i in range(lines):
                copy.write_row(
                    (
                        f"{PREFIX}{i:08d}", tenant["brandId"], tenant["environmentId"], psp.id,
                        psp.action_id("DEPOSIT"), psp.target["id"], "DEPOSIT", "deposit",
                        _cents(_gross(i)), "USD", "SUCCESS", f"pmx_s{SEED}_{i:08d}", "{}", created,
                    )
                )  # fmt: skip
        conn.commit()
        conn.execute("ANALYZE transactions")
    return time.monotonic() - began


def floor_text(day: date, lines: int) -> list[bytes]:
    """The report's lines as COPY text, in chunks (made before the floor's clock starts)."""
    start = datetime.combine(day, datetime.min.time(), UTC)
    step = 86_400_000 // lines
    chunks, rows = [], []
    for i in range(lines):
        gross = _gross(i)
        fee = (gross * 29 + 500) // 1000 + 30
        at = (start + timedelta(milliseconds=i * step)).isoformat()
        rows.append(
            f"{i + 1}\tpmx_s{SEED}_{i:08d}\t{PREFIX}{i:08d}\tpayment\t{_cents(gross)}\t"
            f"{_cents(fee)}\t{_cents(gross - fee)}\tUSD\t{at}\n"
        )
        if len(rows) == 10_000:
            chunks.append("".join(rows).encode())
            rows = []
    if rows:
        chunks.append("".join(rows).encode())
    return chunks


def copy_floor(sc: Scene, chunks: list[bytes]) -> float:
    """Seconds PostgreSQL takes to COPY the lines into a bare table (no index, no key)."""
    with psycopg.connect(sc.dsn, autocommit=True) as conn:
        conn.execute(BARE)
        began = time.monotonic()
        with conn.cursor() as cur, cur.copy("COPY recon_floor FROM STDIN") as copy:
            for chunk in chunks:
                copy.write(chunk)
        took = time.monotonic() - began
        conn.execute("DROP TABLE recon_floor")
    return took


def run_command(ctx: Ctx, sc: Scene, day: date) -> tuple[dict, float, int, float, dict]:
    """`connxt recon run --json` as a process: its summary, wall seconds, peak resident
    KiB and CPU seconds, and the sandbox's and PostgreSQL's CPU meanwhile."""
    env = {**ctx.stack.base_env, **sc.env}
    psp_id = ctx.world.paymaxis.id
    args = ["recon", "run", "--psp", psp_id, "--date", day.isoformat(), "--json"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        meter = CpuMeter(
            {"sandbox": [ctx.stack.pid("sandbox") or 0], "postgres": [ctx.postmaster]}
        ).start()
        began = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "commands.cli", *args], env=env, stdout=out, stderr=err
        )
        _pid, status, usage = os.wait4(process.pid, 0)
        took = time.monotonic() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        spent = meter.stop()
        out.seek(0)
        err.seek(0)
        text, errors = out.read().decode(), err.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"connxt recon run exited {process.returncode}: {text}{errors[-2000:]}")
    summary = json.loads(text.strip().splitlines()[-1])
    # The run's own account of where its time went (fetch and copy, then match).
    summary["phases"] = [line for line in errors.splitlines() if "recon.run_matched" in line]
    return summary, took, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, spent


def recon(ctx: Ctx) -> None:
    lines = ctx.profile.recon_lines
    day = datetime.now(UTC).date() - timedelta(days=1)
    with scene(ctx, "recon") as sc:
        seeded_s = seed_transactions(ctx, sc, day, lines)
        synthetic = {
            "psp": "paymaxis",
            "account": ctx.world.paymaxis.credential["apiKey"],
            "date": day.isoformat(),
            "lines": lines,
            "seed": SEED,
            "referencePrefix": PREFIX,
        }
        httpx.post(
            f"{ctx.stack.sandbox_url}/_control/settlements/synthetic", json=synthetic, timeout=10
        ).raise_for_status()
        chunks = floor_text(day, lines)
        floor_s = copy_floor(sc, chunks)
        del chunks
        summary, took, rss_kib, own_cpu, spent = run_command(ctx, sc, day)
    rss_mib = rss_kib / 1024
    floor_rate = lines / floor_s
    row = Row(
        "recon",
        f"settlement reconciliation: {lines:,} Paymaxis lines fetched and matched"
        " (`connxt recon run`)",
        rate=round(lines / (summary["durationMs"] / 1000), 1),
        reference="bare COPY",
        reference_rate=round(floor_rate, 1),
        bar=f"≤{settings.RECON_SECONDS:.0f} s, <{settings.RECON_RSS_MIB} MiB",
        ok=summary["matched"],
    )
    # The bar is the run's: from the report's first page to the day's result committed
    # (the scheduled path has no process to start; the command's own start-up is shown
    # beside it).
    run_s = summary["durationMs"] / 1000
    row.met = (
        run_s <= settings.RECON_SECONDS
        and rss_mib < settings.RECON_RSS_MIB
        and summary["matched"] == lines
    )
    row.cpu = {"worker": round(own_cpu, 2), **spent}
    not_matched = {k: v for k, v in summary["differences"].items() if v}
    row.not_ok = not_matched
    row.detail["recon"] = {
        "lines": lines,
        "seconds": round(took, 2),
        "run_ms": summary["durationMs"],
        "peak_rss_mib": round(rss_mib, 1),
        "floor_copy_seconds": round(floor_s, 2),
        "seed_seconds": round(seeded_s, 1),
        "summary": {k: summary[k] for k in ("matched", "differences", "totals")},
        "phases": summary["phases"],
    }
    row.notes.append(
        f"{run_s:.1f} s fetching and matching in the run ({took:.1f} s for the whole command,"
        f" its start-up included), peak {rss_mib:.0f} MiB resident; the bare COPY of the same"
        f" lines took {floor_s:.1f} s"
    )
    ctx.rows.append(row)
