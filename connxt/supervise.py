"""Keep a worker process running: restart it when it dies on its own.

Celery exits on some broker failures instead of reconnecting (seen with kombu's Redis
transport during a Redis restart). Under Kubernetes or systemd the platform restarts it;
`connxt worker` does the same by itself, so a plain `make run` or a single machine heals too.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import structlog

log = structlog.get_logger()

MAX_BACKOFF_SECONDS = 30
HEALTHY_AFTER_SECONDS = 60  # a child that lived this long resets the backoff


def supervise(argv: list[str]) -> int:
    stopping = False
    child: subprocess.Popen | None = None

    def forward(signum, _frame) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    backoff = 1.0
    while True:
        started = time.monotonic()
        child = subprocess.Popen([sys.executable, "-m", "connxt.cli", *argv])
        code = child.wait()
        if stopping or code == 0:
            return code
        lived = time.monotonic() - started
        backoff = 1.0 if lived > HEALTHY_AFTER_SECONDS else min(backoff * 2, MAX_BACKOFF_SECONDS)
        log.error("worker.exited", exit_code=code, lived_s=round(lived, 1), restart_in_s=backoff)
        time.sleep(backoff)
        if stopping:
            return code
