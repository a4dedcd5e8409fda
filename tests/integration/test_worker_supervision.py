"""`connxt worker` restarts a lane's Celery process when that process dies on its own."""

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
        lanes = wait_until(lambda: _children(supervisor), what="celery processes")
        ready = stack.log("supervised").count("ready.")
        os.kill(lanes[0], signal.SIGKILL)
        wait_until(
            lambda: (
                lanes[0] not in _children(supervisor) and len(_children(supervisor)) == len(lanes)
            ),
            timeout=30,
            what="a new celery process for the lane",
        )
        wait_until(
            lambda: stack.log("supervised").count("ready.") > ready, timeout=40, what="ready"
        )
        assert set(lanes[1:]) <= set(_children(supervisor))  # the other lanes went on
        assert stack.procs["supervised"].poll() is None  # the supervisor itself lives on
    finally:
        stack.kill("supervised", signal.SIGTERM)
