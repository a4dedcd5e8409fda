"""Keep worker processes running: restart each one when it dies on its own.

Celery exits on some broker failures instead of reconnecting (seen with kombu's Redis
transport during a Redis restart). Under Kubernetes or systemd the platform restarts it;
`connxt worker` does the same by itself, so a plain `make run` or a single machine heals
too. It supervises one process per lane (workers.lanes): each restarts on its own, and a
signal to the supervisor goes to all of them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger()

MAX_BACKOFF_SECONDS = 30
HEALTHY_AFTER_SECONDS = 60  # a child that lived this long resets the backoff


@dataclass
class _Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    started: float = 0.0
    backoff: float = 1.0
    restart_at: float | None = field(default=None)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "commands.cli", *self.argv], env={**os.environ, **self.env}
        )
        self.started, self.restart_at = time.monotonic(), None


def supervise(argv: list[str]) -> int:
    """One process: as ``supervise_all`` with a single child."""
    return supervise_all({"worker": (argv, {})})


def supervise_all(children: dict[str, tuple[list[str], dict[str, str]]]) -> int:
    """Run every child (argv and extra environment by name) until a signal stops them."""
    stopping = False
    running = [_Child(name, argv, env) for name, (argv, env) in children.items()]

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        for child in running:
            if child.proc is not None and child.proc.poll() is None:
                child.proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in running:
        child.start()
    code = 0
    while True:
        alive = False
        for child in running:
            if child.proc is None:
                if not stopping and child.restart_at is not None:
                    alive = True
                    if time.monotonic() >= child.restart_at:
                        child.start()
                continue
            exit_code = child.proc.poll()
            if exit_code is None:
                alive = True
                continue
            code = code or exit_code
            child.proc = None
            if stopping:
                continue
            # Even a clean exit is restarted: a lane that stops by itself (Celery gives up
            # on a broker error and exits 0) would otherwise leave its queues unconsumed.
            lived = time.monotonic() - child.started
            child.backoff = (
                1.0
                if lived > HEALTHY_AFTER_SECONDS
                else min(child.backoff * 2, MAX_BACKOFF_SECONDS)
            )
            child.restart_at = time.monotonic() + child.backoff
            alive = True
            log.error(
                "worker.exited",  # restarted
                lane=child.name,
                exit_code=exit_code,
                lived_s=round(lived, 1),
                restart_in_s=child.backoff,
            )
        if not alive:
            return code
        time.sleep(0.2)
