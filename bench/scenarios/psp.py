"""The workers against the PSPs: a real PSP's latency, one slow PSP beside a fast one, and
the drain rate with one and two worker groups."""

from __future__ import annotations

from dataclasses import replace

from bench import settings
from bench.measure import Ctx, Row
from bench.scenarios.common import (
    accept_load,
    bare_floor,
    create_backlog,
    drain,
    sandbox_floor,
    scene,
    template,
    waiting_load,
)
from bench.scenarios.lifecycle import compare_with, measure_waiting, reference_waiting
from bench.seed import transaction_template


def latency(ctx: Ctx) -> None:
    """Every PSP call answered in 300 ms: the waiting path at 16, 64 and 128 connections, and a
    backlog drained; the floor is the sandbox alone with the same delay."""
    delay = {"delay_ms": settings.PSP_DELAY_MS}
    ctx.world.reset_sandbox(**delay)
    bar = f"≥{settings.LATENCY_RATE:.0f}/s"
    try:
        for connections in ctx.profile.latency_connections:
            floor = sandbox_floor(
                ctx,
                f"sandbox alone, {settings.PSP_DELAY_MS} ms, {connections} connections",
                connections,
                control=delay,
            )
            row = Row(
                f"latency_c{connections}",
                f"waiting path, PSP answering in {settings.PSP_DELAY_MS} ms,"
                f" {connections} connections",
                floor=floor,
            )
            cap = connections * 1000 / settings.PSP_DELAY_MS
            if cap >= settings.LATENCY_RATE * settings.LATENCY_CAP_HEADROOM:
                row.bar = bar
            else:
                row.notes.append(
                    f"{connections} clients waiting ≥{settings.PSP_DELAY_MS} ms"
                    f" each cannot exceed {cap:.0f}/s: no bar"
                )
            with scene(ctx, f"latency-c{connections}") as sc:
                measure_waiting(ctx, sc, row, waiting_load(ctx, connections=connections))
            if row.bar:
                row.met = row.rate is not None and row.rate >= settings.LATENCY_RATE
        if ctx.profile.latency_backlog:
            _latency_drain(ctx, delay, bar)
    finally:
        ctx.world.reset_sandbox()


def _latency_drain(ctx: Ctx, delay: dict[str, int], bar: str) -> None:
    floor = next(f for f in reversed(ctx.floors) if f.name.startswith("sandbox alone"))
    with scene(ctx, "latency-drain") as sc:
        backlog = create_backlog(ctx, sc, ctx.profile.latency_backlog)
        row = Row(
            "latency_drain",
            f"backlog of {backlog['created']} drained, PSP answering in {settings.PSP_DELAY_MS} ms",
            floor=floor,
            bar=bar,
        )
        row.detail["backlog"] = backlog
        drain(ctx, sc, row, limit_s=min(ctx.profile.drain_s, 30))
        row.met = row.rate is not None and row.rate >= settings.LATENCY_RATE


def bulkheads(ctx: Ctx) -> None:
    """Paymaxis deposits alone, then beside Sticpay withdrawals that take 5 s each at the
    PSP (Sticpay deposits make no PSP call, so withdrawals are what waits on it)."""
    slow = {"delay_ms": settings.SLOW_PSP_DELAY_MS, "psp": "sticpay"}
    load = waiting_load(ctx)
    floor = bare_floor(ctx, "bare FastAPI POST, Step 3 body", load)
    ctx.world.reset_sandbox(**slow)
    try:
        alone = Row(
            "bulkhead_alone", "Paymaxis waiting path alone (Sticpay slow, idle)", floor=floor
        )
        with scene(ctx, "bulkhead-alone") as sc:
            measure_waiting(ctx, sc, alone, load)
        withdrawals = template(
            ctx, "sticpay-withdraw.json", transaction_template(ctx.world.sticpay, "WITHDRAW")
        )
        # Two connections, each pausing between requests: a steady trickle, well under what
        # the API takes, so it is the slow PSP that is felt and not a second client's load.
        sticpay = replace(
            accept_load(ctx, connections=2, delay_ms=settings.STICPAY_REQUEST_GAP_MS),
            file=withdrawals,
            duration_s=600,  # ended when the measured run ends
        )
        trickle = 2 * 1000 // settings.STICPAY_REQUEST_GAP_MS
        row = Row(
            "bulkhead_mixed",
            f"Paymaxis waiting path beside Sticpay withdrawals"
            f" ({settings.SLOW_PSP_DELAY_MS / 1000:.0f} s each at the PSP, ~{trickle}/s)",
            floor=floor,
            bar=f"≥{settings.BULKHEAD_SHARE}× alone",
        )
        with scene(ctx, "bulkhead-mixed") as sc:
            measure_waiting(ctx, sc, row, load, background=sticpay)
        # Alone once more, right after: the mixed run is compared with both (host drift).
        compare_with(row, "Paymaxis alone", alone, reference_waiting(ctx, "bulkhead", load))
        if row.ratio is not None:
            row.met = row.ratio >= settings.BULKHEAD_SHARE
    finally:
        ctx.world.reset_sandbox()


def scaleout(ctx: Ctx) -> None:
    """The same backlog drained by one worker group, then by two (two `connxt worker`)."""
    floor = sandbox_floor(ctx, "sandbox alone: Paymaxis create")
    one: Row | None = None
    for groups in (1, 2):
        with scene(ctx, f"scaleout-{groups}") as sc:
            backlog = create_backlog(ctx, sc, ctx.profile.scaleout_backlog)
            workers = settings.Workers(ctx.workers.args, groups)
            row = Row(
                f"scaleout_{groups}",
                f"backlog of {backlog['created']} drained by {workers.describe()}",
                floor=floor,
            )
            if one is not None:
                row.reference, row.reference_rate = "one group", one.rate
            row.detail["backlog"] = backlog
            drain(ctx, sc, row, groups=groups)
            one = one or row
