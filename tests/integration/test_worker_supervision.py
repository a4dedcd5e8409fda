"""`connxt worker` restarts its Celery process when that process dies on its own."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_a_dead_celery_process_is_restarted(stack):
    stack.start_worker(name="supervised", concurrency=1)
    try:
        supervisor = stack.procs["supervised"].pid
        (celery_main,) = wait_until(lambda: _children(supervisor), what="celery process")
        os.kill(celery_main, signal.SIGKILL)
        restarted = wait_until(
            lambda: [p for p in _children(supervisor) if p != celery_main],
            timeout=30,
            what="a new celery process",
        )
        assert restarted
        wait_until(lambda: stack.log("supervised").count("ready.") >= 2, timeout=40, what="ready")
        assert stack.procs["supervised"].poll() is None  # the supervisor itself lives on
    finally:
        stack.kill("supervised", signal.SIGTERM)
