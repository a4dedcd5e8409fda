"""A deposit's life with the workers: the waiting path, a backlog drained, webhooks applied
through to SUCCESS with the merchant notified, and the waiting path beside open checkouts."""

from __future__ import annotations

import time

import httpx
import psycopg

from bench import pgwatch, seed, settings, wrk
from bench.measure import Ctx, Floor, Phase, Row
from bench.scenarios.common import (
    bare_floor,
    create_backlog,
    drain,
    sandbox_floor,
    scene,
    start_workers,
    waiting_load,
    warm,
)
from bench.stack import settle
from bench.world import Scene
from tests.support.flows import V2


def measure_waiting(
    ctx: Ctx,
    sc: Scene,
    row: Row,
    load: wrk.Load | None = None,
    beat: bool = False,
    background: wrk.Load | None = None,
) -> Row:
    """The waiting path on a fresh API and workers (and beat); ``background`` is another
    load kept running from before the warm-up to the end of the measured run (its answers
    go in the detail, its wrk CPU in the row's)."""
    load = load or waiting_load(ctx)
    with Phase(ctx, sc) as phase:
        ctx.stack.start_api(sc.env)
        start_workers(ctx, sc)
        side = wrk.start(background) if background else None
        if beat:
            ctx.stack.start_beat(sc.env)
            settle(3)  # beat's sweeps under way before the measured window
        elif side:
            settle(2)  # the other PSP's calls have taken their places
        warm(ctx, phase, load)
        phase.start()
        result = phase.ran(wrk.run(load))
        if side:
            side_result = phase.ran(wrk.interrupt(side))
            row.detail["background"] = side_result.summary()
        phase.stop(row).take(result)
    return row


# Where a deposit on the waiting path spends its time between commits: the ingress's commit
# (CREATED) to the worker's booking (INITIATED: relay, broker, lock), and the booking to the
# PSP answer's transition (PG_ACCEPTED: the PSP call and the batch's write). Event times
# are their transactions' start (now()).
_HOPS = """
WITH e AS (
  SELECT txn_id,
         max(created_at) FILTER (WHERE to_status = 'CREATED') AS created,
         max(created_at) FILTER (WHERE to_status = 'INITIATED') AS initiated,
         max(created_at) FILTER (WHERE to_status = 'PG_ACCEPTED') AS accepted
  FROM transaction_events GROUP BY txn_id
)
SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP
         (ORDER BY extract(epoch FROM initiated - created) * 1000),
       percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP
         (ORDER BY extract(epoch FROM accepted - initiated) * 1000)
FROM e WHERE accepted IS NOT NULL AND initiated IS NOT NULL
"""


def waiting_hops(sc: Scene) -> dict[str, list[float]] | None:
    """p50 and p99 of each hop, ms; None when nothing reached PG_ACCEPTED."""
    with pgwatch.poller(sc.dsn) as poll:
        (first, second), *_ = poll.rows(_HOPS)
    if first is None or second is None:
        return None
    return {
        "created_to_initiated": [round(v, 1) for v in first],
        "initiated_to_accepted": [round(v, 1) for v in second],
    }


def waiting(ctx: Ctx) -> None:
    load = waiting_load(ctx)
    floor = bare_floor(ctx, "bare FastAPI POST, Step 3 body", load)
    row = Row(
        "waiting",
        f"waiting path: POST /transactions → 200 PG_ACCEPTED ({ctx.workers.describe()})",
        floor=floor,
        bar=f"≥{settings.WAITING_RATE:.0f}/s",
    )
    with scene(ctx, "waiting") as sc:
        measure_waiting(ctx, sc, row, load)
        hops = waiting_hops(sc)
    if hops:
        row.detail["hops_ms"] = hops
        row.notes.append(
            "p50 hops (transaction events): created → initiated"
            f" {hops['created_to_initiated'][0]} ms, initiated → PG_ACCEPTED"
            f" {hops['initiated_to_accepted'][0]} ms"
        )
    row.met = row.rate is not None and row.rate >= settings.WAITING_RATE


def backlog_drain(ctx: Ctx) -> None:
    """10,000 CREATED (or what the time cap allowed) drained to PG_ACCEPTED, then one signed
    COMPLETED webhook each, applied through to SUCCESS and the merchant notified."""
    floor = sandbox_floor(ctx, "sandbox alone: Paymaxis create")
    with scene(ctx, "drain") as sc:
        backlog = create_backlog(ctx, sc, ctx.profile.backlog)
        row = Row(
            "drain",
            f"backlog of {backlog['created']} CREATED → PG_ACCEPTED ({ctx.workers.describe()})",
            floor=floor,
            bar=f"≥{settings.DRAIN_RATE:.0f}/s",
        )
        row.detail["backlog"] = backlog
        if backlog["created"] < backlog["asked"]:
            row.notes.append(
                f"backlog capped by time: {backlog['created']} of {backlog['asked']} created"
                f" in {ctx.profile.backlog_create_s} s at {backlog['rate']}/s"
            )
        drain(ctx, sc, row)
        row.met = row.rate is not None and row.rate >= settings.DRAIN_RATE
        settle_webhooks(ctx, sc)


def settle_webhooks(ctx: Ctx, sc: Scene) -> Row:
    with pgwatch.poller(sc.dsn) as poll:
        pairs = poll.rows(
            "SELECT id, psp_txn_id FROM transactions"
            " WHERE status = 'PG_ACCEPTED' AND psp_txn_id IS NOT NULL"
        )
    total = len(pairs)
    seed.write(ctx.files, "settle.txt", seed.webhook_lines(ctx.world.paymaxis, pairs))
    path = f"{V2}/external/webhooks/{ctx.world.paymaxis.id}"
    load = ctx.load(
        path,
        ctx.files / "settle.txt",
        mode="lines",
        expect="2xx-fresh",
        per_request_header="Signature: @V@",
        limit=1,
        duration_s=ctx.profile.drain_s,
    )
    floor = bare_floor(ctx, "bare FastAPI POST, the same webhooks once", load)
    row = Row(
        "settle",
        f"{total} signed COMPLETED webhooks → SUCCESS + merchant notified",
        floor=floor,
        bar=f"≥{settings.SETTLE_RATE:.0f}/s",
    )
    receiver = f"{ctx.stack.sandbox_url}/merchant/notifications/summary"
    with Phase(ctx, sc) as phase:
        ctx.stack.start_api(sc.env)
        start_workers(ctx, sc)
        phase.start()
        began = time.monotonic()
        timeline: list[tuple[float, int, int]] = []  # seconds, SUCCESS, notified
        sending, sent = wrk.start(load), None
        with pgwatch.poller(sc.dsn) as poll:
            while True:
                if sent is None and (sent := wrk.poll(sending)) is not None:
                    phase.ran(sent)
                    row.detail["sent_at_s"] = round(time.monotonic() - began, 2)
                success = int(
                    poll.scalar("SELECT count(*) FROM transactions WHERE status = 'SUCCESS'")
                )
                notified = httpx.get(receiver, timeout=10).json()["verified"]
                elapsed = time.monotonic() - began
                if not timeline or elapsed - timeline[-1][0] >= 1.0:
                    timeline.append((round(elapsed, 1), success, notified))
                if (success >= total and notified >= total) or elapsed > ctx.profile.drain_s:
                    break
                time.sleep(0.2)
            phase.polled(poll.close())
        if sent is None:
            sent = phase.ran(wrk.finish(sending))
        phase.stop(row).take(sent)
    done = min(success, notified)
    row.rate, row.ok = round(done / elapsed, 1), done
    row.detail["settle"] = {
        "seconds": round(elapsed, 2),
        "success": success,
        "notified": notified,
        "timeline": timeline,
    }
    if done < total:
        row.notes.append(
            f"after {elapsed:.0f} s: {success} SUCCESS, {notified} notified of {total}"
        )
    row.notes.append(f"webhooks answered at {sent.rate:.0f}/s")
    row.met = row.rate >= settings.SETTLE_RATE
    return row


def reference_waiting(ctx: Ctx, name: str, load: wrk.Load) -> Row:
    """The plain waiting path once more, in a fresh scene, for a row that compares itself
    with it: measured right before and right after that row, so the host's drift between
    minutes (seen: the bare floor 7,920 req/s, then 4,822 five minutes later) falls on both
    sides of the comparison alike, as the floors' does. Kept out of the table."""
    row = Row(f"{name}_reference", f"waiting path, reference for {name}")
    with scene(ctx, f"{name}-reference") as sc:
        measure_waiting(ctx, sc, row, load)
    ctx.rows.remove(row)
    return row


def compare_with(row: Row, what: str, before: Row, after: Row) -> None:
    """``row``'s reference: the mean of ``before`` and ``after``, both kept in its detail."""
    rates = [r.rate for r in (before, after) if r.rate is not None]
    row.reference = what
    row.reference_rate = round(sum(rates) / len(rates), 1) if rates else None
    row.detail["reference_runs"] = {"before": before.summary(), "after": after.summary()}
    row.notes.append(
        f"{what}: {before.rate}/s right before, {after.rate}/s right after; the ratio divides"
        f" by their mean"
    )


def abandoned(ctx: Ctx) -> None:
    """The waiting path while open deposits (PG_ACCEPTED, never paid) have inquiries due,
    against the plain waiting path measured right before and right after it."""
    count = ctx.profile.open_deposits
    load = waiting_load(ctx)
    floor: Floor = bare_floor(ctx, "bare FastAPI POST, Step 3 body", load)
    row = Row(
        "abandoned",
        f"waiting path while {count} open deposits have inquiries due (beat running)",
        floor=floor,
        bar=f"≥{settings.ABANDONED_SHARE}× waiting path",
    )
    before = reference_waiting(ctx, "abandoned", load)
    with scene(ctx, "abandoned", settings.ABANDONED_ENV) as sc:
        pairs = seed.sandbox_payments(ctx.world, count, ctx.files)
        seed.insert_accepted(sc, ctx.world, pairs, inquiry_due=True)
        measure_waiting(ctx, sc, row, load, beat=True)
        try:
            with pgwatch.poller(sc.dsn) as poll:
                open_left, booked = poll.rows(
                    "SELECT count(*) FILTER (WHERE status = 'PG_ACCEPTED'), sum(inquiry_count)"
                    " FROM transactions WHERE id LIKE 'txn_open%%'"
                )[0]
            row.notes.append(
                f"beat's sweeps booked {booked} inquiries of the open deposits;"
                f" {open_left} of {count} still open afterwards"
            )
        except psycopg.Error as exc:  # a column renamed on another branch: say so, go on
            row.notes.append(f"inquiries not counted: {type(exc).__name__}")
    compare_with(row, "waiting path", before, reference_waiting(ctx, "abandoned", load))
    row.detail["environment"] = settings.ABANDONED_ENV
    if row.ratio is not None:
        row.met = row.ratio >= settings.ABANDONED_SHARE
