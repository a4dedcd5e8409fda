"""``python -m bench``: one run of every scenario against floors of the same run."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from datetime import UTC, datetime

from bench import harness  # first: fixes the CONNXT_* environment before project imports

LOADAVG: dict[str, list[float]] = {}  # phase → 1-minute load average as it began


def _progress(message: str) -> None:
    LOADAVG[message] = [round(x, 2) for x in os.getloadavg()]
    print(
        f"[bench {time.strftime('%H:%M:%S')}] {message} (load {LOADAVG[message][0]})",
        file=sys.stderr,
        flush=True,
    )


async def _run(env: harness.Env, args: argparse.Namespace) -> dict:
    from bench import scenarios

    results: dict = {}
    _progress("warm-up")
    await scenarios.warm_up(env)
    # The machine is shared: each floor is taken right before and right after its scenario
    # and pooled, so a scenario is compared with the conditions it actually ran in.
    _progress("floor: GET /healthz (before scenario 1)")
    healthz_a = await scenarios.floor_healthz(env)
    _progress("floor: sandbox create (before scenario 1)")
    sandbox_a = await scenarios.floor_sandbox(env)
    _progress("scenario 1: deposits")
    results["deposits"] = (await scenarios.deposits(env, args.deposits)).summary()
    _progress("floor: sandbox create (after scenario 1)")
    sandbox_b = await scenarios.floor_sandbox(env)
    _progress("floor: GET /healthz (after 1, before 2)")
    healthz_b = await scenarios.floor_healthz(env)
    _progress("scenario 2: webhooks")
    wh = await scenarios.webhooks(env, args.webhooks)
    _progress("floor: GET /healthz (after scenario 2)")
    healthz_c = await scenarios.floor_healthz(env)
    for key in ("create_async", "delivered"):
        wh[key] = wh[key].summary()
    results["webhooks"] = wh
    results["floor_healthz_1"] = healthz_a.merged(healthz_b, "GET /healthz (floor 1)").summary()
    results["floor_sandbox"] = sandbox_a.merged(sandbox_b, "sandbox create (PSP floor)").summary()
    results["floor_healthz_2"] = healthz_b.merged(healthz_c, "GET /healthz (floor 2)").summary()
    results["floor_slices"] = {
        name: run.summary()
        for name, run in (
            ("healthz_before_1", healthz_a),
            ("healthz_between", healthz_b),
            ("healthz_after_2", healthz_c),
            ("sandbox_before_1", sandbox_a),
            ("sandbox_after_1", sandbox_b),
        )
    }
    return results


def main() -> int:
    from bench import report

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--deposits", type=int, default=300, help="N for scenario 1")
    parser.add_argument("--webhooks", type=int, default=300, help="M for scenario 2")
    args = parser.parse_args()

    began = time.perf_counter()
    stack = None
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "database": harness.RUN_DB,
        "redis": harness.REDIS_URL,
        "setup": {
            "concurrency": 16,
            "deposits": args.deposits,
            "webhooks": args.webhooks,
            "worker": "1 worker, prefork concurrency 4",
            "beat": False,
        },
    }
    try:
        _progress(f"database {harness.RUN_DB}, redis {harness.REDIS_URL}")
        harness.create_database()
        harness.flush_redis()
        stack = harness.start_stack(worker_concurrency=4)
        results["log_dir"] = str(stack.log_dir)
        _progress(
            f"stack up: api {stack.api_url}, sandbox {stack.sandbox_url}, logs {stack.log_dir}"
        )
        env = harness.prepare(stack)
        results.update(asyncio.run(_run(env, args)))
    finally:
        if stack is not None:
            stack.stop()
            results.update(harness.log_digest(stack))
        try:
            harness.flush_redis()
        finally:
            harness.drop_database()
    results["loadavg_1_5_15"] = LOADAVG
    results["total_s"] = round(time.perf_counter() - began, 1)
    results["comparisons"] = report.comparisons(results)
    print(report.table(results))
    path = report.write(results)
    print(f"\nJSON: {path}   stack logs: {results.get('log_dir')}   total {results['total_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
