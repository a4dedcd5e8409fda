"""``python -m bench``: Connxt's scenarios, each beside a floor measured in the same run.

Run from the repository root with the project's virtualenv (``make bench``). wrk drives
the load; PostgreSQL and Redis must be running (``make services``).
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from bench import pgwatch, report, settings, world, wrk
from bench.measure import Ctx, redis_pid
from bench.scenarios import SCENARIOS
from bench.stack import Stack


def _say(message: str) -> None:
    load = os.getloadavg()[0]
    print(f"[bench {time.strftime('%H:%M:%S')}] {message} (load {load:.2f})", file=sys.stderr)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="under two minutes: short runs, small backlogs, no scale-out",
    )
    parser.add_argument(
        "--only", default=None, help=f"comma-separated scenarios: {', '.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--worker-args",
        default=None,
        help='arguments after `connxt worker`, e.g. "--pool threads --concurrency 64"'
        " (default: none, as `make run` starts it)",
    )
    parser.add_argument(
        "--worker-groups", type=int, default=1, help="separate `connxt worker` commands"
    )
    args = parser.parse_args(argv)
    profile = settings.QUICK if args.quick else settings.FULL
    args.profile = profile
    args.selected = args.only.split(",") if args.only else list(profile.scenarios)
    unknown = [name for name in args.selected if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    began = time.monotonic()
    workers = settings.Workers(shlex.split(args.worker_args or ""), args.worker_groups)
    wrk.ensure_wrk()
    log_dir = Path(tempfile.mkdtemp(prefix=f"connxt-bench-{world.RUN_ID}-"))
    files = log_dir / "files"
    files.mkdir()
    stack = Stack(log_dir, {**settings.SERVICE_ENV, **world.RUN_ENV})
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": report.machine(),
        "commit": report.git_commit(),
        "profile": args.profile.name,
        "scenarios": args.selected,
        "workers": workers.describe(),
        "connections": settings.CONNECTIONS,
        "wrk_threads": wrk.THREADS,
        "service_env": settings.SERVICE_ENV,
        "log_dir": str(log_dir),
        "loadavg": {"before": [round(x, 2) for x in os.getloadavg()]},
        "failures": {},
    }
    ctx = None
    provisioned = None
    try:
        _say(f"sandbox and floor app; logs in {log_dir}")
        stack.start_sandbox()
        stack.start_floor()
        _say(f"template database {world.TEMPLATE_DB}: migrate, catalog, tenant, PSPs")
        provisioned = world.provision(stack)
        ctx = Ctx(
            provisioned,
            stack,
            args.profile,
            workers,
            files,
            pgwatch.postmaster_pid(world.ADMIN_DSN),
            redis_pid(),
        )
        results["setup_s"] = round(time.monotonic() - began, 1)
        results["scenario_s"] = {}
        for name in args.selected:
            _say(f"scenario {name}")
            started = time.monotonic()
            try:
                SCENARIOS[name](ctx)
            except Exception as exc:  # one broken scenario must not hide the rest
                traceback.print_exc()
                results["failures"][name] = f"{type(exc).__name__}: {exc}"
                stack.stop_service()
            results["scenario_s"][name] = round(time.monotonic() - started, 1)
    finally:
        stack.stop_all()
        world.teardown(provisioned)
    results["loadavg"]["after"] = [round(x, 2) for x in os.getloadavg()]
    results["total_s"] = round(time.monotonic() - began, 1)
    rows, floors = (ctx.rows, ctx.floors) if ctx else ([], [])
    print(report.markdown(results, rows, floors))
    for name, failure in results["failures"].items():
        print(f"\nscenario {name} FAILED: {failure}")
    complete = args.profile is settings.FULL and args.selected == list(settings.ALL_SCENARIOS)
    path = report.write(results, rows, floors, complete and not results["failures"])
    print(f"\nJSON: {path}   logs: {log_dir}   {results['total_s']:.0f} s in all")
    return 1 if results["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
