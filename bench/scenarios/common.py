"""Pieces the scenarios share: request files, floors, warm-ups, backlogs and drains."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import psycopg

from bench import pgwatch, seed, wrk
from bench.measure import Ctx, Floor, Phase, Row, floor
from bench.world import Scene
from tests.support.flows import V2

TX_PATH = f"{V2}/transactions"
# A drain with nothing CREATED and no progress for this long is over (see ``drain``).
STALL_S = 5.0


@contextmanager
def scene(ctx: Ctx, name: str, env: dict[str, str] | None = None) -> Iterator[Scene]:
    """A fresh copy of the world for one scenario, dropped afterwards."""
    made = ctx.world.scene(name, env)
    try:
        yield made
    finally:
        ctx.stack.stop_service()
        ctx.world.drop_scene(made)


def template(ctx: Ctx, name: str, text: str) -> Path:
    path = ctx.files / name
    if not path.exists():
        path.write_text(text)
    return path


def deposit_file(ctx: Ctx) -> Path:
    return template(ctx, "deposit.json", seed.transaction_template(ctx.world.paymaxis))


def accept_load(ctx: Ctx, **kw: object) -> wrk.Load:
    """Step 3 with ``Prefer: respond-async``: a 202 is the only success."""
    headers = {**ctx.world.headers, "Prefer": "respond-async"}
    return ctx.load(TX_PATH, deposit_file(ctx), expect="202", headers=headers, **kw)


def waiting_load(ctx: Ctx, **kw: object) -> wrk.Load:
    """Step 3 waiting for the PSP: a 200 whose body says PG_ACCEPTED is the only success."""
    return ctx.load(
        TX_PATH, deposit_file(ctx), expect="200:PG_ACCEPTED", headers=ctx.world.headers, **kw
    )


def bare_floor(ctx: Ctx, name: str, load: wrk.Load) -> Floor:
    """The load, same script, body and headers, against the bare FastAPI app."""
    expect = "2xx-fresh" if load.expect == "2xx-fresh" else "2xx"
    return floor(
        ctx,
        name,
        replace(load, url=ctx.stack.floor_url, expect=expect, duration_s=ctx.profile.floor_s),
    )


def sandbox_floor(
    ctx: Ctx, name: str, connections: int = 16, control: dict[str, object] | None = None
) -> Floor:
    """The sandbox's own create rate: wrk at it with the body the connector sends.

    Its payments are forgotten afterwards (a reset, then ``control`` set again), so the
    scenario's sandbox starts as empty as the floor's did.
    """
    body = template(ctx, "sandbox-create.json", seed.sandbox_create_body(ctx.world))
    auth = {"Authorization": f"Bearer {ctx.world.paymaxis.credential['apiKey']}"}
    load = wrk.Load(
        url=ctx.stack.sandbox_url,
        path=seed.SANDBOX_CREATE,
        file=body,
        headers=auth,
        per_request_header="Idempotency-Key: txn_@N@",
        connections=connections,
        duration_s=ctx.profile.floor_s,
    )
    measured = floor(ctx, name, load)
    ctx.world.reset_sandbox(**(control or {}))
    return measured


WARM_REQUESTS = 16


def warm(ctx: Ctx, phase: Phase, load: wrk.Load) -> None:
    """Open pools and fill caches before the measured window: 16 requests on 16
    connections, every one answered before the window opens (a warm-up cut off by time
    would leave its requests running into the window, taking capacity from it)."""
    once = 1 if load.mode == "lines" else WARM_REQUESTS  # lines mode: each line once
    warm_load = replace(load, connections=WARM_REQUESTS, limit=once, duration_s=30)
    phase.warm_ok += wrk.run(warm_load).ok


def start_workers(ctx: Ctx, scene: Scene, groups: int | None = None) -> None:
    groups = ctx.workers.groups if groups is None else groups
    ctx.stack.start_workers(scene.env, ctx.workers.args, groups)


def create_backlog(ctx: Ctx, scene: Scene, count: int) -> dict[str, object]:
    """``count`` CREATED deposits through the API (respond-async, no worker), within the
    profile's time cap: the size actually made is what PostgreSQL holds afterwards."""
    with Phase(ctx, scene) as phase:
        ctx.stack.start_api(scene.env)
        phase.start()
        load = accept_load(ctx, limit=count, duration_s=ctx.profile.backlog_create_s)
        result = phase.ran(wrk.run(load))
        row = phase.stop(Row("backlog", f"backlog of {count} created through the API"))
        row.take(result)
    with pgwatch.poller(scene.dsn) as poll:
        made = int(poll.scalar("SELECT count(*) FROM transactions WHERE status = 'CREATED'"))
    ctx.rows.remove(row)  # a set-up step: kept in the JSON of the row it serves
    return {"asked": count, "created": made, "rate": row.rate, **row.pg, "cpu_s": row.cpu}


def stored(scene: Scene, sql: str) -> int | None:
    """A count read after a phase, to check that what was acknowledged is in PostgreSQL;
    None when the query no longer fits the schema (tables move on other branches)."""
    try:
        with pgwatch.poller(scene.dsn) as poll:
            return int(poll.scalar(sql))
    except psycopg.Error:
        return None


def status_counts(poll: pgwatch.Poller) -> dict[str, int]:
    return dict(poll.rows("SELECT status, count(*) FROM transactions GROUP BY status"))


def drain(
    ctx: Ctx, scene: Scene, row: Row, groups: int | None = None, limit_s: float | None = None
) -> Row:
    """Start the workers on a waiting backlog; time until nothing is CREATED or INITIATED.

    The clock starts when the workers say they are ready (their start-up is not the
    drain's), and the rate counts PG_ACCEPTED only. A transaction whose PSP answer was lost
    (a reset connection, a timeout) stays INITIATED until reconciliation asks the PSP, by
    design minutes later: once nothing is CREATED and nothing has moved for ``STALL_S``,
    the drain is over at its last progress, and those left are reported, not waited for.
    """
    limit_s = ctx.profile.drain_s if limit_s is None else limit_s
    accepted, last_progress, stalled = -1, 0.0, False
    with Phase(ctx, scene) as phase:
        start_workers(ctx, scene, groups)
        phase.start()
        began = time.monotonic()
        with pgwatch.poller(scene.dsn) as poll:
            while True:
                counts = status_counts(poll)
                elapsed = time.monotonic() - began
                if counts.get("PG_ACCEPTED", 0) != accepted:
                    accepted, last_progress = counts.get("PG_ACCEPTED", 0), elapsed
                open_ = counts.get("CREATED", 0) + counts.get("INITIATED", 0)
                stalled = not counts.get("CREATED") and elapsed - last_progress > STALL_S
                if open_ == 0 or stalled or elapsed > limit_s:
                    break
                time.sleep(0.1)
            phase.polled(poll.close())
        phase.stop(row)
    took = last_progress if stalled else elapsed
    row.rate, row.ok = (round(accepted / took, 1) if took > 0 else 0.0), accepted
    row.not_ok = {k: v for k, v in counts.items() if k != "PG_ACCEPTED"}
    row.detail["drain"] = {"seconds": round(took, 2), "statuses": counts}
    if stalled:
        row.notes.append(
            f"{open_} left INITIATED with their PSP answer unknown (reconciliation's to"
            f" settle); the rate is up to the last progress, {took:.1f} s"
        )
    elif open_:
        row.notes.append(f"stopped watching after {limit_s:.0f} s with {open_} still open")
    return row
