"""The ingress's own capacity: durable accept of Step 3, and PSP webhook ingest.

Measured with no worker running (in a fleet the workers are on other hosts), so what is
measured is the API process, PostgreSQL and Redis. Accept is measured with the workers
running as well, for reference.
"""

from __future__ import annotations

from bench import seed, settings, wrk
from bench.measure import Ctx, Floor, Phase, Row, floor_again
from bench.scenarios.common import (
    WARM_REQUESTS,
    accept_load,
    bare_floor,
    scene,
    start_workers,
    stored,
    warm,
)
from tests.support.flows import V2

INGEST_BAR = (
    f"≥{settings.ACCEPT_RATIO}× floor, p50<{settings.ACCEPT_P50_MS:.0f} ms,"
    f" p99<{settings.ACCEPT_P99_MS:.0f} ms"
)


def _ingest_met(row: Row) -> bool | None:
    if row.ratio is None or row.p50_ms is None or row.p99_ms is None:
        return None
    return (
        row.ratio >= settings.ACCEPT_RATIO
        and row.p50_ms < settings.ACCEPT_P50_MS
        and row.p99_ms < settings.ACCEPT_P99_MS
    )


def _measure(ctx: Ctx, name: str, load: wrk.Load, row: Row, workers: bool = False) -> Row:
    with scene(ctx, name) as sc:
        with Phase(ctx, sc) as phase:
            ctx.stack.start_api(sc.env)
            if workers:
                start_workers(ctx, sc)
            warm(ctx, phase, load)
            phase.start()
            result = phase.ran(wrk.run(load))
            phase.stop(row).take(result)
        _check_stored(row, stored(sc, "SELECT count(*) FROM transactions"), "transactions")
    return row


def _check_stored(row: Row, rows: int | None, what: str) -> None:
    """Every 202 (warm-up included) must have its row; more rows are requests answered
    after wrk stopped listening."""
    acknowledged = row.ok + row.pg.get("warm_ok", 0)
    row.detail["stored"] = rows
    if rows is not None and rows < acknowledged:
        row.notes.append(f"only {rows} {what} stored for {acknowledged} acknowledged")


def accept(ctx: Ctx) -> None:
    load = accept_load(ctx)
    floor = bare_floor(ctx, "bare FastAPI POST, Step 3 body", load)
    row = Row(
        "accept",
        "durable accept: POST /transactions, respond-async, no worker → 202",
        floor=floor,
        bar=INGEST_BAR,
    )
    _measure(ctx, "accept", load, row)
    floor_again(ctx, floor)
    row.met = _ingest_met(row)
    if not ctx.profile.accept_with_workers:
        return
    busy = Row(
        "accept_workers",
        f"durable accept, {ctx.workers.describe()} running → 202",
        floor=floor,
    )
    _measure(ctx, "accept-workers", load, busy, workers=True)


def _webhook_load(ctx: Ctx, lines_name: str, expect: str, once: bool = False) -> wrk.Load:
    path = f"{V2}/external/webhooks/{ctx.world.paymaxis.id}"
    return ctx.load(
        path,
        ctx.files / lines_name,
        mode="lines",
        expect=expect,
        per_request_header="Signature: @V@",
        limit=1 if once else 0,
    )


def webhooks(ctx: Ctx) -> None:
    """Distinct signed COMPLETED webhooks for deposits the PSP owns, then the same again."""
    count = ctx.profile.webhook_lines
    pairs = seed.fake_pairs(count + WARM_REQUESTS)  # the first ones warm up
    warm_pairs, measured_pairs = pairs[:WARM_REQUESTS], pairs[WARM_REQUESTS:]
    psp = ctx.world.paymaxis
    seed.write(ctx.files, "webhooks-warm.txt", seed.webhook_lines(psp, warm_pairs))
    seed.write(ctx.files, "webhooks.txt", seed.webhook_lines(psp, measured_pairs))
    load = _webhook_load(ctx, "webhooks.txt", "2xx-fresh")
    floor = bare_floor(ctx, "bare FastAPI POST, webhook bodies", load)

    with scene(ctx, "webhooks") as sc:
        seed.insert_accepted(sc, ctx.world, pairs, inquiry_due=False)
        distinct = Row(
            "webhooks",
            "webhook ingest: distinct signed Paymaxis webhooks, no worker → 2xx stored",
            floor=floor,
            bar=INGEST_BAR,
        )
        _store(ctx, sc, load, distinct)
        floor_again(ctx, floor)  # the API is stopped again: the floor runs alone, as before
        distinct.met = _ingest_met(distinct)
        _check_stored(distinct, stored(sc, "SELECT count(*) FROM inbox"), "inbox rows")
        if distinct.detail["wrk"]["wraps"]:
            distinct.notes.append(f"ran out of distinct webhooks ({count}): repeats not counted")

        # The same webhooks again: every one already stored, each answer must say so.
        # Lines are dealt to wrk's threads in turn and the threads run at their own pace:
        # the first half of what was answered has surely been sent.
        repeat = max(1, min(distinct.ok // 2, 2_000))
        text = (ctx.files / "webhooks.txt").read_text().splitlines(keepends=True)[:repeat]
        seed.write(ctx.files, "webhooks-repeat.txt", "".join(text))
        dup_load = _webhook_load(ctx, "webhooks-repeat.txt", "2xx-dup")
        dup_floor = _duplicate_floor(ctx, dup_load)
        duplicates = Row(
            "webhooks_dup",
            f"webhook ingest: the same {repeat} webhooks repeated → 2xx duplicate",
            floor=dup_floor,
        )
        _store(ctx, sc, dup_load, duplicates)


def _duplicate_floor(ctx: Ctx, load: wrk.Load) -> Floor:
    return bare_floor(ctx, "bare FastAPI POST, repeated webhook bodies", load)


def _store(ctx: Ctx, sc, load: wrk.Load, row: Row) -> None:
    with Phase(ctx, sc) as phase:
        ctx.stack.start_api(sc.env)
        warm(ctx, phase, _webhook_load(ctx, "webhooks-warm.txt", "2xx"))
        phase.start()
        result = phase.ran(wrk.run(load))
        phase.stop(row).take(result)
